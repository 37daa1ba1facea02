"""Where each key of a TOML document is defined (tomllib gives no line numbers).

Used by :mod:`talkie.config` so that every error names the line to fix.
"""

from __future__ import annotations

import bisect
import tomllib
from typing import Any


class KeyLines:
    """Where each key and table of a valid TOML document is defined.

    ``find(("panel", "patterns", "idle", "kind"))`` gives the 1-based line of
    that key's assignment, else of the nearest enclosing key or table header
    (an inline table's keys resolve to the line of its assignment), else 1.
    The N-th table of an array of tables (``[[tools.mcp]]``) is the path
    ``("tools", "mcp", "#N")``, counted from 1.
    """

    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0
        self.lines: dict[tuple[str, ...], int] = {}
        self._newlines = [i for i, ch in enumerate(text) if ch == "\n"]
        try:
            self._scan()
        except (IndexError, ValueError, tomllib.TOMLDecodeError):
            pass  # keep what was located; find() falls back to enclosing tables

    def find(self, path: tuple[str, ...]) -> int:
        """The line of ``path`` or of its nearest located parent, else 1."""
        for n in range(len(path), 0, -1):
            if tuple(path[:n]) in self.lines:
                return self.lines[tuple(path[:n])]
        return 1

    def _record(self, path: tuple[str, ...], start: int, exact: bool = False) -> None:
        line = bisect.bisect_left(self._newlines, start) + 1
        for n in range(1, len(path) + 1):
            self.lines.setdefault(path[:n], line)
        if exact:  # an explicit [table] header beats an implicit earlier mention
            self.lines[path] = line

    def _scan(self) -> None:
        table: tuple[str, ...] = ()
        arrays: dict[tuple[str, ...], int] = {}
        while self._skip(newlines=True) < len(self.text):
            start = self.pos
            if self.text[start] == "[":
                brackets = 2 if self.text.startswith("[[", start) else 1
                self.pos += brackets
                table = self._key("]")
                self.pos += brackets
                if brackets == 2:
                    arrays[table] = arrays.get(table, 0) + 1
                    self._record(table, start)
                    table = table + (f"#{arrays[table]}",)
                self._record(table, start, exact=True)
            else:
                key = table + self._key("=")
                self.pos += 1
                self._record(key, start)
                self._value(key)

    def _skip(self, newlines: bool) -> int:
        """Skip blanks and comments (and line breaks if ``newlines``)."""
        text, blanks = self.text, " \t\r\n" if newlines else " \t"
        while self.pos < len(text):
            if text[self.pos] in blanks:
                self.pos += 1
            elif text[self.pos] == "#" and newlines:
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            else:
                break
        return self.pos

    def _key(self, end: str) -> tuple[str, ...]:
        """Read a (dotted, maybe quoted) key up to ``end``; return its parts."""
        start = self.pos
        while self.text[self.pos] != end:
            if self.text[self.pos] in "\"'":
                self._string()
            else:
                self.pos += 1
        parsed: Any = tomllib.loads(self.text[start : self.pos].strip() + " = 0")
        parts: list[str] = []
        while isinstance(parsed, dict):
            ((name, parsed),) = parsed.items()
            parts.append(name)
        return tuple(parts)

    def _string(self) -> None:
        text, quote = self.text, self.text[self.pos]
        closing = quote * 3 if text.startswith(quote * 3, self.pos) else quote
        self.pos += len(closing)
        while not text.startswith(closing, self.pos):
            if self.pos >= len(text):
                raise ValueError("unterminated string")
            self.pos += 2 if quote == '"' and text[self.pos] == "\\" else 1
        self.pos += len(closing)
        extra = 0  # """a"""" ends with a quote that belongs to the content
        while len(closing) == 3 and extra < 2 and text[self.pos : self.pos + 1] == quote:
            self.pos, extra = self.pos + 1, extra + 1

    def _value(self, path: tuple[str, ...] | None) -> None:
        """Skip one value; record the keys of an inline table under ``path``."""
        text = self.text
        self._skip(newlines=False)
        if text[self.pos] in "\"'":
            self._string()
        elif text[self.pos] in "[{":
            close = "]" if text[self.pos] == "[" else "}"
            self.pos += 1
            while self._skip(newlines=True) < len(text) and text[self.pos] != close:
                if close == "}":
                    start, key = self.pos, self._key("=")
                    self.pos += 1
                    inner = None if path is None else path + key
                    if inner is not None:
                        self._record(inner, start)
                    self._value(inner)
                else:
                    self._value(None)
                if self._skip(newlines=True) < len(text) and text[self.pos] == ",":
                    self.pos += 1
            self.pos += 1
        else:
            while self.pos < len(text) and text[self.pos] not in ",]}#\r\n":
                self.pos += 1


def too_deep(text: str, limit: int) -> int | None:
    """The line where arrays and inline tables first nest more than ``limit`` deep, else None.

    Checked before parsing: the parser, and every walk over the parsed values, recurse once per
    level, and a file nested hundreds deep must be an error that names its line, not a crash.
    """
    depth, line, pos, n = 0, 1, 0, len(text)
    while pos < n:
        ch = text[pos]
        if ch == "\n":
            line += 1
        elif ch == "#":
            end = text.find("\n", pos)
            pos = n if end < 0 else end
            continue
        elif ch in "\"'":
            closing = ch * 3 if text.startswith(ch * 3, pos) else ch
            pos += len(closing)
            while pos < n and not text.startswith(closing, pos):
                if text[pos] == "\n":
                    line += 1
                pos += 2 if ch == '"' and text[pos] == "\\" else 1
            pos += len(closing)
            continue
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return line
        elif ch in "]}":
            depth = max(0, depth - 1)
        pos += 1
    return None

"""The self-test's report: one aligned ``OK``/``FAIL``/``SKIP`` line per check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TextIO

OK, FAIL, SKIP = "OK", "FAIL", "SKIP"


class Report:
    """Writes one aligned ``OK``/``FAIL``/``SKIP`` line per check and counts the failures.

    ``prompt(text)`` asks the person for something; on a terminal the next line replaces it.
    Every line goes through the redactors added with :meth:`hide` (the API key).
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.lines: list[tuple[str, str]] = []
        self.failed = 0
        self._redactors: list[Callable[[str], str]] = []
        self._tty = is_tty(out)
        self._prompting = False

    def hide(self, redact: Callable[[str], str]) -> None:
        """Pass every later line through ``redact`` (e.g. ``Secret.redact``)."""
        self._redactors.append(redact)

    def _clean(self, text: str) -> str:
        for redact in self._redactors:
            text = redact(text)
        return text

    def _write(self, text: str) -> None:
        if self._prompting and self._tty:
            text = "\r\033[K" + text
        self._prompting = False
        self.out.write(text)
        self.out.flush()

    def add(self, status: str, text: str) -> None:
        text = self._clean(text)
        self.lines.append((status, text))
        if status == FAIL:
            self.failed += 1
        self._write(f"{status:<4} {text}\n")

    def ok(self, text: str) -> None:
        self.add(OK, text)

    def fail(self, text: str) -> None:
        self.add(FAIL, text)

    def skip(self, text: str) -> None:
        self.add(SKIP, text)

    def prompt(self, text: str) -> None:
        self._write(f"{'':<4} {self._clean(text)}" + ("" if self._tty else "\n"))
        self._prompting = True


def is_tty(stream: Any) -> bool:
    from talkie.panel.keyboard import is_tty

    return is_tty(stream)

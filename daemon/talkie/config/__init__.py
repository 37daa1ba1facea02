"""Read and validate talkie's TOML config file.

``load(path)`` returns frozen :class:`Settings` or raises :class:`ConfigError`
telling the user where and what to fix, one line per problem::

    /etc/talkie/talkie.toml:14: [audio] chunk_ms: out of range; found 500; allowed 10 to 100

What each key accepts lives in :mod:`talkie.config.schema`.  The config never
holds the API key, and values of secret-looking keys are never echoed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from collections.abc import Iterable
from typing import Any

from talkie.config.lines import KeyLines
from talkie.config.schema import (
    DEFAULT_PATTERNS,
    PATTERN_FIELDS,
    SECTIONS,
    AudioSettings,
    FieldSpec,
    FrozenMap,
    Invalid,
    LedPattern,
    LiveSettings,
    LogSettings,
    PanelSettings,
    Path,
    SessionSettings,
    Settings,
    VisionSettings,
    suggest,
)

__all__ = [
    "DEFAULT_PATH",
    "EX_CONFIG",
    "ConfigError",
    "load",
    "describe",
    "Settings",
    "LiveSettings",
    "AudioSettings",
    "PanelSettings",
    "SessionSettings",
    "VisionSettings",
    "LogSettings",
    "LedPattern",
    "DEFAULT_PATTERNS",
]

DEFAULT_PATH = "/etc/talkie/talkie.toml"
EX_CONFIG = 78  # sysexits.h: configuration error

_SECRET_NAME = re.compile(r"(key|token|secret|password|credential)s?($|[_.-])", re.IGNORECASE)
_SECRET_VALUE = re.compile(r"AIza[0-9A-Za-z_\-]{20,}")  # what Google API keys look like
_API_KEY_NAMES = {"api_key", "apikey", "key", "gemini_api_key", "google_api_key"}
_KEY_HINT = (
    "the API key never goes in this file: put it in /etc/talkie/api-key "
    "or set api_key_file to a file that holds it"
)


class ConfigError(Exception):
    """The config file cannot be used.  ``str()`` is the complete user-facing
    message, one ``<file>:<line>: [section] key: ...`` line per problem;
    ``problems`` holds those lines separately."""

    def __init__(self, message: str, problems: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems) or (message,)


# ------------------------------------------------------------ line locator
# ------------------------------------------------------- showing values
_TYPE_NAMES = {
    bool: "boolean",
    int: "integer",
    float: "float",
    str: "string",
    list: "array",
    dict: "table",
}


def _type_name(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__.replace("datetime", "date-time"))


def _is_secret(name: str, value: Any) -> bool:
    """Whether a value must not be shown: a string-ish value of a key named
    like a secret (except api_key_file, a path), or anything like an API key."""
    if _SECRET_VALUE.search(repr(value)):
        return True
    if isinstance(value, (bool, int, float)) or name == "api_key_file":
        return False
    return bool(_SECRET_NAME.search(name))


def _toml(value: Any) -> str:
    """``value`` as TOML text (strings, numbers, booleans, arrays, tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return repr(value) if isinstance(value, float) else str(value)


def _found(name: str, value: Any, typed: bool = False, item: int | None = None) -> str:
    if _is_secret(name, value):
        return "a value (not shown)"
    text = _toml(value)
    if len(text) > 160:
        text = text[:156] + " ..."
    notes = ([_type_name(value)] if typed else []) + ([f"item {item}"] if item else [])
    return text + (f" ({', '.join(notes)})" if notes else "")


def _why(err: OSError) -> str:
    """A short reason for an OSError, e.g. "no such file"."""
    reasons = {
        FileNotFoundError: "no such file",
        PermissionError: "permission denied",
        IsADirectoryError: "is a directory",
        NotADirectoryError: "not a directory",
    }
    return reasons.get(type(err), (err.strerror or str(err)).lower())


# --------------------------------------------------------------- checking
class _Checker:
    """Applies the schema to a parsed document, collecting located problems."""

    def __init__(self, source: str, lines: KeyLines) -> None:
        self.source, self.lines = source, lines
        self.base_dir = os.path.dirname(os.path.abspath(source))
        self.problems: list[tuple[int, str]] = []
        self.files: dict[str, bytes] = {}

    def report(
        self, path: tuple[str, ...], text: str, line: int | None = None, label: str = ""
    ) -> None:
        """Add a problem at the line of ``path``, labelled "[section] key"."""
        line = line or self.lines.find(path)
        label = label or (f"[{'.'.join(path[:-1])}] {path[-1]}" if len(path) > 1 else path[0])
        self.problems.append((line, f"{self.source}:{line}: {label}: {text}"))

    def unknown(
        self, path: tuple[str, ...], key: str, value: Any, allowed: Iterable[str], noun: str = "key"
    ) -> None:
        """Report an unknown key, with the nearest valid name or the section
        it belongs in, and the allowed names."""
        allowed = sorted(allowed)
        home = [
            s
            for s, (_, fields) in SECTIONS.items()
            if len(path) == 1 and s != path[0] and key in {f.name for f in fields}
        ]
        near = suggest(key, allowed)
        if key.lower().replace("-", "_") in _API_KEY_NAMES:
            hint = f" ({_KEY_HINT})"
        elif home:
            hint = f" (it belongs in [{home[0]}])"
        else:
            hint = f" (did you mean {near}?)" if near else ""
        shown = "; found a value (not shown)" if _is_secret(key, value) else ""
        self.report(path + (key,), f"unknown {noun}{hint}{shown}; allowed: {', '.join(allowed)}")

    def table(
        self,
        path: tuple[str, ...],
        table: dict,
        fields: Iterable[FieldSpec],
        extra: Iterable[str] = (),
    ) -> dict[str, Any]:
        """Check the keys of one table; return {name: checked value} for the
        valid ones (the dataclass supplies defaults for the rest)."""
        specs = {spec.name: spec for spec in fields}
        values: dict[str, Any] = {}
        for key, value in table.items():
            if key in extra:
                continue
            if key not in specs:
                self.unknown(path, key, value, [*specs, *extra])
                continue
            kind = specs[key].kind
            try:
                values[key] = kind.check(value)
            except Invalid as bad:
                found = _found(key, bad.value, bad.typed, bad.item)
                self.report(path + (key,), f"{bad.what}; found {found}; allowed {bad.allowed}")
                continue
            if isinstance(kind, Path) and values[key]:
                values[key] = os.path.join(self.base_dir, values[key])
                if kind.must_exist:
                    self._read(path + (key,), values[key])
        return values

    def _read(self, path: tuple[str, ...], filename: str) -> None:
        try:
            with open(filename, "rb") as fh:
                self.files[path[-1]] = fh.read()
        except OSError as err:
            self.report(path, f"cannot read {filename}: {_why(err)}")

    def patterns(self, value: Any) -> FrozenMap:
        """[panel.patterns.NAME] tables, each overriding fields of the
        default pattern of that LED state."""
        path, out = ("panel", "patterns"), dict(DEFAULT_PATTERNS)
        if not isinstance(value, dict):
            self.report(
                path,
                f"wrong type; found {_found('patterns', value, True)}; "
                "allowed [panel.patterns.NAME] sections",
            )
            return DEFAULT_PATTERNS
        for state, table in value.items():
            if state not in DEFAULT_PATTERNS:
                self.unknown(path, state, table, DEFAULT_PATTERNS, noun="LED state")
            elif not isinstance(table, dict):
                self.report(
                    path + (state,),
                    f"wrong type; found {_found(state, table, True)}; "
                    'allowed a table like { kind = "blink", color = [1.0, 0.0, 0.0] }',
                )
            else:
                values = self.table(path + (state,), table, PATTERN_FIELDS)
                out[state] = dataclasses.replace(DEFAULT_PATTERNS[state], **values)
        return FrozenMap(out)


# ------------------------------------------------ rules across several keys
def _instruction_text(check: _Checker) -> dict[str, str]:
    data = check.files.get("system_instruction_file")
    if data is None:
        return {}
    try:
        return {"system_instruction_text": data.decode("utf-8-sig").strip()}
    except UnicodeDecodeError:
        check.report(
            ("live", "system_instruction_file"),
            "not UTF-8 text; allowed a readable UTF-8 text file",
        )
        return {}


def _check_ca(check: _Checker, live: LiveSettings) -> None:
    data = check.files.get("ca_file")
    if data is not None and not (b"-----BEGIN" in data and b"CERTIFICATE-----" in data):
        check.report(
            ("live", "ca_file"),
            f"not a PEM certificate bundle; found {live.ca_file}"
            ' (no "-----BEGIN CERTIFICATE-----" line); allowed a PEM file of CA '
            "certificates",
        )


def _exclusive(check: _Checker, section: str, obj: Any, first: str, second: str) -> None:
    """``first`` and ``second`` must not both be set (None and "" are unset)."""
    a, b = getattr(obj, first), getattr(obj, second)
    if a not in (None, "") and b not in (None, ""):
        where = check.lines.find((section, first))
        check.report(
            (section, second),
            f"cannot be combined with {first} (line {where}); "
            f"found {_found(second, b)}; allowed only one of {first} and {second}",
        )


def _check_rules(check: _Checker, settings: Settings) -> None:
    """The rules that involve several keys (checked once every key is valid)."""
    live, panel = settings.live, settings.panel
    _exclusive(check, "live", live, "thinking_budget", "thinking_level")
    _exclusive(check, "live", live, "system_instruction", "system_instruction_file")
    _check_ca(check, live)
    trigger, target = live.compression_trigger_tokens, live.compression_target_tokens
    if trigger is not None and target is not None and target >= trigger:
        check.report(
            ("live", "compression_target_tokens"),
            f"must be less than compression_trigger_tokens; found {target}; "
            f"allowed less than {trigger}",
        )
    audio = settings.audio
    if audio.vad_start_frames > audio.vad_window_frames:
        check.report(
            ("audio", "vad_start_frames"),
            f"more than vad_window_frames; found "
            f"{audio.vad_start_frames}; allowed 1 to {audio.vad_window_frames}",
        )
    located = check.lines.lines.get  # the led_pins line, else the led line, else [panel]
    pins_at = located(("panel", "led_pins")) or located(("panel", "led"))
    need = 3 if panel.led == "rgb" else 1
    if panel.led != "none" and len(panel.led_pins) != need:
        allowed = "3 pins (red, green, blue), e.g. [5, 6, 13]" if need == 3 else "1 pin, e.g. [27]"
        check.report(
            ("panel", "led_pins"),
            f'wrong number of pins for led = "{panel.led}"; '
            f"found {_toml(panel.led_pins)}; allowed {allowed}",
            pins_at,
        )
    if panel.button and panel.led != "none" and panel.button_pin in panel.led_pins:
        check.report(
            ("panel", "led_pins"),
            f"pin {panel.button_pin} is also button_pin; "
            f"found {_toml(panel.led_pins)}; allowed pins other than "
            f"{panel.button_pin}",
            pins_at,
        )


# ------------------------------------------------------------ public API
def _parse(source: str) -> tuple[dict, KeyLines]:
    """Read and parse the file, or raise ConfigError."""
    try:
        with open(source, "rb") as fh:
            raw = fh.read()
    except OSError as err:
        raise ConfigError(f"{source}: cannot read: {_why(err)}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(
            f"{source}:{line}: invalid TOML: not UTF-8 text (byte 0x{raw[err.start]:02x})"
        ) from None
    try:
        return tomllib.loads(text), KeyLines(text)
    except tomllib.TOMLDecodeError as err:
        detail = str(err)
        at = re.search(r" \(at line (\d+), column \d+\)$", detail)
        if at:
            line, detail = int(at.group(1)), detail[: at.start()]
        else:
            line = text.count("\n") + (0 if text.endswith("\n") else 1) or 1
            detail = detail.replace("(at end of document)", "at the end of the file")
        detail = re.sub(
            r"\(((?:'[^']*',? ?)+)\)",
            lambda m: "[" + ".".join(re.findall(r"'([^']*)'", m.group(1))) + "]",
            detail,
        )
        raise ConfigError(f"{source}:{line}: invalid TOML: {detail}") from None


def load(path: str | os.PathLike) -> Settings:
    """Read, validate and return the settings in the TOML file at ``path``.

    Raises ConfigError (exit with EX_CONFIG) listing every problem found.
    Relative paths in the file are taken relative to the file's folder.
    """
    source = os.fspath(path)
    doc, lines = _parse(source)
    check = _Checker(source, lines)
    for name, value in doc.items():
        if name == "network":  # applied once by `talkie firstboot` (the Debian image), not here
            continue
        if name not in SECTIONS:
            _unknown_top(check, name, value)
        elif not isinstance(value, dict):
            check.report(
                (name,),
                f"wrong type; found {_found(name, value, True)}; allowed a [{name}] section",
                label=f"[{name}]",
            )
    built: dict[str, Any] = {}
    for name, (cls, fields) in SECTIONS.items():
        table = doc.get(name) if isinstance(doc.get(name), dict) else {}
        extra: dict[str, Any] = {}
        if name == "panel" and "patterns" in table:
            extra["patterns"] = check.patterns(table["patterns"])
        special = ("patterns",) if name == "panel" else ()
        values = check.table((name,), table, fields, extra=special)
        if name == "live":
            values.update(_instruction_text(check))
        built[name] = cls(**values, **extra)
    settings = Settings(source=source, **built)
    if not check.problems:
        _check_rules(check, settings)
    if check.problems:
        shown = [text for _, text in sorted(check.problems, key=lambda p: p[0])]
        raise ConfigError("\n".join(shown), shown)
    return settings


def _unknown_top(check: _Checker, name: str, value: Any) -> None:
    """A top-level name that is not a section: a stray key or a mistyped section."""
    sections = [f"[{s}]" for s in SECTIONS]
    if isinstance(value, dict):
        near = suggest(name, list(SECTIONS))
        hint = f" (did you mean [{near}]?)" if near else ""
        check.report(
            (name,), f"unknown section{hint}; allowed: {', '.join(sections)}", label=f"[{name}]"
        )
        return
    home = [s for s, (_, fields) in SECTIONS.items() if name in {f.name for f in fields}]
    hint = f"; it belongs in [{home[0]}]: move it below the [{home[0]}] line" if home else ""
    if name.lower().replace("-", "_") in _API_KEY_NAMES:
        hint = f"; {_KEY_HINT}"
    shown = "; found a value (not shown)" if _is_secret(name, value) else ""
    check.report((name,), f"key outside any section{hint}{shown}; allowed: {', '.join(sections)}")


def describe(settings: Settings) -> str:
    """The effective settings as TOML text that load() reads back to the same
    settings.  Unset optional keys appear as comments; no secret is shown."""
    source = " ".join(settings.source.splitlines()) or "built-in defaults"
    out = [f"# talkie settings in effect (from {source})"]
    for name, (_, fields) in SECTIONS.items():
        obj = getattr(settings, name)
        out += ["", f"[{name}]"] + [_describe_key(f, getattr(obj, f.name)) for f in fields]
        if name == "live" and settings.live.system_instruction_file:
            out.append(
                f"# (system_instruction_file: {len(settings.live.system_instruction_text)}"
                " characters of instruction)"
            )
        if name == "panel":
            for state, pattern in settings.panel.patterns.items():
                out += ["", f"[panel.patterns.{state}]"]
                out += [_describe_key(s, getattr(pattern, s.name)) for s in PATTERN_FIELDS]
    return "\n".join(out) + "\n"


def _describe_key(spec: FieldSpec, value: Any) -> str:
    if value is None:
        return f"# {spec.name}: not set ({spec.doc})"
    if _is_secret(spec.name, value):
        return f"# {spec.name} = (not shown)"
    return f"{spec.name} = {_toml(value)}"

"""Read and validate talkie's TOML config file.

``load(path)`` returns frozen :class:`Settings` or raises :class:`ConfigError`
telling the user where and what to fix, one line per problem::

    /etc/talkie/talkie.toml:14: [audio] chunk_ms: out of range; found 500; allowed 10 to 100

What each key accepts lives in :mod:`talkie.config.schema`.  The config never
holds the API key, and values of secret-looking keys are never echoed.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any

from talkie.config import tooltables
from talkie.config.checker import Checker, check_rules, instruction_text, unknown_top
from talkie.config.files import CONFIG_MAX, read_file
from talkie.config.lines import KeyLines, too_deep
from talkie.config.schema import MCP, OPTION_FIELDS, PATTERN_FIELDS, SECTIONS, FieldSpec
from talkie.config.settings import (
    DEFAULT_PATTERNS,
    AudioSettings,
    FrozenMap,
    LedPattern,
    LiveSettings,
    LogSettings,
    MqttSettings,
    PanelSettings,
    SessionSettings,
    Settings,
    VisionSettings,
)
from talkie.config.text import found, is_secret, name_shown, toml_text, why

__all__ = [
    "DEFAULT_PATH",
    "PATH_VARIABLE",
    "config_path",
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
    "MqttSettings",
    "LedPattern",
    "DEFAULT_PATTERNS",
    "KeyLines",
    "FrozenMap",
]

DEFAULT_PATH = "/etc/talkie/talkie.toml"
#: The variable naming the config file when no path is given (``daemon/run`` sets it).
PATH_VARIABLE = "TALKIE_CONFIG"
EX_CONFIG = 78  # sysexits.h: configuration error
#: How deep arrays and inline tables may nest (LED colours are the deepest: 3).
NESTING_MAX = 32
#: The keys of a section that hold tables of their own (checked apart).
SPECIAL = {"panel": ("patterns",), "tools": ("options", "mcp")}


class ConfigError(Exception):
    """The config file cannot be used.  ``str()`` is the complete user-facing
    message, one ``<file>:<line>: [section] key: ...`` line per problem;
    ``problems`` holds those lines separately."""

    def __init__(self, message: str, problems: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems) or (message,)


# ------------------------------------------------------------ public API
def config_path(given: str | None = None, env: Mapping[str, str] = os.environ) -> str:
    """The config file every command uses: ``given`` (a path on the command line), else
    ``$TALKIE_CONFIG``, else :data:`DEFAULT_PATH`."""
    return given or env.get(PATH_VARIABLE) or DEFAULT_PATH


def _parse(source: str) -> tuple[dict[str, Any], KeyLines]:
    """Read and parse the file, or raise ConfigError."""
    try:
        raw = read_file(source, CONFIG_MAX)
    except OSError as err:
        raise ConfigError(f"{source}: cannot read: {why(err)}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(
            f"{source}:{line}: invalid TOML: not UTF-8 text (byte 0x{raw[err.start]:02x})"
        ) from None
    deep = too_deep(text, NESTING_MAX)
    if deep is not None:
        raise ConfigError(
            f"{source}:{deep}: invalid TOML: arrays or tables nested more than {NESTING_MAX} "
            f"deep; allowed at most {NESTING_MAX} (talkie's settings need 3)"
        )
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


def load(path: str | os.PathLike[str]) -> Settings:
    """Read, validate and return the settings in the TOML file at ``path``.

    Raises ConfigError (exit with EX_CONFIG) listing every problem found.
    Relative paths in the file are taken relative to the file's folder.
    """
    source = os.fspath(path)
    doc, lines = _parse(source)
    check = Checker(source, lines)
    for name, value in doc.items():
        if name == "network":  # applied once by `talkie firstboot` (the Debian image), not here
            continue
        if name not in SECTIONS:
            unknown_top(check, name, value)
        elif not isinstance(value, dict):
            check.report(
                (name,),
                f"wrong type; found {found(name, value, True)}; allowed a [{name}] section",
                label=f"[{name_shown(name)}]",
            )
    built: dict[str, Any] = {}
    for name, (cls, fields) in SECTIONS.items():
        section = doc.get(name)
        table: dict[str, Any] = section if isinstance(section, dict) else {}
        extra: dict[str, Any] = {}
        if name == "panel" and "patterns" in table:
            extra["patterns"] = check.patterns(table["patterns"])
        if name == "tools":
            if "options" in table:
                extra["options"] = tooltables.tool_options(check, table["options"])
            if "mcp" in table:
                extra["mcp"] = tooltables.mcp_servers(check, table["mcp"])
        special = SPECIAL.get(name, ())
        values = check.table((name,), table, fields, extra=special)
        if name == "live":
            values.update(instruction_text(check))
        built[name] = cls(**values, **extra)
    notes = tuple(text for _, text in sorted(check.notes, key=lambda n: n[0]))
    settings = Settings(source=source, **built, notes=notes)
    if not check.problems:
        check_rules(check, settings)
    if check.problems:
        shown = [text for _, text in sorted(check.problems, key=lambda p: p[0])]
        raise ConfigError("\n".join(shown), shown)
    return settings


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
        if name == "tools":
            for tool, options in settings.tools.options.items():
                out += ["", f"[tools.options.{_key_text(tool)}]"]
                out += [_describe_key(s, getattr(options, s.name)) for s in OPTION_FIELDS]
            for server in settings.tools.mcp:
                out += ["", "[[tools.mcp]]"]
                out += [_describe_key(s, getattr(server, s.name)) for s in MCP[1]]
    return "\n".join(out) + "\n"


def _key_text(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else toml_text(name)


def _describe_key(spec: FieldSpec, value: Any) -> str:
    if value is None or value == ():
        return f"# {spec.name}: not set ({spec.doc})"
    if is_secret(spec.name, value):
        return f"# {spec.name} = (not shown)"
    return f"{spec.name} = {toml_text(value)}"

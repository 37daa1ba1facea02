"""Values as the messages show them: TOML text, the kind of a value, a reason for an OSError, and
never a secret (a key named like one, or anything that looks like an API key)."""

from __future__ import annotations

import json
import re
from typing import Any

from talkie.config.files import NotAFile, TooLarge

_SECRET_NAME = re.compile(r"(key|token|secret|password|credential)s?($|[_.-])", re.IGNORECASE)
#: Keys named like secrets that hold the path of the file with the secret: shown.
_SECRET_FILES = ("api_key_file", "token_file", "password_file")
_SECRET_VALUE = re.compile(r"AIza[0-9A-Za-z_\-]{20,}")  # what Google API keys look like

TYPE_NAMES = {
    bool: "boolean",
    int: "integer",
    float: "float",
    str: "string",
    list: "array",
    dict: "table",
}


def type_name(value: Any) -> str:
    return TYPE_NAMES.get(type(value), type(value).__name__.replace("datetime", "date-time"))


def is_secret(name: str, value: Any) -> bool:
    """Whether a value must not be shown: a string-ish value of a key named
    like a secret (except the paths of the files that hold one), or anything like an API key."""
    if _SECRET_VALUE.search(repr(value)):
        return True
    if isinstance(value, (bool, int, float)) or name in _SECRET_FILES:
        return False
    return bool(_SECRET_NAME.search(name))


#: What JSON leaves as it is but a terminal or the journal would not show as one character on one
#: line: DEL, the C1 controls (U+0085 breaks lines), the line and paragraph separators, and the
#: invisible format characters (bidirectional overrides among them).
_UNSEEN = re.compile("[\x7f-\x9f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def toml_text(value: Any) -> str:
    """``value`` as TOML text (strings, numbers, booleans, arrays, tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _UNSEEN.sub(_escape, json.dumps(value, ensure_ascii=False))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_text(v)}" for k, v in value.items()) + " }"
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return repr(value) if isinstance(value, float) else str(value)


def found(name: str, value: Any, typed: bool = False, item: int | None = None) -> str:
    if is_secret(name, value):
        return "a value (not shown)"
    text = toml_text(value)
    if len(text) > 160:
        text = text[:156] + " ..."
    notes = ([type_name(value)] if typed else []) + ([f"item {item}"] if item else [])
    return text + (f" ({', '.join(notes)})" if notes else "")


#: The longest key or section name a message repeats whole.
NAME_MAX = 60


def name_shown(name: str) -> str:
    """A key or section name as a message shows it: printable, and cut short if it is long."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in name[: NAME_MAX + 1])
    return clean if len(name) <= NAME_MAX else clean[: NAME_MAX - 3] + "..."


def why(err: OSError) -> str:
    """A short reason for an OSError, e.g. "no such file"."""
    reasons = {
        FileNotFoundError: "no such file",
        PermissionError: "permission denied",
        IsADirectoryError: "is a directory",
        NotADirectoryError: "not a directory",
    }
    if isinstance(err, NotAFile | TooLarge):
        return str(err)
    return reasons.get(type(err), (err.strerror or str(err)).lower())

"""Kinds of config value: what a key accepts, how it is checked and how it is described.

Each kind turns a raw TOML value into the setting's value or raises :class:`Invalid` with the words
the error message needs (what is wrong, what is allowed). Used by :mod:`talkie.config.schema`.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

_N = TypeVar("_N", int, float)


class Invalid(Exception):
    """A value failed its check.

    ``what`` says what is wrong ("out of range"), ``allowed`` what would be
    accepted, ``value`` the offending value (an array item when ``item`` is
    its 1-based position) and ``typed`` whether to show the value's TOML type.
    """

    def __init__(
        self, what: str, allowed: str, value: Any, *, typed: bool = False, item: int | None = None
    ) -> None:
        super().__init__(what)
        self.what, self.allowed, self.value = what, allowed, value
        self.typed, self.item = typed, item


def suggest(word: str, choices: Iterator[str] | list[str]) -> str | None:
    """The closest of ``choices`` to a mistyped ``word``, if any is close (a long word is no
    typo of a short name: none)."""
    if len(word) > 64:
        return None
    found = difflib.get_close_matches(word.lower(), list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


class Kind:
    """How one key's value is checked and normalised.  Subclasses set ``expect``
    (what a wrong-typed value should have been) and ``type_name`` (its TOML type, for the
    reference), and implement ``check``; :meth:`allowed` says what is accepted, in words."""

    expect = "a value"
    type_name = "value"

    def check(self, value: Any) -> Any:
        raise NotImplementedError

    def allowed(self) -> str:
        """The values accepted, as the config reference lists them."""
        return self.expect

    def wrong_type(self, value: Any) -> Invalid:
        return Invalid("wrong type", self.expect, value, typed=True)


class Bool(Kind):
    """true or false (TOML booleans only; never 0/1 or "yes")."""

    expect = "true or false"
    type_name = "boolean"

    def check(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.wrong_type(value)
        return value


class _Range(Kind):
    """Shared range logic of Int and Float."""

    noun = "a number"

    def __init__(self, low: float | None = None, high: float | None = None) -> None:
        self.low, self.high = low, high
        bounds = f"{low} to {high}" if high is not None else f">= {low}"
        self.span = bounds if low is not None else ""
        joiner = " from " if high is not None else " "
        self.expect = self.noun + (joiner + self.span if self.span else "")

    def allowed(self) -> str:
        return self.span or f"any {self.type_name}"

    def in_range(self, value: _N) -> _N:
        too_low = self.low is not None and value < self.low
        too_high = self.high is not None and value > self.high
        if too_low or too_high or (isinstance(value, float) and not math.isfinite(value)):
            raise Invalid("out of range", self.span or "a finite number", value)
        return value


class Int(_Range):
    """A TOML integer, optionally bounded (inclusive)."""

    noun = "an integer"
    type_name = "integer"

    def check(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.wrong_type(value)
        return self.in_range(value)


class Float(_Range):
    """A TOML float or integer (stored as float), optionally bounded."""

    type_name = "float"

    def __init__(self, low: float | None = None, high: float | None = None) -> None:
        super().__init__(None if low is None else float(low), None if high is None else float(high))

    def check(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.wrong_type(value)
        return float(self.in_range(value))  # bounds first: huge ints overflow float()


class Text(Kind):
    """A string of at most ``max_len`` characters, optionally non-empty or matching ``valid``
    (empty is always accepted unless ``nonempty``)."""

    type_name = "string"

    def __init__(
        self,
        expect: str = "a string (in quotes)",
        *,
        nonempty: bool = False,
        valid: Callable[[str], object] | None = None,
        max_len: int = 256,
    ) -> None:
        self.expect, self.nonempty, self.valid, self.max_len = expect, nonempty, valid, max_len

    def allowed(self) -> str:
        what = "any text" if self.expect == "a string (in quotes)" else self.expect
        return f"{what}; at most {self.max_len} characters"

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise self.wrong_type(value)
        if len(value) > self.max_len:
            raise Invalid(
                f"too long ({len(value)} characters)",
                f"{self.expect}, at most {self.max_len} characters",
                value,
            )
        if self.nonempty and not value.strip():
            raise Invalid("must not be empty", self.expect, value)
        if value and self.valid is not None and not self.valid(value):
            raise Invalid("not valid", self.expect, value)
        return value


class Path(Text):
    """A file path; config.load() resolves it relative to the config file's folder and, when
    ``must_exist``, reads it: a regular file of at most ``limit`` bytes
    (:func:`talkie.config.files.read_file`)."""

    type_name = "path"

    def __init__(
        self,
        expect: str = 'a file path, or "" for none',
        *,
        must_exist: bool = False,
        limit: int = 1 << 20,
    ) -> None:
        super().__init__(expect, max_len=4096)
        self.must_exist, self.limit = must_exist, limit

    def allowed(self) -> str:
        relative = "; relative to the config file's folder"
        return self.expect + relative + ("; read when set" if self.must_exist else "")


class Choice(Kind):
    """One of a fixed set of words, matched case-insensitively and stored
    lower-case (upper-case when ``upper``)."""

    type_name = "string"

    def __init__(self, *options: str, upper: bool = False) -> None:
        self.options, self.upper = options, upper
        shown = ", ".join(o if o else '""' for o in options)
        self.expect = f"one of: {shown}"

    def allowed(self) -> str:
        return ", ".join(f'"{o}"' for o in self.options)

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise self.wrong_type(value)
        norm = value.strip().upper() if self.upper else value.strip().lower()
        if norm in self.options:
            return norm
        near = suggest(value, [o.lower() for o in self.options if o])
        near = next((o for o in self.options if o.lower() == near), None) if near else None
        what = f'unknown value (did you mean "{near}"?)' if near else "unknown value"
        raise Invalid(what, self.expect, value)


class Switch(Choice):
    """``auto``, ``on`` or ``off``; ``true`` and ``false`` mean on and off."""

    type_name = "string or boolean"

    def __init__(self) -> None:
        super().__init__("auto", "on", "off")
        self.expect = "one of: auto, on, off (or true, false)"

    def check(self, value: Any) -> str:
        if isinstance(value, bool):
            return "on" if value else "off"
        return super().check(value)

    def allowed(self) -> str:
        return super().allowed() + " (true = on, false = off)"


class Device(Kind):
    """A sound device: "" (default), part of its name, or its index."""

    expect = '"" (system default), part of a device name, or a device index >= 0'
    type_name = "string or integer"

    def check(self, value: Any) -> str | int:
        if isinstance(value, str):
            if len(value) > 256:
                raise Invalid(
                    f"too long ({len(value)} characters)", "at most 256 characters", value
                )
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.wrong_type(value)
        if value < 0:
            raise Invalid("out of range", "a device index >= 0", value)
        return value


class ListOf(Kind):
    """A TOML array of ``item`` values, stored as a tuple."""

    def __init__(
        self,
        item: Kind,
        expect: str,
        *,
        min_len: int = 1,
        max_len: int | None = None,
        unique: bool = True,
    ) -> None:
        self.item, self.expect = item, expect
        self.min_len, self.max_len, self.unique = min_len, max_len, unique
        self.type_name = f"array of {item.type_name}s"

    def check(self, value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise self.wrong_type(value)
        if len(value) < self.min_len or (self.max_len is not None and len(value) > self.max_len):
            raise Invalid("wrong number of items", self.expect, value)
        out: list[Any] = []
        for pos, element in enumerate(value, 1):
            try:
                checked = self.item.check(element)
            except Invalid as err:
                err.item = pos
                raise
            if self.unique and checked in out:
                raise Invalid("repeated item", "each item at most once", element, item=pos)
            out.append(checked)
        return tuple(out)


def _is_url(url: str, schemes: tuple[str, ...]) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError:
        return False
    return parts.scheme.lower() in schemes and bool(parts.hostname)


def is_endpoint(url: str) -> bool:
    return _is_url(url, ("https", "wss"))


def is_http_url(url: str) -> bool:
    return _is_url(url, ("http", "https"))


BCP47 = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")

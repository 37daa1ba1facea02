"""Applying the schema to a parsed document: every problem located at its file:line and labelled
``[section] key``, with what was found and what is allowed; then the rules that involve several
keys."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from typing import Any

from talkie.config.files import read_file
from talkie.config.kinds import Invalid, Path, suggest
from talkie.config.lines import KeyLines
from talkie.config.schema import PATTERN_FIELDS, RETIRED, SECTIONS, FieldSpec
from talkie.config.settings import DEFAULT_PATTERNS, FrozenMap, Settings
from talkie.config.text import found, is_secret, name_shown, toml_text, why

_API_KEY_NAMES = {"api_key", "apikey", "key", "gemini_api_key", "google_api_key"}
_KEY_HINT = (
    "the API key never goes in this file: put it in /etc/talkie/api-key "
    "or set api_key_file to a file that holds it"
)


class Checker:
    """Applies the schema to a parsed document, collecting located problems."""

    def __init__(self, source: str, lines: KeyLines) -> None:
        self.source, self.lines = source, lines
        self.base_dir = os.path.dirname(os.path.abspath(source))
        self.problems: list[tuple[int, str]] = []
        self.notes: list[tuple[int, str]] = []
        #: The files named by the settings that were read, by key path: ("live", "ca_file").
        self.files: dict[tuple[str, ...], bytes] = {}

    def report(
        self, path: tuple[str, ...], text: str, line: int | None = None, label: str = ""
    ) -> None:
        """Add a problem at the line of ``path``, labelled "[section] key"."""
        line = line or self.lines.find(path)
        shown = [name_shown(part) for part in path]
        item = next((i for i, part in enumerate(path) if part.startswith("#")), None)
        if item is not None and not label:  # a table of an array: "[[tools.mcp]] #2 url"
            label = f"[[{'.'.join(shown[:item])}]] {' '.join(shown[item:])}"
        label = label or (f"[{'.'.join(shown[:-1])}] {shown[-1]}" if len(path) > 1 else shown[0])
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
        shown = "; found a value (not shown)" if is_secret(key, value) else ""
        self.report(path + (key,), f"unknown {noun}{hint}{shown}; allowed: {', '.join(allowed)}")

    def table(
        self,
        path: tuple[str, ...],
        table: dict[str, Any],
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
            retired = RETIRED.get((path[0], key)) if len(path) == 1 else None
            if retired is not None:
                line = self.lines.find(path + (key,))
                self.notes.append((line, f"{self.source}:{line}: [{path[0]}] {key}: {retired}"))
                continue
            if key not in specs:
                self.unknown(path, key, value, [*specs, *extra])
                continue
            kind = specs[key].kind
            try:
                values[key] = kind.check(value)
            except Invalid as bad:
                shown = found(key, bad.value, bad.typed, bad.item)
                self.report(path + (key,), f"{bad.what}; found {shown}; allowed {bad.allowed}")
                continue
            if isinstance(kind, Path) and values[key]:
                values[key] = os.path.join(self.base_dir, values[key])
                if kind.must_exist:
                    self._read(path + (key,), values[key], kind.limit)
        return values

    def _read(self, path: tuple[str, ...], filename: str, limit: int) -> None:
        try:
            self.files[path] = read_file(filename, limit)
        except OSError as err:
            self.report(path, f"cannot read {filename}: {why(err)}")

    def patterns(self, value: Any) -> FrozenMap:
        """[panel.patterns.NAME] tables, each overriding fields of the
        default pattern of that LED state."""
        path, out = ("panel", "patterns"), dict(DEFAULT_PATTERNS)
        if not isinstance(value, dict):
            self.report(
                path,
                f"wrong type; found {found('patterns', value, True)}; "
                "allowed [panel.patterns.NAME] sections",
            )
            return DEFAULT_PATTERNS
        for state, table in value.items():
            if state not in DEFAULT_PATTERNS:
                self.unknown(path, state, table, DEFAULT_PATTERNS, noun="LED state")
            elif not isinstance(table, dict):
                self.report(
                    path + (state,),
                    f"wrong type; found {found(state, table, True)}; "
                    'allowed a table like { kind = "blink", color = [1.0, 0.0, 0.0] }',
                )
            else:
                values = self.table(path + (state,), table, PATTERN_FIELDS)
                out[state] = dataclasses.replace(DEFAULT_PATTERNS[state], **values)
        return FrozenMap(out)


# ------------------------------------------------ rules across several keys
def instruction_text(check: Checker) -> dict[str, str]:
    data = check.files.get(("live", "system_instruction_file"))
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


def _check_ca(check: Checker, section: str, ca_file: str) -> None:
    data = check.files.get((section, "ca_file"))
    if data is not None and not (b"-----BEGIN" in data and b"CERTIFICATE-----" in data):
        check.report(
            (section, "ca_file"),
            f"not a PEM certificate bundle; found {ca_file}"
            ' (no "-----BEGIN CERTIFICATE-----" line); allowed a PEM file of CA '
            "certificates",
        )


def _exclusive(check: Checker, section: str, obj: Any, first: str, second: str) -> None:
    """``first`` and ``second`` must not both be set (None and "" are unset)."""
    a, b = getattr(obj, first), getattr(obj, second)
    if a not in (None, "") and b not in (None, ""):
        where = check.lines.find((section, first))
        check.report(
            (section, second),
            f"cannot be combined with {first} (line {where}); "
            f"found {found(second, b)}; allowed only one of {first} and {second}",
        )


def check_rules(check: Checker, settings: Settings) -> None:
    """The rules that involve several keys (checked once every key is valid)."""
    live, panel = settings.live, settings.panel
    _exclusive(check, "live", live, "thinking_budget", "thinking_level")
    _exclusive(check, "live", live, "system_instruction", "system_instruction_file")
    _check_ca(check, "live", live.ca_file)
    _check_ca(check, "mqtt", settings.mqtt.ca_file)
    if settings.mqtt.password_file and not settings.mqtt.username:
        check.report(
            ("mqtt", "password_file"),
            "a password goes with a username; found no username; allowed password_file "
            'together with username (e.g. username = "talkie"), or password_file = ""',
        )
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
            f"found {toml_text(panel.led_pins)}; allowed {allowed}",
            pins_at,
        )
    if panel.button and panel.led != "none" and panel.button_pin in panel.led_pins:
        check.report(
            ("panel", "led_pins"),
            f"pin {panel.button_pin} is also button_pin; "
            f"found {toml_text(panel.led_pins)}; allowed pins other than "
            f"{panel.button_pin}",
            pins_at,
        )
    _indicator_pin(check, settings)
    _control_pins(check, settings)


def unknown_top(check: Checker, name: str, value: Any) -> None:
    """A top-level name that is not a section: a stray key or a mistyped section."""
    sections = [f"[{s}]" for s in SECTIONS]
    if isinstance(value, dict):
        near = suggest(name, list(SECTIONS))
        hint = f" (did you mean [{near}]?)" if near else ""
        check.report(
            (name,),
            f"unknown section{hint}; allowed: {', '.join(sections)}",
            label=f"[{name_shown(name)}]",
        )
        return
    home = [s for s, (_, fields) in SECTIONS.items() if name in {f.name for f in fields}]
    hint = f"; it belongs in [{home[0]}]: move it below the [{home[0]}] line" if home else ""
    if name.lower().replace("-", "_") in _API_KEY_NAMES:
        hint = f"; {_KEY_HINT}"
    shown = "; found a value (not shown)" if is_secret(name, value) else ""
    check.report((name,), f"key outside any section{hint}{shown}; allowed: {', '.join(sections)}")


def _indicator_pin(check: Checker, settings: Settings) -> None:
    """The camera's light takes a pin of its own: not the button's, not one of the LED's."""
    panel, vision = settings.panel, settings.vision
    pin = vision.indicator_pin
    if pin is None or not (vision.mode != "off" or settings.tools.look_enabled(vision.mode)):
        return
    taken = {panel.button_pin: "button_pin"} if panel.button else {}
    if panel.led != "none":
        taken.update(dict.fromkeys(panel.led_pins, "led_pins"))
    if pin in taken:
        others = [p for p in (22, 23, 24, 25, 5, 6, 16, 26) if p not in taken][:3]
        check.report(
            ("vision", "indicator_pin"),
            f"pin {pin} is also [panel] {taken[pin]}; found {pin}; allowed a pin used by "
            f"nothing else, e.g. {', '.join(map(str, others))}",
        )


#: The [panel] keys of the everyday controls' pins.
CONTROL_PINS = ("volume_up_pin", "volume_down_pin", "mute_pin")


def _control_pins(check: Checker, settings: Settings) -> None:
    """Each control button takes a pin of its own: not the button's, the LED's, the camera
    light's or another control's."""
    panel, vision = settings.panel, settings.vision
    taken = {panel.button_pin: "button_pin"} if panel.button else {}
    if panel.led != "none":
        taken.update(dict.fromkeys(panel.led_pins, "led_pins"))
    if vision.indicator_pin is not None:
        taken[vision.indicator_pin] = "[vision] indicator_pin"
    for key in CONTROL_PINS:
        pin = getattr(panel, key)
        if pin is None:
            continue
        if pin in taken:
            free = [p for p in (22, 23, 24, 25, 5, 6, 16, 26) if p not in taken][:3]
            check.report(
                ("panel", key),
                f"pin {pin} is also {taken[pin]}; found {pin}; allowed a pin used by "
                f"nothing else, e.g. {', '.join(map(str, free))}",
            )
        taken[pin] = key

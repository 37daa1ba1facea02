"""RAUC's custom bootloader backend on the Raspberry Pi firmware's ``autoboot.txt`` and tryboot.

system.conf has ``bootloader=custom`` and ``[handlers] bootloader-custom-backend=`` a script that
runs ``talkie update backend "$@"``; RAUC calls it as ``get-primary``, ``set-primary NAME``,
``get-state NAME``, ``set-state NAME good|bad`` and ``get-current`` (RAUC's "Custom bootloader
backend interface"). The files are on the config partition (``/boot/firmware``):

- ``autoboot.txt``: the default slot (``[all] boot_partition``) and the other one under
  ``[tryboot]``. It changes only on a commit: the trial slot becomes the default.
- ``talkie-slots.txt``: each slot good or bad, and ``trial=NAME`` while an installed update waits
  for its trial boot (``reboot '0 tryboot'``, which ``talkie update`` issues).

What each call does:

- ``set-primary X`` (RAUC, after writing slot X): X is the default already: nothing to try. Else
  ``trial=X``; autoboot.txt is left as it is, so a plain reboot stays on the running slot and
  only ``reboot '0 tryboot'`` tries X, once.
- ``set-state X good`` (``rauc status mark-good`` on the trial boot, from the health check):
  X is running but not the default: commit, X becomes the default. Else just recorded.
- ``set-state X bad`` (RAUC before writing X, ``rauc status mark-bad``): recorded, and a trial of
  X is called off. The default slot marked bad while the other is good: the other becomes the
  default.
- ``get-primary``: the pending trial, else the default. ``get-state X``: as recorded, else good
  for the default slot and bad for the other. ``get-current``: ``rauc.slot=`` of the command line.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from talkie.system import slots
from talkie.system.slots import SLOTS, Slot, SlotError, State

USAGE = "get-primary | set-primary NAME | get-state NAME | set-state NAME good|bad | get-current"


@dataclass
class Card:
    """The config partition's files, and this boot's kernel command line."""

    config: Path = Path("/boot/firmware")
    cmdline: Path = Path("/proc/cmdline")
    said: list[str] = field(default_factory=list)

    @property
    def autoboot(self) -> Path:
        return self.config / slots.AUTOBOOT

    @property
    def state_file(self) -> Path:
        return self.config / slots.STATE

    def default(self) -> Slot:
        try:
            text = self.autoboot.read_text()
        except OSError as exc:
            raise SlotError(f"{self.autoboot}: {exc.strerror}") from None
        return slots.default_slot(text)

    def state(self) -> State:
        try:
            return State.parse(self.state_file.read_text())
        except FileNotFoundError:
            return State({})
        except OSError as exc:
            raise SlotError(f"{self.state_file}: {exc.strerror}") from None

    def booted(self) -> str | None:
        return slots.booted_slot(str(self.cmdline))

    def save(self, state: State) -> None:
        slots.write_atomically(self.state_file, state.render())

    def make_default(self, slot: Slot) -> None:
        slots.write_atomically(self.autoboot, slots.render(slot))
        self.said.append(f"slot {slot.name} is now the default")


def _slot(name: str) -> Slot:
    if name not in SLOTS:
        raise SlotError(f"no slot {name!r}; slots: {', '.join(SLOTS)}")
    return SLOTS[name]


def get_state(card: Card, name: str) -> str:
    _slot(name)
    recorded = card.state().states.get(name)
    if recorded:
        return recorded
    return "good" if card.default().name == name else "bad"


def set_primary(card: Card, name: str) -> None:
    slot = _slot(name)
    state = card.state()
    state.trial = "" if card.default() == slot else slot.name
    card.save(state)


def set_state(card: Card, name: str, value: str) -> None:
    slot = _slot(name)
    if value not in ("good", "bad"):
        raise SlotError(f"set-state {name}: {value!r} is neither good nor bad")
    state = card.state()
    state.states[slot.name] = value
    default = card.default()
    if value == "good":
        if card.booted() == slot.name and default != slot:
            card.make_default(slot)  # the commit
        if state.trial == slot.name and card.booted() == slot.name:
            state.trial = ""
    else:
        if state.trial == slot.name:
            state.trial = ""
        alternative = slots.other(slot.name)
        if default == slot and state.states.get(alternative.name) == "good":
            card.make_default(alternative)
    card.save(state)


def run(card: Card, argv: list[str]) -> str:
    """One backend call: what it prints on stdout. Raises SlotError (or ValueError on usage)."""
    match argv:
        case ["get-primary"]:
            state = card.state()
            return state.trial or card.default().name
        case ["set-primary", name]:
            set_primary(card, name)
            return ""
        case ["get-state", name]:
            return get_state(card, name)
        case ["set-state", name, value]:
            set_state(card, name, value)
            return ""
        case ["get-current"]:
            current = card.booted()
            if current is None:
                raise SlotError(f"no rauc.slot=A|B on the kernel command line ({card.cmdline})")
            return current
    raise ValueError(USAGE)


def main(argv: list[str], card: Card | None = None) -> int:
    card = card or Card()
    try:
        out = run(card, argv)
    except ValueError as exc:
        print(f"talkie update backend: usage: {exc}", file=sys.stderr)
        return 64
    except SlotError as exc:
        print(f"talkie update backend: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"talkie update backend: {exc}", file=sys.stderr)
        return 1
    for line in card.said:
        print(f"talkie update backend: {line}", file=sys.stderr)
    if out:
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

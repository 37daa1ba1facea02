"""The A/B slots of the Debian image, as the Raspberry Pi firmware sees them (``autoboot.txt``).

The card (image/build, image/ab.sh; MBR): partition 1 is a small FAT "config" partition with
``autoboot.txt`` (and the first-boot files ``talkie.toml``, ``talkie-api-key``); 2 and 3 are the
boot partitions of slots A and B (FAT: firmware, kernel, initrd, ``config.txt``, ``cmdline.txt``);
5 and 6 (logical, in the extended 4) their root file systems; 7 the data partition that every
update leaves alone (``/etc/talkie``, ``/var/lib/talkie``, RAUC's status).

``autoboot.txt`` is the firmware's own A/B mechanism::

    [all]
    tryboot_a_b=1
    boot_partition=2
    [tryboot]
    boot_partition=3

The firmware boots ``[all]``'s ``boot_partition``. After ``reboot '0 tryboot'`` it applies the
``[tryboot]`` section too, once: the flag is cleared by that boot, and any later reset (a crash,
a watchdog, a plain reboot, a power cut) boots the default again. :func:`choose` is that choice,
for the QEMU harness (which has no Pi firmware) and for the tests.

Which slot is running comes from the kernel command line: each boot partition's ``cmdline.txt``
names its root and its slot (``root=PARTUUID=...-05 rauc.slot=A``), as RAUC reads it.

Standard library only: the image builder runs ``python3 -m talkie.system.slots choose`` on the
build host, without talkie's dependencies.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from talkie.storage import replace_text

AUTOBOOT = "autoboot.txt"
#: Slot states and the pending trial, next to autoboot.txt (the firmware ignores this file).
STATE = "talkie-slots.txt"
#: The model the QEMU harness pretends to be, for ``[pi4]``-style sections.
MODEL = "pi4"
_MODELS = (
    "pi0",
    "pi0w",
    "pi02",
    "pi1",
    "pi2",
    "pi3",
    "pi3+",
    "pi4",
    "pi400",
    "pi5",
    "pi500",
    "cm4",
    "cm5",
)


@dataclass(frozen=True)
class Slot:
    """One slot: its RAUC bootname and its boot and root partition numbers."""

    name: str
    boot: int
    root: int


SLOTS: dict[str, Slot] = {"A": Slot("A", boot=2, root=5), "B": Slot("B", boot=3, root=6)}


class SlotError(Exception):
    """autoboot.txt or the slot state is not what the A/B layout expects (said in words)."""


def other(name: str) -> Slot:
    """The slot that is not ``name``."""
    return next(slot for slot in SLOTS.values() if slot.name != name)


def by_boot_partition(number: int) -> Slot:
    for slot in SLOTS.values():
        if slot.boot == number:
            return slot
    raise SlotError(f"boot partition {number} is no slot's (A: 2, B: 3)")


# ---- autoboot.txt: what the firmware reads ------------------------------------------------------


def _applies(section: str, *, tryboot: bool, model: str) -> bool:
    if section == "all":
        return True
    if section == "tryboot":
        return tryboot
    if section in _MODELS:
        return section == model
    return False  # [none], [HDMI:1], [0x...]: not this board (the harness's choice)


def settings(text: str, *, tryboot: bool, model: str = MODEL) -> dict[str, str]:
    """The ``key=value`` settings the firmware applies from ``text``: sections in order, a later
    assignment winning, as in config.txt. Before any section header counts as ``[all]``."""
    applied: dict[str, str] = {}
    section = "all"
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().lower()
            continue
        key, sep, value = line.partition("=")
        if sep and _applies(section, tryboot=tryboot, model=model):
            applied[key.strip()] = value.strip()
    return applied


def choose(text: str, *, tryboot: bool, model: str = MODEL) -> tuple[int, str]:
    """The boot partition the firmware boots from this autoboot.txt, and the config file it reads
    there: ``config.txt``, or on a tryboot without ``tryboot_a_b=1``, ``tryboot.txt``."""
    applied = settings(text, tryboot=tryboot, model=model)
    value = applied.get("boot_partition", "1")  # without one: the partition autoboot.txt is on
    try:
        partition = int(value, 0)
    except ValueError:
        raise SlotError(f"{AUTOBOOT}: boot_partition={value!r} is not a number") from None
    if not 1 <= partition <= 63:
        raise SlotError(f"{AUTOBOOT}: boot_partition={partition} is out of range; allowed 1 to 63")
    config = "tryboot.txt" if tryboot and applied.get("tryboot_a_b") != "1" else "config.txt"
    return partition, config


def render(default: Slot) -> str:
    """autoboot.txt with ``default`` booted normally and the other slot on a tryboot."""
    return (
        "# The Raspberry Pi firmware's A/B choice (talkie: image/ab.sh, talkie.system.slots).\n"
        "# Normal boots: [all] boot_partition; after `reboot '0 tryboot'`, once: [tryboot].\n"
        "[all]\n"
        "tryboot_a_b=1\n"
        f"boot_partition={default.boot}\n"
        "[tryboot]\n"
        f"boot_partition={other(default.name).boot}\n"
    )


def default_slot(text: str) -> Slot:
    """The slot a normal (non-tryboot) boot starts."""
    return by_boot_partition(choose(text, tryboot=False)[0])


def booted(cmdline: str) -> str | None:
    """The running slot's name from the kernel command line (``rauc.slot=``), or None."""
    for word in cmdline.split():
        if word.startswith("rauc.slot="):
            name = word.partition("=")[2]
            return name if name in SLOTS else None
    return None


def booted_slot(path: str = "/proc/cmdline") -> str | None:
    """:func:`booted` of this machine ("" / None where the card has no slots)."""
    try:
        return booted(Path(path).read_text())
    except OSError:
        return None


#: The image's release, written by image/build (also the bundle's version).
RELEASE = "/usr/lib/talkie/image-release"


def words(cmdline: str = "/proc/cmdline", release: str = RELEASE) -> dict[str, str]:
    """For ``talkie ctl status``: the running slot and the image's release, where known."""
    found: dict[str, str] = {}
    name = booted_slot(cmdline)
    if name:
        found["slot"] = name
    try:
        text = Path(release).read_text().strip()
    except OSError:
        text = ""
    if text:
        found["image"] = text
    return found


# ---- talkie-slots.txt: good/bad per slot, and a pending trial ---------------------------------


@dataclass
class State:
    """What RAUC's ``get-state``/``set-state`` keep: each slot good or bad, and the slot a
    ``reboot '0 tryboot'`` is to try (``trial``; "" for none)."""

    states: dict[str, str]
    trial: str = ""

    @classmethod
    def parse(cls, text: str) -> State:
        states: dict[str, str] = {}
        trial = ""
        for raw in text.splitlines():
            key, sep, value = raw.split("#", 1)[0].strip().partition("=")
            if not sep:
                continue
            if key == "trial" and value in SLOTS:
                trial = value
            elif key in SLOTS and value in ("good", "bad"):
                states[key] = value
        return cls(states, trial)

    def render(self) -> str:
        lines = ["# talkie's A/B slot states (RAUC's custom backend); the firmware ignores this."]
        lines += [f"{name}={self.states[name]}" for name in sorted(self.states)]
        if self.trial:
            lines.append(f"trial={self.trial}")
        return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` by a rename (FAT renames are atomic enough), fsynced."""
    replace_text(path, text)
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# ---- the build host's view: python3 -m talkie.system.slots choose FILE [--tryboot] -----------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m talkie.system.slots",
        description="The Raspberry Pi firmware's A/B choice, for a harness without the firmware.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    pick = sub.add_parser("choose", help="print the boot partition and config file it boots")
    pick.add_argument("autoboot", help="an autoboot.txt")
    pick.add_argument("--tryboot", action="store_true", help="the one-shot tryboot flag is set")
    pick.add_argument("--model", default=MODEL, help="the board, for [piN] sections (%(default)s)")
    write = sub.add_parser("render", help="print autoboot.txt booting SLOT by default")
    write.add_argument("slot", choices=sorted(SLOTS))
    args = parser.parse_args(argv)
    if args.command == "render":
        print(render(SLOTS[args.slot]), end="")
        return 0
    try:
        text = Path(args.autoboot).read_text()
    except OSError as exc:
        print(f"slots: {args.autoboot}: {exc.strerror}", file=sys.stderr)
        return 66
    try:
        partition, config = choose(text, tryboot=args.tryboot, model=args.model)
    except SlotError as exc:
        print(f"slots: {exc}", file=sys.stderr)
        return 65
    print(partition, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())

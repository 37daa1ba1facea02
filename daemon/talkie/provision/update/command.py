"""``talkie update BUNDLE|URL``: install a signed RAUC bundle into the other slot and try it.

``rauc install`` writes the bundle's root and boot images into the slot that is not running (it
checks the signature against the keyring in the image first), RAUC's backend records that slot
for a trial, and ``systemctl reboot --reboot-argument='0 tryboot'`` has the firmware boot it
once. There ``talkie-health.service`` commits it or goes back (:mod:`.health`).
``--no-reboot`` leaves the reboot to you: ``systemctl reboot --reboot-argument='0 tryboot'``
tries the update, a plain reboot does not.

Bad input is one line on stderr and a nonzero exit: 64 for a source that is neither a readable
file nor an http(s) URL, 66 for a missing file, 69 when this system has no A/B slots or no rauc,
1 when rauc refuses the bundle.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from talkie.provision.update.backend import Card
from talkie.system import slots

EX_USAGE, EX_NOINPUT, EX_UNAVAILABLE = 64, 66, 69


class Refusal(Exception):
    """A reason not to start, and the exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def source(text: str) -> str:
    """The bundle to hand to rauc: an absolute path to a readable file, or an http(s) URL."""
    if not text.strip():
        raise Refusal("no bundle given: talkie update BUNDLE.raucb|URL", EX_USAGE)
    if "://" in text:
        url = urlsplit(text)
        if url.scheme not in ("http", "https"):
            raise Refusal(f"{text}: not an http:// or https:// URL", EX_USAGE)
        if not url.hostname:
            raise Refusal(f"{text}: no host in the URL", EX_USAGE)
        return text
    path = Path(text)
    if not path.exists():
        raise Refusal(f"{text}: no such file", EX_NOINPUT)
    if not path.is_file():
        raise Refusal(f"{text}: not a bundle file (a directory or device)", EX_USAGE)
    if not os.access(path, os.R_OK):
        raise Refusal(f"{text}: not readable (permission denied)", EX_NOINPUT)
    return str(path.resolve())


def _system(card: Card) -> str:
    name = card.booted()
    if name is None:
        raise Refusal(
            "this system has no A/B slots (no rauc.slot= on the kernel command line): "
            "updates by bundle need the Debian image's A/B layout",
            EX_UNAVAILABLE,
        )
    if shutil.which("rauc") is None:
        raise Refusal("rauc not found (apt-get install rauc rauc-service)", EX_UNAVAILABLE)
    return name


def install(text: str, *, reboot: bool = True, card: Card | None = None) -> int:
    card = card or Card()
    try:
        bundle = source(text)
        running = _system(card)
    except Refusal as exc:
        print(f"talkie update: {exc}", file=sys.stderr)
        return exc.status
    target = slots.other(running).name
    print(f"talkie update: installing {bundle} into slot {target} (running: {running})")
    status = subprocess.run(["rauc", "install", bundle], check=False).returncode
    if status != 0:
        print(
            f"talkie update: rauc install failed (exit {status}); nothing changed", file=sys.stderr
        )
        return 1
    if not reboot:
        print(
            f"talkie update: slot {target} is ready: "
            "`systemctl reboot --reboot-argument='0 tryboot'` tries it once"
        )
        return 0
    print(f"talkie update: rebooting into slot {target} for its trial ('0 tryboot')")
    sys.stdout.flush()
    # (systemd 257 takes the argument only as an option: "systemctl reboot ARG" is refused.)
    reboot_cmd = ["systemctl", "reboot", "--reboot-argument=0 tryboot"]
    return subprocess.run(reboot_cmd, check=False).returncode


def status(card: Card | None = None) -> int:
    """``talkie update --status``: the slots as the firmware and RAUC's backend see them."""
    card = card or Card()
    running = card.booted()
    if running is None:
        print("talkie update: this system has no A/B slots", file=sys.stderr)
        return EX_UNAVAILABLE
    try:
        default = card.default()
        state = card.state()
    except slots.SlotError as exc:
        print(f"talkie update: {exc}", file=sys.stderr)
        return 1
    for slot in slots.SLOTS.values():
        marks = [
            m
            for m, on in (
                ("running", slot.name == running),
                ("default", slot == default),
                ("trial pending", slot.name == state.trial),
            )
            if on
        ]
        good = state.states.get(slot.name, "good" if slot == default else "bad")
        extra = f" ({', '.join(marks)})" if marks else ""
        print(f"slot {slot.name}: boot p{slot.boot}, root p{slot.root}, {good}{extra}")
    release = slots.words().get("image")
    if release:
        print(f"image: {release}")
    return 0

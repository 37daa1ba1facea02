"""The trial boot's health check: commit the new slot, or go back (``talkie update health``).

``talkie-health.service`` runs it on every boot of the A/B image, after talkie.service:

- On a trial boot (the running slot is not autoboot.txt's default: the firmware took the
  ``[tryboot]`` section once), it waits for talkie's own health: the service READY (systemd's
  ``active``/``running``: Type=notify), the microphone stream delivering (``ctl status``
  ``microphone_stream``), and where an API key is set, a Live session opened (it presses the
  button through the control socket, waits for the link to come up, and resets). All of it
  within ``--timeout``: then ``rauc status mark-good`` (the backend makes the slot the default:
  committed). Otherwise ``rauc status mark-bad booted`` and a plain reboot, which the firmware
  answers with the default slot: the previous one. A trial boot that never gets here (a kernel
  that does not boot, a hang the watchdog resets) goes back the same way, by the firmware alone.
- On a normal boot with a trial still pending (it never reported back), the trial slot is marked
  bad and the pending trial dropped.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talkie.provision.update.backend import Card
from talkie.system.slots import SlotError

#: Seconds the trial boot has to become healthy (counted from the health check's start).
TIMEOUT_S = 300.0
#: Restarts of talkie.service that end the trial at once (it cannot start).
MAX_RESTARTS = 3


@dataclass
class Probe:
    """What one look at the device found."""

    unit: Mapping[str, str]  # systemctl show talkie: ActiveState, SubState, NRestarts, Result
    status: Mapping[str, Any] | None  # ctl status's reply, None when unreachable
    key_set: bool


@dataclass
class Verdict:
    healthy: bool
    hopeless: bool  # no point waiting longer
    words: list[str] = field(default_factory=list)


def judge(probe: Probe) -> Verdict:
    """Healthy when talkie is READY, the microphone delivers, and (with a key) a session opened."""
    unit = probe.unit
    words: list[str] = []
    ready = unit.get("ActiveState") == "active" and unit.get("SubState") == "running"
    try:
        restarts = int(unit.get("NRestarts", "0") or 0)
    except ValueError:
        restarts = 0
    hopeless = unit.get("ActiveState") == "failed" or restarts >= MAX_RESTARTS
    words.append(
        "talkie READY"
        if ready
        else f"talkie not READY ({unit.get('ActiveState', '?')}/{unit.get('SubState', '?')}, "
        f"{restarts} restarts)"
    )
    status = probe.status or {}
    mic = status.get("microphone_stream", "unknown") if probe.status is not None else "unknown"
    words.append(f"microphone {mic}")
    healthy = ready and mic == "delivering"
    if probe.key_set:
        opened = int(status.get("session", 0) or 0) >= 1
        words.append("Live session opened" if opened else "no Live session yet")
        healthy = healthy and opened
    else:
        words.append("no API key: Live session not tried")
    return Verdict(healthy, hopeless and not healthy, words)


# ---- the device's side ---------------------------------------------------------------------


def _systemctl_show() -> dict[str, str]:
    out = subprocess.run(
        ["systemctl", "show", "talkie", "-p", "ActiveState,SubState,NRestarts,Result"],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    return dict(line.partition("=")[::2] for line in out.splitlines() if "=" in line)


def _ctl(command: str) -> dict[str, Any] | None:
    from talkie.system import control_client

    try:
        reply = control_client.request(command, timeout=10)
    except control_client.Unreachable:
        return None
    return reply if reply.get("ok") else None


def _key_set(path: Path = Path("/etc/talkie/api-key")) -> bool:
    try:
        return bool(path.read_text().strip())
    except OSError:
        return False


def probe_device() -> Probe:
    return Probe(_systemctl_show(), _ctl("status"), _key_set())


def _rauc(*args: str) -> bool:
    result = subprocess.run(["rauc", *args], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        say(f"rauc {' '.join(args)} failed: {result.stderr.strip()[-300:]}")
    return result.returncode == 0


def say(line: str) -> None:
    print(f"talkie-health: {line}", flush=True)


@dataclass
class Device:
    """The device's doings, replaceable in the tests."""

    probe: Callable[[], Probe] = probe_device
    rauc: Callable[..., bool] = _rauc
    ctl: Callable[[str], dict[str, Any] | None] = _ctl
    reboot: Callable[[], object] = lambda: subprocess.run(["systemctl", "reboot"], check=False)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


def trial(card: Card, device: Device, name: str, timeout: float) -> int:
    """The running slot ``name`` is on trial: commit it, or mark it bad and reboot."""
    say(f"trial boot of slot {name}: waiting up to {timeout:g} s for talkie's health")
    deadline = device.clock() + timeout
    pressed = False
    verdict = judge(device.probe())
    while not verdict.healthy and not verdict.hopeless and device.clock() < deadline:
        status = verdict.words
        if "no Live session yet" in status and "talkie READY" in status and not pressed:
            pressed = device.ctl("press") is not None  # open a Live session, as a press does
        device.sleep(2.0)
        verdict = judge(device.probe())
    if pressed:
        device.ctl("reset")
    say(f"slot {name}: " + "; ".join(verdict.words))
    if verdict.healthy and device.rauc("status", "mark-good"):
        say(f"slot {name} committed: it is the default from now on")
        return 0
    say(f"slot {name} failed its trial: marking it bad and rebooting into the previous slot")
    device.rauc("status", "mark-bad", "booted")
    device.reboot()
    return 1


def check(card: Card, device: Device, timeout: float = TIMEOUT_S) -> int:
    name = card.booted()
    if name is None:
        say("not an A/B system (no rauc.slot= on the kernel command line): nothing to check")
        return 0
    try:
        default = card.default()
        state = card.state()
    except SlotError as exc:
        say(f"cannot read the slots: {exc}")
        return 1
    if default.name != name:
        return trial(card, device, name, timeout)
    if state.trial:
        say(
            f"slot {state.trial} was to be tried but this is slot {name}, the default: its trial "
            "boot failed or never happened; marking it bad"
        )
        device.rauc("status", "mark-bad", "other")
    else:
        say(f"slot {name} (the default) booted; nothing to commit")
    return 0


def main(timeout: float = TIMEOUT_S, card: Card | None = None, device: Device | None = None) -> int:
    try:
        return check(card or Card(), device or Device(), timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        say(f"health check failed: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())

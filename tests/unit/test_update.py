"""``talkie update``: its arguments, and the trial boot's health check (commit or go back)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from talkie import cli
from talkie.provision.update import health
from talkie.provision.update.backend import Card
from talkie.system import slots
from talkie.system.slots import SLOTS, State

READY = {"ActiveState": "active", "SubState": "running", "NRestarts": "0", "Result": "success"}
DELIVERING = {"ok": True, "state": "idle", "session": 0, "microphone_stream": "delivering"}


# ---- the verdict --------------------------------------------------------------------------


def test_ready_and_delivering_without_a_key_is_healthy():
    verdict = health.judge(health.Probe(READY, DELIVERING, key_set=False))
    assert verdict.healthy and not verdict.hopeless
    assert verdict.words == ["talkie READY", "microphone delivering",
                             "no API key: Live session not tried"]


def test_with_a_key_a_live_session_must_have_opened():
    assert not health.judge(health.Probe(READY, DELIVERING, key_set=True)).healthy
    opened = {**DELIVERING, "session": 1}
    assert health.judge(health.Probe(READY, opened, key_set=True)).healthy


@pytest.mark.parametrize("unit, status, hopeless", [
    ({**READY, "SubState": "start"}, DELIVERING, False),
    (READY, {**DELIVERING, "microphone_stream": "none"}, False),
    (READY, None, False),  # the control socket is not up yet
    ({"ActiveState": "activating", "SubState": "auto-restart", "NRestarts": "3"}, None, True),
    ({"ActiveState": "failed", "SubState": "failed", "NRestarts": "1"}, None, True),
])
def test_unhealthy(unit, status, hopeless):
    verdict = health.judge(health.Probe(unit, status, key_set=False))
    assert not verdict.healthy and verdict.hopeless == hopeless


# ---- the check on the device ----------------------------------------------------------------


class Fake:
    """The device's doings, recorded; probes from a list (the last one repeats)."""

    def __init__(self, probes):
        self.probes = list(probes)
        self.calls: list[tuple[str, ...]] = []
        self.now = 0.0

    def device(self) -> health.Device:
        def probe():
            return self.probes.pop(0) if len(self.probes) > 1 else self.probes[0]

        def rauc(*args):
            self.calls.append(("rauc", *args))
            return True

        def ctl(command):
            self.calls.append(("ctl", command))
            return {"ok": True}

        def sleep(seconds):
            self.now += seconds

        return health.Device(probe=probe, rauc=rauc, ctl=ctl,
                             reboot=lambda: self.calls.append(("reboot",)), sleep=sleep,
                             clock=lambda: self.now)


def card(tmp_path: Path, *, default: str, running: str, trial: str = "") -> Card:
    (tmp_path / "autoboot.txt").write_text(slots.render(SLOTS[default]))
    if trial:
        (tmp_path / slots.STATE).write_text(State({}, trial).render())
    (tmp_path / "cmdline").write_text(f"rauc.slot={running}\n")
    return Card(tmp_path, tmp_path / "cmdline")


def test_a_trial_boot_that_gets_healthy_is_committed(tmp_path, capsys):
    fake = Fake([health.Probe({**READY, "SubState": "start"}, None, False),
                 health.Probe(READY, DELIVERING, False)])
    assert health.check(card(tmp_path, default="A", running="B", trial="B"), fake.device()) == 0
    assert fake.calls == [("rauc", "status", "mark-good")]
    assert "slot B committed" in capsys.readouterr().out


def test_a_trial_boot_whose_talkie_cannot_start_goes_back(tmp_path, capsys):
    broken = {"ActiveState": "activating", "SubState": "auto-restart", "NRestarts": "3"}
    fake = Fake([health.Probe(broken, None, False)])
    assert health.check(card(tmp_path, default="A", running="B", trial="B"), fake.device()) == 1
    assert fake.calls == [("rauc", "status", "mark-bad", "booted"), ("reboot",)]
    out = capsys.readouterr().out
    assert "slot B failed its trial" in out and "3 restarts" in out
    assert fake.now == 0  # hopeless at once: no waiting out the timeout


def test_a_trial_boot_that_never_gets_healthy_times_out(tmp_path):
    fake = Fake([health.Probe(READY, {**DELIVERING, "microphone_stream": "none"}, False)])
    assert health.check(card(tmp_path, default="B", running="A", trial="A"), fake.device(),
                        timeout=30) == 1
    assert fake.calls[-1] == ("reboot",) and 30 <= fake.now <= 32


def test_with_a_key_the_check_presses_to_open_a_session_then_resets(tmp_path):
    fake = Fake([health.Probe(READY, DELIVERING, True),
                 health.Probe(READY, {**DELIVERING, "session": 1}, True)])
    assert health.check(card(tmp_path, default="A", running="B", trial="B"), fake.device()) == 0
    assert fake.calls == [("ctl", "press"), ("ctl", "reset"), ("rauc", "status", "mark-good")]


def test_a_normal_boot_drops_a_trial_that_never_reported_back(tmp_path, capsys):
    fake = Fake([health.Probe(READY, DELIVERING, False)])
    assert health.check(card(tmp_path, default="A", running="A", trial="B"), fake.device()) == 0
    assert fake.calls == [("rauc", "status", "mark-bad", "other")]
    assert "its trial boot failed or never happened" in capsys.readouterr().out


def test_a_normal_boot_without_a_trial_does_nothing(tmp_path):
    fake = Fake([health.Probe(READY, DELIVERING, False)])
    assert health.check(card(tmp_path, default="A", running="A"), fake.device()) == 0
    assert fake.calls == []


def test_no_slots_no_check(tmp_path, capsys):
    (tmp_path / "cmdline").write_text("root=/dev/mmcblk0p2\n")
    fake = Fake([health.Probe(READY, DELIVERING, False)])
    assert health.check(Card(tmp_path, tmp_path / "cmdline"), fake.device()) == 0
    assert "not an A/B system" in capsys.readouterr().out


# ---- talkie update BUNDLE|URL ---------------------------------------------------------------


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("argv, status, said", [
    (["update"], 64, "no bundle given"),
    (["update", "/nonexistent/x.raucb"], 66, "no such file"),
    (["update", "ftp://example.com/x.raucb"], 64, "not an http:// or https:// URL"),
    (["update", "https:///x.raucb"], 64, "no host"),
    (["update", "/"], 64, "not a bundle file"),
])
def test_bad_arguments_are_one_line_and_a_nonzero_exit(capsys, argv, status, said):
    assert cli.main(argv) == status
    assert said in one_line(capsys)


def test_a_system_without_slots_refuses(tmp_path, capsys, monkeypatch):
    bundle = tmp_path / "u.raucb"
    bundle.write_bytes(b"x")
    monkeypatch.setattr(slots, "booted_slot", lambda path="": None)
    assert cli.main(["update", str(bundle)]) == 69
    assert "no A/B slots" in one_line(capsys)


def fake_tools(bin_dir: Path, log: Path, rauc_status: int = 0) -> None:
    bin_dir.mkdir()
    for name, status in (("rauc", rauc_status), ("systemctl", 0)):
        tool = bin_dir / name
        tool.write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\nexit {status}\n')
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize("reboot", [True, False])
def test_install_hands_the_bundle_to_rauc_then_reboots_with_tryboot(tmp_path, monkeypatch, reboot):
    log = tmp_path / "calls"
    fake_tools(tmp_path / "bin", log)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(slots, "booted_slot", lambda path="": "A")
    bundle = tmp_path / "u.raucb"
    bundle.write_bytes(b"x")
    argv = ["update", str(bundle)] + ([] if reboot else ["--no-reboot"])
    assert cli.main(argv) == 0
    calls = log.read_text().splitlines()
    assert calls[0] == f"rauc install {bundle}"
    assert calls[1:] == (["systemctl reboot --reboot-argument=0 tryboot"] if reboot else [])


def test_a_refused_bundle_does_not_reboot(tmp_path, monkeypatch, capsys):
    log = tmp_path / "calls"
    fake_tools(tmp_path / "bin", log, rauc_status=1)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(slots, "booted_slot", lambda path="": "B")
    assert cli.main(["update", "https://updates.example/talkie.raucb"]) == 1
    assert log.read_text().splitlines() == ["rauc install https://updates.example/talkie.raucb"]
    assert "rauc install failed" in one_line(capsys)


def test_status_shows_the_slots(tmp_path, capsys):
    c = card(tmp_path, default="B", running="A", trial="A")
    from talkie.provision.update import command

    assert command.status(c) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "slot A: boot p2, root p5, bad (running, trial pending)"
    assert out[1] == "slot B: boot p3, root p6, good (default)"

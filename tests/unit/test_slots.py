"""The A/B slots: the firmware's autoboot.txt choice, and RAUC's custom backend on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from talkie.provision.update import backend
from talkie.system import slots
from talkie.system.slots import SLOTS, State

PI_STYLE = """\
[all]
tryboot_a_b=1
boot_partition=2
[tryboot]
boot_partition=3
"""


# ---- the firmware's choice -------------------------------------------------------------------


def test_a_normal_boot_takes_all_and_a_tryboot_takes_the_tryboot_section():
    assert slots.choose(PI_STYLE, tryboot=False) == (2, "config.txt")
    assert slots.choose(PI_STYLE, tryboot=True) == (3, "config.txt")


def test_without_tryboot_a_b_the_firmware_reads_tryboot_txt():
    text = PI_STYLE.replace("tryboot_a_b=1\n", "")
    assert slots.choose(text, tryboot=True) == (3, "tryboot.txt")
    assert slots.choose(text, tryboot=False) == (2, "config.txt")


def test_sections_filters_comments_and_the_default_partition():
    assert slots.choose("", tryboot=False) == (1, "config.txt")
    text = "# c\nboot_partition=2 # here\n[pi5]\nboot_partition=7\n[pi4]\nboot_partition=3\n[none]\nboot_partition=9\n"
    assert slots.choose(text, tryboot=False) == (3, "config.txt")
    assert slots.choose(text, tryboot=False, model="pi5") == (7, "config.txt")
    assert slots.choose("[all]\nboot_partition=0x3\n", tryboot=False)[0] == 3


@pytest.mark.parametrize("value", ["two", "0", "99"])
def test_a_bad_boot_partition_is_said(value):
    with pytest.raises(slots.SlotError, match="boot_partition"):
        slots.choose(f"boot_partition={value}\n", tryboot=False)


def test_render_is_what_the_firmware_reads_back():
    for name, slot in SLOTS.items():
        text = slots.render(slot)
        assert slots.default_slot(text) == slot
        assert slots.choose(text, tryboot=True)[0] == slots.other(name).boot
        assert "tryboot_a_b=1" in text


def test_the_running_slot_from_the_command_line():
    assert slots.booted("console=ttyAMA0 root=PARTUUID=7a1c1e01-06 rauc.slot=B rootwait") == "B"
    assert slots.booted("root=/dev/mmcblk0p2") is None
    assert slots.booted("rauc.slot=C") is None


def test_state_file_round_trip_ignores_nonsense():
    state = State.parse("# x\nA=good\nB=bad\ntrial=B\nC=good\nA=ugly\nnonsense\n")
    assert state == State({"A": "good", "B": "bad"}, "B")
    assert State.parse(state.render()) == state


def test_words_for_ctl_status(tmp_path):
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("root=PARTUUID=7a1c1e01-05 rauc.slot=A\n")
    release = tmp_path / "release"
    release.write_text("20260817-1200-trixie\n")
    assert slots.words(str(cmdline), str(release)) == {"slot": "A", "image": "20260817-1200-trixie"}
    assert slots.words(str(tmp_path / "none"), str(tmp_path / "none")) == {}


def test_the_host_chooser_command(tmp_path, capsys):
    autoboot = tmp_path / "autoboot.txt"
    autoboot.write_text(PI_STYLE)
    assert slots.main(["choose", str(autoboot), "--tryboot"]) == 0
    assert capsys.readouterr().out == "3 config.txt\n"
    assert slots.main(["choose", str(tmp_path / "missing")]) == 66
    assert "missing" in capsys.readouterr().err
    assert slots.main(["render", "B"]) == 0
    assert slots.default_slot(capsys.readouterr().out).name == "B"


# ---- RAUC's custom backend ------------------------------------------------------------------


class Device:
    """A card's config partition and a kernel command line in a folder, and the firmware."""

    def __init__(self, tmp: Path) -> None:
        self.config = tmp / "config"
        self.config.mkdir()
        (self.config / "autoboot.txt").write_text(slots.render(SLOTS["A"]))
        self.cmdline = tmp / "cmdline"
        self.tryboot = False
        self.boot()

    def call(self, *argv: str) -> tuple[int, str]:
        card = backend.Card(self.config, self.cmdline)
        try:
            out = backend.run(card, list(argv))
        except slots.SlotError as exc:
            return 1, str(exc)
        return 0, out

    def boot(self) -> str:
        """What the firmware does: one boot, the one-shot flag used up."""
        partition, _ = slots.choose((self.config / "autoboot.txt").read_text(), tryboot=self.tryboot)
        self.tryboot = False
        name = slots.by_boot_partition(partition).name
        self.cmdline.write_text(f"root=PARTUUID=7a1c1e01-0{SLOTS[name].root} rauc.slot={name}\n")
        return name

    def install(self, target: str) -> None:
        """What `rauc install` asks of the backend around writing the target slot."""
        assert self.call("set-state", target, "bad") == (0, "")
        assert self.call("set-primary", target) == (0, "")


def test_a_fresh_card_boots_a_which_is_good_and_primary(tmp_path):
    dev = Device(tmp_path)
    assert dev.boot() == "A"
    assert dev.call("get-primary") == (0, "A")
    assert dev.call("get-current") == (0, "A")
    assert dev.call("get-state", "A") == (0, "good")
    assert dev.call("get-state", "B") == (0, "bad")


def test_an_update_is_tried_once_then_committed_by_mark_good(tmp_path):
    dev = Device(tmp_path)
    before = (dev.config / "autoboot.txt").read_text()
    dev.install("B")
    assert dev.call("get-primary") == (0, "B")
    assert (dev.config / "autoboot.txt").read_text() == before  # a plain reboot stays on A
    assert dev.boot() == "A"
    dev.tryboot = True  # reboot '0 tryboot'
    assert dev.boot() == "B"
    assert dev.call("set-state", "B", "good") == (0, "")  # rauc status mark-good
    assert slots.default_slot((dev.config / "autoboot.txt").read_text()).name == "B"
    assert dev.call("get-primary") == (0, "B")
    assert State.parse((dev.config / slots.STATE).read_text()).trial == ""
    assert dev.boot() == "B"  # any later reset: B now
    assert dev.boot() == "B"


def test_a_failed_trial_falls_back_by_itself(tmp_path):
    dev = Device(tmp_path)
    dev.install("B")
    dev.tryboot = True
    assert dev.boot() == "B"
    assert dev.call("set-state", "B", "bad") == (0, "")  # rauc status mark-bad booted
    assert dev.call("get-primary") == (0, "A")
    assert dev.boot() == "A"  # the plain reboot
    assert dev.call("get-state", "B") == (0, "bad")


def test_a_trial_that_never_reports_back_leaves_the_default_alone(tmp_path):
    dev = Device(tmp_path)
    dev.install("B")
    dev.tryboot = True
    assert dev.boot() == "B"  # ... and hangs; the watchdog resets the board
    assert dev.boot() == "A"
    assert dev.call("get-primary") == (0, "B")  # pending, until the health check drops it
    assert dev.call("set-state", "B", "bad") == (0, "")  # rauc status mark-bad other
    assert dev.call("get-primary") == (0, "A")


def test_marking_the_default_bad_switches_only_to_a_good_slot(tmp_path):
    dev = Device(tmp_path)
    assert dev.call("set-state", "A", "bad") == (0, "")
    assert dev.boot() == "A"  # B was never good: A stays the default
    dev.install("B")
    dev.tryboot = True
    dev.boot()
    dev.call("set-state", "B", "good")
    assert dev.boot() == "B"
    dev.call("set-state", "A", "good")
    assert dev.call("set-state", "B", "bad") == (0, "")
    assert dev.boot() == "A"


def test_set_primary_of_the_default_calls_a_trial_off(tmp_path):
    dev = Device(tmp_path)
    dev.install("B")
    assert dev.call("set-primary", "A") == (0, "")
    assert dev.call("get-primary") == (0, "A")


@pytest.mark.parametrize("argv, status, said", [
    ([], 64, "usage"),
    (["get-state"], 64, "usage"),
    (["get-state", "C"], 1, "no slot 'C'"),
    (["set-state", "A", "ugly"], 1, "neither good nor bad"),
    (["reboot"], 64, "usage"),
])
def test_bad_calls_say_so(tmp_path, capsys, argv, status, said):
    dev = Device(tmp_path)
    assert backend.main(argv, backend.Card(dev.config, dev.cmdline)) == status
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_no_autoboot_txt_is_said(tmp_path, capsys):
    dev = Device(tmp_path)
    (dev.config / "autoboot.txt").unlink()
    assert backend.main(["get-primary"], backend.Card(dev.config, dev.cmdline)) == 1
    assert "autoboot.txt" in capsys.readouterr().err

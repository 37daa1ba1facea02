"""The systemd packaging (systemd/talkie.service, .sysusers, .tmpfiles), checked with systemd's tools.

* ``systemd-analyze verify`` accepts the unit with no complaint about it. verify insists that
  ExecStart= exists, so it checks a copy whose ExecStart= points at a stub script in a temp dir
  (everything else byte for byte). It needs neither systemd as PID 1 nor the talkie user.
  (``--root=`` does not help: verify then wants a whole OS tree: sysinit.target, /bin/kill.)
* ``systemd-analyze security --offline=true`` rates the sandbox at <= 1.5, and flags nothing but
  the items the unit's header comment explains. systemd 252's ``--threshold`` is an integer on the
  0-100 scale (ten times the printed exposure): 1.5 is ``--threshold=15``.
* The settings the daemon relies on are there (parsed from the unit file).
* ``systemd-sysusers --root`` and ``systemd-tmpfiles --create --root`` applied to a temp root create
  the user, the groups, /etc/talkie and the key file with the intended owners and modes.

The tools come with the Debian package ``systemd`` (installed by tests/run); they work without
systemd running, so a missing tool is a failure, not a skip.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from talkie import config

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "talkie.service"
SYSUSERS = ROOT / "systemd" / "talkie.sysusers"
TMPFILES = ROOT / "systemd" / "talkie.tmpfiles"

EXEC_START = "/opt/talkie/bin/talkie run --config /etc/talkie/talkie.toml"
MAX_EXPOSURE = 1.5
#: What `systemd-analyze security` may still flag; the unit's header comment says why for each.
ACCEPTED_EXPOSURES = {
    "RootDirectory=/RootImage=",                 # runs from the host's /opt/talkie venv
    "SupplementaryGroups=",                      # audio, gpio, video own the device nodes
    "PrivateDevices=",                           # would hide /dev/snd, gpiochip, video, media
    "DeviceAllow=",                              # the device classes below (a closed policy)
    "MemoryDenyWriteExecute=",                   # cffi callbacks (sounddevice) need W+X pages
    "ProcSubset=",                               # gpiozero reads /proc/device-tree, /proc/cpuinfo
    "PrivateNetwork=",                           # the Live API is on the internet
    "IPAddressDeny=",                            # ... at no fixed addresses
    "RestrictAddressFamilies=~AF_(INET|INET6)",  # ... over TCP/IP
    "RestrictAddressFamilies=~AF_UNIX",          # journal, sd_notify, control socket
}
#: DeviceAllow= classes (from /proc/devices) and why; only rw, never mknod.
DEVICE_CLASSES = {
    "char-alsa": "microphone and speaker (/dev/snd/*)",
    "char-gpiochip": "button and LED (/dev/gpiochip*)",
    "char-video4linux": "camera (/dev/video*, /dev/v4l-subdev*)",
    "char-media": "camera media controller (/dev/media*)",
    "char-dma_heap": "camera frame buffers (/dev/dma_heap/*)",
}
log = logging.getLogger(__name__)
ENV = {**os.environ, "LC_ALL": "C", "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "SYSTEMD_LOG_COLOR": "0"}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install the Debian package 'systemd' (tests/run does)")
    return path


def run(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([os.fspath(a) for a in args], capture_output=True, text=True, timeout=60,
                          env=ENV, stdin=subprocess.DEVNULL)


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Section -> [(key, value), ...] in file order (keys repeat: DeviceAllow=, Environment=, ...)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not logical and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):  # continuation line
            logical += line[:-1] + " "
            continue
        line, logical = logical + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections.setdefault(current, [])
            continue
        assert current is not None and "=" in line, f"not a unit file line: {raw!r}"
        key, value = line.split("=", 1)
        sections[current].append((key.strip(), value.strip()))
    return sections


@pytest.fixture(scope="module")
def unit() -> dict[str, list[tuple[str, str]]]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


def values(unit, section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def value(unit, section: str, key: str) -> str | None:
    """The effective value of a single-valued setting (the last assignment wins, as in systemd)."""
    found = values(unit, section, key)
    return found[-1] if found else None


def seconds(text: str | None) -> float:
    assert text is not None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|min|ms)?", text)
    assert match, f"not a simple time span: {text!r}"
    number, unit_ = float(match[1]), match[2] or "s"
    return number * {"s": 1, "sec": 1, "min": 60, "ms": 0.001}[unit_]


# ---- systemd-analyze -------------------------------------------------------------------------------


def verifiable_copy(tmp_path: Path, text: str | None = None) -> Path:
    """The unit under its own name in ``tmp_path``, ExecStart= pointing at an existing stub."""
    stub = tmp_path / "talkie-stub"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = UNIT.read_text(encoding="utf-8") if text is None else text
    assert text.count("/opt/talkie/bin/talkie") == 1, "expected exactly one reference to the venv"
    copy = tmp_path / "talkie.service"
    copy.write_text(text.replace("/opt/talkie/bin/talkie", str(stub)))
    return copy


def verify(unit_path: Path) -> tuple[int, list[str]]:
    """(exit status, the lines of verify's output that are about our unit)."""
    result = run(tool("systemd-analyze"), "verify", "--man=no", "--generators=no", unit_path)
    lines = (result.stderr + result.stdout).splitlines()
    return result.returncode, [line for line in lines if "talkie.service" in line]


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    status, complaints = verify(verifiable_copy(tmp_path))
    assert complaints == [] and status == 0, "\n".join(complaints)


@pytest.mark.parametrize("broken, complaint", [
    ("Type=notify\n", "Type=notify-reload\n"),           # systemd 252 has no notify-reload
    ("UMask=0077\n", "UMask=0077\nProtectSytem=strict\n"),  # a typo'd key
])
def test_systemd_analyze_verify_would_catch_a_mistake(tmp_path, broken, complaint):
    # The check above is not vacuous: a mistake in the unit shows up as a line naming it.
    text = UNIT.read_text(encoding="utf-8")
    assert broken in text
    _, complaints = verify(verifiable_copy(tmp_path, text.replace(broken, complaint, 1)))
    assert complaints, "verify said nothing about a broken unit"


def test_sandbox_exposure_is_at_most_1_5(record_property):
    analyze = tool("systemd-analyze")
    threshold = int(MAX_EXPOSURE * 10)
    result = run(analyze, "security", "--offline=true", f"--threshold={threshold}", "--no-pager", UNIT)
    match = re.search(r"Overall exposure level for talkie\.service: (\d+(?:\.\d+)?)", result.stdout)
    assert match, result.stdout + result.stderr
    exposure = float(match[1])
    record_property("exposure", exposure)
    print(f"systemd-analyze security: overall exposure level for talkie.service: {exposure}")
    log.info("systemd-analyze security: talkie.service exposure %s (at most %s)", exposure, MAX_EXPOSURE)
    assert exposure <= MAX_EXPOSURE, result.stdout
    assert result.returncode == 0, result.stdout + result.stderr
    # Every flagged item is one the unit explains (a new one means a setting was lost).
    flagged = {line[2:].split()[0] for line in result.stdout.splitlines() if line.startswith("- ")}
    assert flagged, "no flagged items parsed: did the output format change?\n" + result.stdout
    assert flagged <= ACCEPTED_EXPOSURES, f"newly exposed: {sorted(flagged - ACCEPTED_EXPOSURES)}"
    # And the threshold really is enforced through the exit status.
    strict = run(analyze, "security", "--offline=true", f"--threshold={round(exposure * 10) - 1}",
                 "--no-pager", UNIT)
    assert strict.returncode != 0


# ---- what the daemon relies on ------------------------------------------------------------------


def test_life_cycle_settings(unit):
    assert value(unit, "Service", "Type") == "notify"
    assert value(unit, "Service", "NotifyAccess") == "main"
    assert value(unit, "Service", "ExecStart") == EXEC_START
    assert value(unit, "Service", "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert seconds(value(unit, "Service", "WatchdogSec")) == 30
    assert value(unit, "Service", "Restart") == "on-failure"
    assert 1 <= seconds(value(unit, "Service", "RestartSec")) <= 10
    # A bad config exits with EX_CONFIG; restarting would only loop.
    prevented = " ".join(values(unit, "Service", "RestartPreventExitStatus")).split()
    assert str(config.EX_CONFIG) in prevented and config.EX_CONFIG == 78
    # The daemon is down within 2 s: a short stop timeout, SIGTERM to the daemon first.
    assert 2 < seconds(value(unit, "Service", "TimeoutStopSec")) <= 10
    assert value(unit, "Service", "KillMode") in ("mixed", "control-group")
    assert int(value(unit, "Unit", "StartLimitBurst") or 0) > 0
    assert seconds(value(unit, "Unit", "StartLimitIntervalSec")) > 0
    assert value(unit, "Install", "WantedBy") == "multi-user.target"


def test_identity_directories_and_credential(unit):
    assert value(unit, "Service", "User") == "talkie"
    assert value(unit, "Service", "Group") == "talkie"
    groups = " ".join(values(unit, "Service", "SupplementaryGroups")).split()
    # the device groups, and the control socket's own group (not the group that reads the config)
    assert sorted(groups) == ["audio", "gpio", "talkie-ctl", "video"]
    assert value(unit, "Service", "ConfigurationDirectory") == "talkie"
    assert value(unit, "Service", "StateDirectory") == "talkie"
    assert value(unit, "Service", "RuntimeDirectory") == "talkie"
    # others may pass through to the socket (whose own mode and group decide), not list the folder
    assert value(unit, "Service", "RuntimeDirectoryMode") == "0711"
    assert value(unit, "Service", "WorkingDirectory") in ("/run/talkie", "/var/lib/talkie")
    # the API key, the MCP servers' bearer tokens (a folder: one credential per file) and the
    # MQTT broker's password
    assert values(unit, "Service", "LoadCredential") == [
        "gemini-api-key:/etc/talkie/api-key", "mcp-token:/etc/talkie/tokens",
        "mqtt-password:/etc/talkie/mqtt-password"]
    environment = " ".join(values(unit, "Service", "Environment")).split()
    assert "PYTHONUNBUFFERED=1" in environment
    assert "LG_WD=/run/talkie" in environment  # lgpio's notification FIFOs, in a writable place
    assert value(unit, "Service", "UMask") == "0077"


def test_devices_are_closed_but_for_audio_gpio_and_camera(unit):
    assert value(unit, "Service", "DevicePolicy") == "closed"
    assert value(unit, "Service", "PrivateDevices") in (None, "no")  # it would hide /dev/snd
    allowed = {}
    for entry in values(unit, "Service", "DeviceAllow"):
        device, _, access = entry.partition(" ")
        allowed[device] = access.strip()
    assert set(allowed) == set(DEVICE_CLASSES), allowed
    assert all(access == "rw" for access in allowed.values()), allowed


def test_no_privileges_and_only_internet_and_local_sockets(unit):
    assert values(unit, "Service", "CapabilityBoundingSet") == [""]
    assert values(unit, "Service", "AmbientCapabilities") == [""]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateUsers", "ProtectKernelTunables",
                "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock",
                "ProtectHostname", "LockPersonality", "RestrictRealtime", "RestrictSUIDSGID",
                "RestrictNamespaces", "RemoveIPC"):
        assert value(unit, "Service", key) == "yes", key
    assert value(unit, "Service", "ProtectSystem") == "strict"
    assert value(unit, "Service", "ProtectProc") == "invisible"
    assert value(unit, "Service", "ProcSubset") in (None, "all")  # gpiozero reads /proc/cpuinfo
    assert value(unit, "Service", "SystemCallArchitectures") == "native"
    assert values(unit, "Service", "SystemCallFilter")[0] == "@system-service"
    assert value(unit, "Service", "SystemCallErrorNumber") == "EPERM"
    families = " ".join(values(unit, "Service", "RestrictAddressFamilies")).split()
    assert sorted(families) == ["AF_INET", "AF_INET6", "AF_UNIX"]
    assert value(unit, "Service", "PrivateNetwork") in (None, "no")  # the Live API is online
    # Off on purpose (see the unit's header): cffi callbacks need W+X memory for audio.
    assert value(unit, "Service", "MemoryDenyWriteExecute") in (None, "no")


# ---- sysusers and tmpfiles ----------------------------------------------------------------------


def read_db(path: Path) -> dict[str, list[str]]:
    return {line.split(":")[0]: line.split(":") for line in path.read_text().splitlines() if line}


def apply_sysusers(root: Path) -> subprocess.CompletedProcess[str]:
    result = run(tool("systemd-sysusers"), f"--root={root}", SYSUSERS)
    assert result.returncode == 0, result.stderr
    return result


def test_sysusers_dry_run_accepts_the_file(tmp_path):
    (tmp_path / "etc").mkdir()
    result = run(tool("systemd-sysusers"), "--dry-run", f"--root={tmp_path}", SYSUSERS)
    assert result.returncode == 0, result.stderr
    assert "Creating user 'talkie'" in result.stderr + result.stdout
    assert not (tmp_path / "etc" / "passwd").exists()  # a dry run writes nothing


def test_sysusers_creates_the_service_user_and_the_device_groups(tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    # A Debian base system: audio and video exist (base-passwd), gpio does not.
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\naudio:x:29:\nvideo:x:44:\n")
    apply_sysusers(tmp_path)
    users, groups = read_db(etc / "passwd"), read_db(etc / "group")
    name, _, uid, gid, gecos, home, shell = users["talkie"]
    assert 0 < int(uid) < 1000 and groups["talkie"][2] == gid  # a system user, own group
    assert (gecos, home) == ("talkie voice assistant", "/var/lib/talkie")
    assert shell.endswith("nologin")
    assert groups["audio"][2] == "29" and groups["video"][2] == "44"  # existing groups untouched
    assert 0 < int(groups["gpio"][2]) < 1000  # created where missing: SupplementaryGroups= needs it
    # `talkie ctl`'s group: its own, so that using the control socket reads neither config nor key
    assert 0 < int(groups["talkie-ctl"][2]) < 1000 and groups["talkie-ctl"][2] != gid
    # Applying it again changes nothing.
    before = (etc / "passwd").read_text(), (etc / "group").read_text()
    apply_sysusers(tmp_path)
    assert ((etc / "passwd").read_text(), (etc / "group").read_text()) == before


def test_tmpfiles_create_the_config_dir_and_a_key_file_for_root_and_talkie(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("systemd-tmpfiles must run as root to chown in the temp root (CI runs as root)")
    (tmp_path / "etc").mkdir()
    apply_sysusers(tmp_path)
    talkie_gid = int(read_db(tmp_path / "etc" / "group")["talkie"][2])

    def apply():
        result = run(tool("systemd-tmpfiles"), "--create", f"--root={tmp_path}", TMPFILES)
        assert result.returncode == 0, result.stderr
        assert "talkie.tmpfiles" not in result.stderr, result.stderr  # no warnings about our lines

    def owner_mode(path: Path) -> tuple[int, int, int]:
        info = path.lstat()
        return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)

    apply()
    etc_talkie = tmp_path / "etc" / "talkie"
    key = etc_talkie / "api-key"
    toml = etc_talkie / "talkie.toml"
    assert etc_talkie.is_dir() and owner_mode(etc_talkie) == (0, talkie_gid, 0o750)
    # The key file exists (LoadCredential= needs it), empty, root's alone (no group reads it).
    assert key.is_file() and key.read_text() == "" and owner_mode(key) == (0, 0, 0o600)
    assert not toml.exists()  # z: only fixes an existing file
    # The MCP servers' tokens: a folder LoadCredential= needs, root's alone like the key.
    tokens = etc_talkie / "tokens"
    assert tokens.is_dir() and owner_mode(tokens) == (0, 0, 0o700)
    # The MQTT password: a file LoadCredential= needs, empty until one is set, root's alone.
    password = etc_talkie / "mqtt-password"
    assert password.read_text() == "" and owner_mode(password) == (0, 0, 0o600)

    # A key and config copied in carelessly: contents kept, owner and mode put right.
    key.write_text("AIzaSy-not-a-real-key\n")
    key.chmod(0o644)
    toml.write_text("[log]\nlevel = \"info\"\n")
    toml.chmod(0o600)
    apply()
    assert key.read_text() == "AIzaSy-not-a-real-key\n" and owner_mode(key) == (0, 0, 0o600)
    assert owner_mode(toml) == (0, talkie_gid, 0o640)

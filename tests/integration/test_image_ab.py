"""The fast pieces of the A/B updates in the Debian image (image/ab/): RAUC's system.conf and a
bundle's manifest against the card's layout, a real (tiny) signed bundle checked by rauc, the
firmware emulation of the QEMU harness on a small card file, and the update test's verdict. The
full update test boots the image four times under QEMU (image/build --update-test, opt-in)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from talkie import config
from talkie.provision import network
from talkie.system import slots
from tests.integration.test_systemd_units import ENV, tool

ROOT = Path(__file__).resolve().parents[2]
AB = ROOT / "image" / "ab"


def ab(script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``script`` with image/ab/lib.sh, update-test.sh and smoke.sh sourced."""
    prelude = (f'set -euo pipefail; SRC="{ROOT}"; MIRROR=x; say() {{ echo "$*"; }}; '
               f'die() {{ echo "$*" >&2; exit 1; }}; . "{ROOT / "image" / "smoke.sh"}"; '
               f'. "{AB / "lib.sh"}"; . "{AB / "update-test.sh"}"; ')
    return subprocess.run(["bash", "-c", prelude + script, "ab", *args], capture_output=True,
                          text=True, timeout=timeout, env=ENV, stdin=subprocess.DEVNULL)


def ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parser


def test_system_conf_has_two_slot_groups_on_the_cards_partitions():
    result = ab("ab_system_conf")
    assert result.returncode == 0, result.stderr
    conf = ini(result.stdout)
    assert conf["system"]["bootloader"] == "custom"
    assert conf["system"]["compatible"] == "talkie-debian-arm64"
    assert conf["keyring"]["path"] == "/etc/rauc/keyring.pem"
    assert conf["handlers"]["bootloader-custom-backend"] == "/usr/lib/talkie/rauc-backend"
    assert conf["system"]["data-directory"].startswith("/data/")
    for index, slot in enumerate(slots.SLOTS.values()):
        rootfs, boot = conf[f"slot.rootfs.{index}"], conf[f"slot.boot.{index}"]
        assert rootfs["bootname"] == slot.name
        assert rootfs["type"] == "ext4" and rootfs["resize"] == "true"
        assert rootfs["device"] == f"/dev/disk/by-partuuid/7a1c1e01-{slot.root:02d}"
        assert boot["type"] == "vfat" and boot["parent"] == f"rootfs.{index}"
        assert boot["device"] == f"/dev/disk/by-partuuid/7a1c1e01-{slot.boot:02d}"


def test_the_manifest_names_both_images_of_a_slot_group():
    manifest = ini(ab('ab_manifest 1.2.3 "a test"').stdout)
    assert manifest["update"]["compatible"] == ini(ab("ab_system_conf").stdout)["system"]["compatible"]
    assert manifest["update"]["version"] == "1.2.3"
    assert manifest["bundle"]["format"] == "verity"
    assert manifest["image.rootfs"]["filename"] == "root.ext4"
    assert manifest["image.boot"]["filename"] == "boot.vfat"


def test_fstab_keeps_settings_key_and_state_on_the_data_partition():
    fstab = ab("ab_fstab").stdout
    assert "LABEL=TALKIEDATA  /data" in fstab and "LABEL=TALKIECONF  /boot/firmware" in fstab
    for folder in ("/etc/talkie", "/var/lib/talkie"):
        assert f"/data{folder}  {folder}  none  bind" in fstab
    assert " / " not in fstab.replace("/data", "")  # the root is the kernel's (root=PARTUUID=)


def test_the_units_pass_systemd_analyze_verify(tmp_path):
    shutil.copy(AB / "talkie-health.service", tmp_path)
    (tmp_path / "talkie-abtest.service").write_text(ab("abtest_unit").stdout)
    for unit in ("talkie-health.service", "talkie-abtest.service"):
        result = subprocess.run([tool("systemd-analyze"), "verify", "--man=no", "--generators=no",
                                 str(tmp_path / unit)], capture_output=True, text=True,
                                timeout=60, env=ENV, stdin=subprocess.DEVNULL)
        complaints = [line for line in (result.stderr + result.stdout).splitlines()
                      if unit in line and "/opt/talkie" not in line
                      and "/usr/local/sbin" not in line]
        assert complaints == [], "\n".join(complaints)


needs_rauc = pytest.mark.skipif(
    not (shutil.which("rauc") and shutil.which("mksquashfs") and shutil.which("mkfs.vfat")
         and shutil.which("openssl")),
    reason="rauc, squashfs-tools, dosfstools, openssl (daemon/dev-env installs them)")


@needs_rauc
def test_a_signed_bundle_is_verified_against_the_images_keyring(tmp_path):
    result = ab(f'''
        ab_keys "{tmp_path}/keys" >/dev/null
        mkfs.vfat -C "{tmp_path}/boot.vfat" 1024 >/dev/null
        head -c 256K /dev/urandom > "{tmp_path}/root.ext4"  # (rauc wants some bytes to pack)
        ab_bundle "{tmp_path}/boot.vfat" "{tmp_path}/root.ext4" 9.9 "tiny" "{tmp_path}/t.raucb" "{tmp_path}/keys"
        rauc info --keyring="{tmp_path}/keys/cert.pem" --output-format=shell "{tmp_path}/t.raucb"
    ''', timeout=120)
    assert result.returncode == 0, result.stderr
    info = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert info["RAUC_MF_COMPATIBLE"].strip("'") == "talkie-debian-arm64"
    assert info["RAUC_MF_VERSION"].strip("'") == "9.9"
    assert "'verity'" in info.get("RAUC_MF_BUNDLE_FORMAT", "'verity'")
    # Another key's certificate does not verify it.
    other = ab(f'''
        ab_keys "{tmp_path}/other" >/dev/null
        rauc info --keyring="{tmp_path}/other/cert.pem" "{tmp_path}/t.raucb"
    ''', timeout=120)
    assert other.returncode != 0


def tiny_card(tmp_path: Path, autoboot: str) -> Path:
    """A card file with the image's partition numbers: p1 autoboot.txt, p2/p3 boot files."""
    card = tmp_path / "card.img"
    script = f'''
        card="{card}"; truncate -s 40M "$card"
        sfdisk --quiet "$card" <<EOF
label: dos
start=1MiB, size=8MiB, type=c
start=9MiB, size=8MiB, type=c
start=17MiB, size=8MiB, type=c
start=25MiB, type=5
start=26MiB, size=4MiB, type=83
start=31MiB, size=4MiB, type=83
EOF
        for n in 1 2 3; do
            mkfs.vfat -C "{tmp_path}/p$n.vfat" 8192 >/dev/null
        done
        printf '%s' "$1" > "{tmp_path}/autoboot.txt"
        mcopy -i "{tmp_path}/p1.vfat" "{tmp_path}/autoboot.txt" ::autoboot.txt
        for n in 2 3; do
            slot=$([ $n = 2 ] && echo A || echo B)
            printf 'kernel=vmlinuz-%s\\ninitramfs initrd.img-%s followkernel\\n' $slot $slot > "{tmp_path}/config.txt"
            echo "kernel $slot" > "{tmp_path}/vmlinuz-$slot"; echo "initrd $slot" > "{tmp_path}/initrd.img-$slot"
            echo "console=tty0 console=ttyS1,115200 root=PARTUUID=7a1c1e01-0$((n + 3)) rw rauc.slot=$slot" > "{tmp_path}/cmdline.txt"
            mcopy -i "{tmp_path}/p$n.vfat" "{tmp_path}/config.txt" "{tmp_path}/vmlinuz-$slot" \\
                "{tmp_path}/initrd.img-$slot" "{tmp_path}/cmdline.txt" ::
        done
        for n in 1 2 3; do
            dd if="{tmp_path}/p$n.vfat" of="$card" bs=1M seek=$((1 + (n - 1) * 8)) conv=notrunc status=none
        done
    '''
    result = ab(script, autoboot)
    assert result.returncode == 0, result.stderr
    return card


@pytest.mark.skipif(not (shutil.which("mcopy") and shutil.which("mkfs.vfat")),
                    reason="mtools, dosfstools")
def test_the_emulated_firmware_reads_the_cards_autoboot_txt(tmp_path):
    card = tiny_card(tmp_path, slots.render(slots.SLOTS["A"]))
    out = tmp_path / "out"
    out.mkdir()
    assert ab(f'part_field "{card}" 5 start').stdout.strip() == str(26 * 2048)
    for tryboot, slot, partition in (("0", "A", "2"), ("1", "B", "3")):
        result = ab(f'fw_files "{card}" "{out}" {tryboot}')
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == partition
        assert (out / "vmlinuz").read_text() == f"kernel {slot}\n"
        assert (out / "initrd.img").read_text() == f"initrd {slot}\n"
        assert f"rauc.slot={slot}" in (out / "cmdline.txt").read_text()


@pytest.mark.parametrize("tail, ending", [
    ("[  99.1] reboot: Restarting system with command '0 tryboot'\r\n", "tryboot"),
    ("[  99.1] reboot: Restarting system\n", "reboot"),
    ("[  99.1] reboot: Power down\n", "poweroff"),
    ("[  99.1] systemd[1]: Started talkie.service\n", "reset"),
])
def test_how_a_boot_ended_sets_the_one_shot_tryboot_flag(tmp_path, tail, ending):
    log = tmp_path / "serial.log"
    log.write_text("[   0.0] Booting Linux\n" + tail)
    assert ab(f'fw_ending "{log}"').stdout.strip() == ending


# What the test unit prints on a boot where the user's settings are there (update-test.sh).
KEPT = ("TALKIE-AB kept hostname=abtest-kitchen /etc/hostname=abtest-kitchen\n"
        "TALKIE-AB kept config 1 model line(s) gemini-3.1-flash-live-preview\n"
        "TALKIE-AB kept daemon starting (config /etc/talkie/talkie.toml, "
        "model gemini-3.1-flash-live-preview)\n")
STATE = 'TALKIE-AB kept state {"level":0.37,"muted":false,"configured":1.0}\nTALKIE-AB ctl volume: 37\n'
BOOTS = {
    1: "TALKIE-AB boot rauc.slot=A image=r1 uptime=90\nTALKIE-AB ctl volume: 100\n" + KEPT
       + 'TALKIE-AB marker state {"level":0.37,"muted":false,"configured":1.0}\n'
       "TALKIE-AB step 0: talkie update good.raucb\n",
    2: "talkie-health: trial boot of slot B: waiting\ntalkie-health: slot B committed: it is the "
       "default from now on\nTALKIE-AB boot rauc.slot=B image=r1+update-test uptime=120\n"
       + KEPT + STATE,
    3: "talkie-health: trial boot of slot A: waiting\ntalkie-health: slot A failed its trial: "
       "marking it bad\nTALKIE-AB boot rauc.slot=A image=r1+broken-for-test uptime=80\n",
    4: "TALKIE-AB boot rauc.slot=B image=r1+update-test uptime=95\nTALKIE-AB talkie "
       "active/running NRestarts=0\n" + KEPT + STATE + "TALKIE-AB step 2: done\n",
}


@pytest.mark.parametrize("change, verdict", [
    ({}, "PASS"),
    ({2: ("committed", "failed its trial")}, "not committed on its trial boot"),
    ({3: ("failed its trial", "committed")}, "did not fail its health check"),
    ({4: ("rauc.slot=B", "rauc.slot=A")}, "the slots booted were ABAA"),
    ({4: ("active/running", "failed/failed")}, "talkie is not READY"),
    ({2: ("hostname=abtest-kitchen /etc/hostname=abtest-kitchen",
          "hostname=talkie /etc/hostname=talkie")}, "boot 2: the host name is not abtest-kitchen"),
    ({4: ("config 1 model", "config 0 model")}, "boot 4: /etc/talkie/talkie.toml lost model"),
    ({2: ("model gemini-3.1-flash-live-preview)", "model gemini-3.8-live)")},
     "boot 2: talkie did not start with model"),
    ({4: ('state {"level":0.37', "state cat: /var/lib/talkie/volume.json: No such file")},
     "boot 4: /var/lib/talkie/volume.json lost the volume"),
    ({2: ("ctl volume: 37", "ctl volume: 100")}, "boot 2: talkie's volume is not 37"),
    ({1: ("marker state", "marker none")}, "boot 1 did not set the volume"),
])
def test_the_update_test_verdict(tmp_path, change, verdict):
    for n, text in BOOTS.items():
        if n in change:
            text = text.replace(*change[n])
        (tmp_path / f"boot-{n}.log").write_text(text)
    result = ab(f'update_verdict "{tmp_path}"')
    assert verdict in result.stdout + result.stderr
    assert (result.returncode == 0) == (verdict == "PASS")


def test_the_update_tests_settings_are_valid_and_checked_by_its_unit(tmp_path):
    script = ab("abtest_script").stdout
    assert "AB_" not in script
    assert """grep -qF '"level":0.37,' /var/lib/talkie/volume.json""" in script
    assert "grep -c '^model = \"gemini-3.1-flash-live-preview\"' /etc/talkie/talkie.toml" in script
    assert "talkie ctl volume 37" in script
    assert subprocess.run(["sh", "-n"], input=script, text=True, timeout=10).returncode == 0
    # The talkie.toml the card's config partition gets, as talkie firstboot takes it.
    text = ab("update_boot_toml").stdout
    net = network.check("talkie.toml", text)
    assert net is not None and net.hostname == "abtest-kitchen"
    staged = tmp_path / "talkie.toml"
    staged.write_text(network.strip(text))
    assert config.load(staged).live.model == "gemini-3.1-flash-live-preview"


STUBS = {  # mount TYPE DEVICE DIR: DIR becomes the "device" (a folder); umount DIR: undone
    "mount": '#!/bin/sh\nshift 2; rmdir "$2" && ln -s "$1" "$2"\n',
    "umount": '#!/bin/sh\nrm "$1" && mkdir "$1"\n',
}


def post_install(tmp_path: Path, hostname: str | None) -> subprocess.CompletedProcess:
    """rauc-post-install as RAUC runs it after writing slot group B (rootfs.1 + boot.1), the
    slots' devices folders, the running system's root at ``tmp_path / "running"``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in STUBS.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    running, root, boot = tmp_path / "running", tmp_path / "p6", tmp_path / "p3"
    for folder in (running / "etc", root / "etc", boot, tmp_path / "tmp"):
        folder.mkdir(parents=True)
    if hostname is not None:
        (running / "etc" / "hostname").write_text(hostname + "\n")
    (root / "etc" / "hostname").write_text("talkie\n")
    (root / "etc" / "hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\ttalkie\n::1\t\tlocalhost\n")
    (boot / "cmdline.txt").write_text("console=tty0 root=PARTUUID=7a1c1e01-05 rw rauc.slot=A\n")
    env = {**ENV, "PATH": f"{bin_dir}:{ENV.get('PATH', '/usr/bin:/bin')}",
           "TMPDIR": str(tmp_path / "tmp"),
           "TALKIE_CARRY_FROM": str(running), "RAUC_TARGET_SLOTS": "1 2",
           "RAUC_SLOT_CLASS_1": "rootfs", "RAUC_SLOT_DEVICE_1": str(root),
           "RAUC_SLOT_NAME_1": "rootfs.1", "RAUC_SLOT_BOOTNAME_1": "B",
           "RAUC_SLOT_CLASS_2": "boot", "RAUC_SLOT_DEVICE_2": str(boot),
           "RAUC_SLOT_NAME_2": "boot.1", "RAUC_SLOT_PARENT_2": "rootfs.1"}
    # The device's basename is its PARTUUID (/dev/disk/by-partuuid/7a1c1e01-06).
    root.rename(tmp_path / "7a1c1e01-06")
    env["RAUC_SLOT_DEVICE_1"] = str(tmp_path / "7a1c1e01-06")
    return subprocess.run([str(AB / "rauc-post-install")], capture_output=True, text=True,
                          timeout=30, env=env, stdin=subprocess.DEVNULL)


def test_post_install_points_the_boot_slot_at_its_root_and_carries_the_host_name(tmp_path):
    result = post_install(tmp_path, "kitchen-talkie")
    assert result.returncode == 0, result.stderr
    root = tmp_path / "7a1c1e01-06"
    assert (tmp_path / "p3" / "cmdline.txt").read_text() == (
        "console=tty0 root=PARTUUID=7a1c1e01-06 rw rauc.slot=B\n")
    assert (root / "etc" / "hostname").read_text() == "kitchen-talkie\n"
    hosts = (root / "etc" / "hosts").read_text().splitlines()
    assert hosts == ["127.0.0.1\tlocalhost", "::1\t\tlocalhost", "127.0.1.1\tkitchen-talkie"]
    assert "host name kitchen-talkie" in result.stdout
    assert list((tmp_path / "tmp").iterdir()) == []  # the mount points, removed


def test_post_install_leaves_the_new_roots_host_name_without_one_here(tmp_path):
    result = post_install(tmp_path, None)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "7a1c1e01-06" / "etc" / "hostname").read_text() == "talkie\n"
    assert "rauc.slot=B" in (tmp_path / "p3" / "cmdline.txt").read_text()

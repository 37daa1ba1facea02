"""[network] in the boot partition's talkie.toml (the Debian image): checked like the rest of the
file, applied to a fake system root (the parent of the fake /etc), and stripped from both the
installed config and the boot copy, the Wi-Fi password never shown."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import pytest

from talkie import config
from tests.integration.test_image import firstboot

PASSWORD = "correct horse battery staple"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFakeFake me@laptop"
NETWORK = f"""[audio]
chunk_ms = 20

[network]
hostname = "kitchen-talkie"
wifi_country = "GB"
wifi_ssid = "Home \\"5G\\""
wifi_password = "{PASSWORD}"
ssh_authorized_key = "{KEY}"

[log]
level = "debug"
"""


@pytest.fixture
def system(tmp_path):
    """A fake root: /boot/firmware, /etc/talkie, /etc/hosts, /root and a /run for the error note."""
    boot, etc = tmp_path / "boot" / "firmware", tmp_path / "etc" / "talkie"
    boot.mkdir(parents=True)
    etc.mkdir(parents=True)
    (tmp_path / "etc" / "hostname").write_text("talkie\n")
    (tmp_path / "etc" / "hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\ttalkie\n")
    (tmp_path / "root").mkdir()
    return tmp_path, boot, etc, tmp_path / "run" / "firstboot-error"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_network_is_applied_and_stripped_and_the_password_never_shown(system):
    root, boot, etc, err = system
    (boot / "talkie.toml").write_text(NETWORK)
    result = firstboot(boot, etc, err, "--verbose")
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    assert "[network]: host name kitchen-talkie" in result.stderr

    assert (root / "etc/hostname").read_text() == "kitchen-talkie\n"
    assert (root / "etc/hosts").read_text() == "127.0.0.1\tlocalhost\n127.0.1.1\tkitchen-talkie\n"
    wpa = root / "etc/wpa_supplicant/wpa_supplicant-wlan0.conf"
    assert mode(wpa) == 0o600
    text = wpa.read_text()
    assert "country=GB\n" in text
    ssid_hex = 'Home "5G"'.encode().hex()
    assert f"\tssid={ssid_hex}\n" in text  # hex: any SSID, no quoting issues
    assert f'\tpsk="{PASSWORD}"\n' in text
    keys = root / "root/.ssh/authorized_keys"
    assert keys.read_text() == KEY + "\n" and mode(keys) == 0o600
    assert mode(root / "root/.ssh") == 0o700

    # Neither the installed config nor the copy left on FAT keeps [network] (or the password).
    installed = (etc / "talkie.toml").read_text()
    left = (boot / "talkie.toml.installed").read_text()
    assert sorted(p.name for p in boot.iterdir()) == ["talkie.toml.installed"]
    for text in (installed, left):
        assert PASSWORD not in text and "wifi" not in text
        doc = tomllib.loads(text)
        assert doc == {"audio": {"chunk_ms": 20}, "log": {"level": "debug"}}
    assert config.load(etc / "talkie.toml").log.level == "debug"
    assert not err.exists()

    # Again (the key already there): not added twice.
    (boot / "talkie.toml").write_text(NETWORK)
    assert firstboot(boot, etc, err).returncode == 0
    assert keys.read_text() == KEY + "\n"


@pytest.mark.parametrize("lines, expected", [
    ('hostname = "kitchen_talkie"',
     ':5: [network] hostname: not valid; found "kitchen_talkie"; allowed a host name: letters, '
     'digits and "-", at most 63'),
    ('wifi_ssid = "Home"\nwifi_country = "GB"\nwifi_password = "short"',
     ":7: [network] wifi_password: not valid; found a value (not shown); allowed 8 to 63 "
     'printable ASCII characters, 64 hex digits, or "" for an open network'),
    ('wifi_ssid = "Home"',
     ":5: [network] wifi_ssid: needs wifi_country (the Wi-Fi radio stays off without it); "
     'allowed with wifi_country = "GB"'),
    ('wifi_country = "gb"\nwifi_ssid = "Home"',
     ':5: [network] wifi_country: not valid; found "gb"; allowed a two-letter country code in '
     "capitals"),
    ('wifi_password = "long enough password"',
     ":5: [network] wifi_password: needs wifi_ssid; allowed only together with wifi_ssid"),
    ('ssh_authorized_key = "AAAA me@laptop"',
     ':5: [network] ssh_authorized_key: not valid; found "AAAA me@laptop"; allowed one public '
     "key line"),
    ('wifi_psk = "long enough password"',
     ":5: [network] wifi_psk: unknown key (not shown); allowed: hostname, wifi_country, "
     "wifi_ssid, wifi_password, ssh_authorized_key"),
])
def test_a_bad_network_section_is_rejected_file_line_key_exit_78(system, lines, expected):
    root, boot, etc, err = system
    (etc / "talkie.toml").write_text("# the old config\n")
    (boot / "talkie.toml").write_text(f"[audio]\nchunk_ms = 20\n\n[network]\n{lines}\n")
    result = firstboot(boot, etc, err)
    assert result.returncode == 78
    assert f"{boot / 'talkie.toml'}{expected}" in result.stderr
    assert "long enough password" not in result.stderr and "short" not in result.stderr
    assert f"{boot / 'talkie.toml'}{expected}" in (boot / "talkie.toml.error.txt").read_text()
    assert expected in err.read_text()
    assert (etc / "talkie.toml").read_text() == "# the old config\n"
    assert (root / "etc/hostname").read_text() == "talkie\n"
    assert not (root / "etc/wpa_supplicant").exists() and not (root / "root/.ssh").exists()


def test_network_and_other_problems_are_listed_together_in_line_order(system):
    _, boot, etc, err = system
    (boot / "talkie.toml").write_text('[network]\nhostname = "-bad"\n\n[audio]\nchunk_ms = 500\n')
    result = firstboot(boot, etc, err)
    assert result.returncode == 78
    note = (boot / "talkie.toml.error.txt").read_text().splitlines()
    assert [line.split(": ")[0].rsplit(":", 1)[1] for line in note[1:3]] == ["2", "5"]
    assert "[network] hostname: not valid" in note[1] and "[audio] chunk_ms: out of range" in note[2]


def test_the_daemon_accepts_and_ignores_a_network_section(tmp_path):
    path = tmp_path / "talkie.toml"
    path.write_text(NETWORK)
    settings = config.load(path)
    assert settings.audio.chunk_ms == 20 and not hasattr(settings, "network")
    assert PASSWORD not in config.describe(settings)


def test_on_a_networkmanager_system_wifi_is_pointed_to_imager(system):
    root, boot, etc, err = system
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/sbin/NetworkManager").write_text("")
    (boot / "talkie.toml").write_text(NETWORK)
    result = firstboot(boot, etc, err)
    assert result.returncode == 0, result.stderr
    assert "managed by NetworkManager" in result.stderr and "Raspberry Pi Imager" in result.stderr


def test_a_step_that_cannot_be_written_is_reported_after_the_ones_done(system):
    root, boot, etc, err = system
    (root / "root/.ssh").write_text("not a folder")
    (boot / "talkie.toml").write_text(NETWORK)
    result = firstboot(boot, etc, err)
    assert result.returncode == 1
    assert "[network]: host name kitchen-talkie" in result.stderr  # done before the failure
    assert f"[network]: installed talkie.toml, but cannot write {root / 'root/.ssh'}" in err.read_text()
    assert (root / "etc/hostname").read_text() == "kitchen-talkie\n"
    assert "wifi" not in (etc / "talkie.toml").read_text()
    assert PASSWORD not in result.stderr + err.read_text()

"""``[network]`` in the boot partition's talkie.toml: hostname, Wi-Fi and an SSH key (Debian image).

Raspberry Pi OS gets these from Raspberry Pi Imager's customisation; the Debian image has no such
thing, so ``talkie firstboot`` applies an optional ``[network]`` section once::

    [network]
    hostname = "kitchen-talkie"
    wifi_country = "GB"
    wifi_ssid = "My network"
    wifi_password = "correct horse battery staple"   # a secret: never logged or shown
    ssh_authorized_key = "ssh-ed25519 AAAA... me@laptop"

It is checked like the rest of the file (``file:line: [network] key: ...``, exit 78), applied to the
system whose ``/etc`` holds the config folder, and removed from both the installed
``/etc/talkie/talkie.toml`` and the ``talkie.toml.installed`` left on the boot partition (the Wi-Fi
password must not stay readable there). The daemon ignores ``[network]``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Callable
from typing import Any

from talkie import config
from talkie.config.kinds import Invalid, Text
from talkie.config.lines import KeyLines
from talkie.config.text import found, name_shown

SECTION = "network"
_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_COUNTRY = re.compile(r"[A-Z]{2}")
_SSH_KEY = re.compile(
    r"(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|"
    r"sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/]+=*( .*)?"
)


def _psk(value: str) -> bool:
    """WPA2/WPA3-Personal: 8 to 63 printable ASCII characters, or 64 hex digits."""
    if len(value) == 64 and all(c in "0123456789abcdefABCDEF" for c in value):
        return True
    return 8 <= len(value) <= 63 and all(" " <= c <= "~" for c in value)


def _ssid(value: str) -> bool:
    return 1 <= len(value.encode()) <= 32


FIELDS = {
    "hostname": Text(
        'a host name: letters, digits and "-", at most 63, e.g. "kitchen-talkie"',
        valid=_HOSTNAME.fullmatch,
    ),
    "wifi_country": Text(
        'a two-letter country code in capitals, e.g. "GB", "US", "DE"', valid=_COUNTRY.fullmatch
    ),
    "wifi_ssid": Text("a network name of 1 to 32 bytes", valid=_ssid),
    "wifi_password": Text(
        '8 to 63 printable ASCII characters, 64 hex digits, or "" for an open network', valid=_psk
    ),
    "ssh_authorized_key": Text(
        'one public key line, e.g. "ssh-ed25519 AAAA... me@laptop"',
        valid=lambda v: bool(_SSH_KEY.fullmatch(v.strip())),
        max_len=16384,
    ),
}


@dataclasses.dataclass(frozen=True)
class Network:
    hostname: str = ""
    wifi_country: str = ""
    wifi_ssid: str = ""
    wifi_password: str = ""
    ssh_authorized_key: str = ""


def check(source: str, text: str) -> Network | None:
    """The ``[network]`` section of ``text`` (a valid TOML document), or None when absent.

    Raises :class:`config.ConfigError` with one ``source:line: [network] key: ...`` per problem.
    """
    doc = tomllib.loads(text)
    if SECTION not in doc:
        return None
    lines = KeyLines(text)
    problems: list[tuple[int, str]] = []

    def report(key: str | None, message: str) -> None:
        path = (SECTION, key) if key else (SECTION,)
        line = lines.find(path)
        label = f"[{SECTION}] {name_shown(key)}" if key else f"[{SECTION}]"
        problems.append((line, f"{source}:{line}: {label}: {message}"))

    table = doc[SECTION]
    if not isinstance(table, dict):
        report(None, "wrong type; allowed a [network] section")
        table = {}
    values: dict[str, Any] = {}
    for key, value in table.items():
        kind = FIELDS.get(key)
        if kind is None:
            shown = " (not shown)" if "pass" in key or "psk" in key else ""
            report(key, f"unknown key{shown}; allowed: {', '.join(FIELDS)}")
            continue
        try:
            values[key] = kind.check(value)
        except Invalid as bad:
            if key == "wifi_password":
                shown = "a value (not shown)"
            elif isinstance(bad.value, str):
                shown = '"' + bad.value[:60] + ('..."' if len(bad.value) > 60 else '"')
            else:
                shown = found(key, bad.value)
            report(key, f"{bad.what}; found {shown}; allowed {bad.allowed}")
    net = Network(**values)
    if not problems:
        if net.wifi_ssid and not net.wifi_country:
            report(
                "wifi_ssid",
                "needs wifi_country (the Wi-Fi radio stays off without it); "
                'allowed with wifi_country = "GB" or your country\'s code',
            )
        for key in ("wifi_password", "wifi_country"):
            if getattr(net, key) and not net.wifi_ssid:
                report(key, "needs wifi_ssid; allowed only together with wifi_ssid")
    if problems:
        shown_problems = [p for _, p in sorted(problems)]
        raise config.ConfigError("\n".join(shown_problems), shown_problems)
    return net


def strip(text: str) -> str:
    """``text`` without its ``[network]`` section (the lines from ``[network]`` to the next table
    header), a comment in its place. Raises ValueError if some of it is written another way."""
    out, inside = [], False
    for line in text.splitlines(keepends=True):
        bare = line.strip()
        if re.fullmatch(r"\[\s*network\s*\](\s*#.*)?", bare):
            inside = True
            out.append("# [network] was applied by talkie firstboot and removed from this copy\n")
            continue
        if inside and bare.startswith("["):
            inside = False
        if not inside:
            out.append(line)
    result = "".join(out)
    if SECTION in tomllib.loads(result):
        raise ValueError("write the network settings as a [network] section (one key per line)")
    return result


def _write(path: str, data: str, mode: int) -> None:
    """Write in place (the unit may write these files, not their folders), then set the mode."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        os.fchmod(fh.fileno(), mode)
        fh.write(data)


def apply(net: Network, root: str, done: Callable[[str], None]) -> None:
    """Apply ``net`` to the system at ``root``, calling ``done`` with each step taken (no secret).

    Raises OSError when a file cannot be written (the steps before it stay applied)."""
    if net.hostname:
        _write(os.path.join(root, "etc/hostname"), net.hostname + "\n", 0o644)
        hosts = os.path.join(root, "etc/hosts")
        try:
            with open(hosts, encoding="utf-8") as fh:
                lines = [ln for ln in fh if not ln.startswith("127.0.1.1")]
        except FileNotFoundError:
            lines = ["127.0.0.1\tlocalhost\n"]
        _write(hosts, "".join(lines) + f"127.0.1.1\t{net.hostname}\n", 0o644)
        done(f"host name {net.hostname} (/etc/hostname)")
    if net.wifi_ssid:
        # wpa_supplicant@wlan0.service (enabled in the Debian image) and systemd-networkd's DHCP.
        if len(net.wifi_password) == 64:
            security = f"\tpsk={net.wifi_password}\n"
        elif net.wifi_password:
            security = f'\tpsk="{net.wifi_password}"\n'  # wpa_supplicant reads up to the last '"'
        else:
            security = "\tkey_mgmt=NONE\n"
        conf = (
            "# Written by talkie firstboot from [network] in talkie.toml on the boot partition.\n"
            "ctrl_interface=DIR=/run/wpa_supplicant GROUP=netdev\n"
            f"country={net.wifi_country}\n\nnetwork={{\n\tssid={net.wifi_ssid.encode().hex()}\n"
            f"{security}\tscan_ssid=1\n}}\n"
        )
        _write(os.path.join(root, "etc/wpa_supplicant/wpa_supplicant-wlan0.conf"), conf, 0o600)
        done(
            f"Wi-Fi network {net.wifi_ssid!r}, country {net.wifi_country} "
            "(/etc/wpa_supplicant/wpa_supplicant-wlan0.conf, 0600)"
        )
        if os.path.exists(os.path.join(root, "usr/sbin/NetworkManager")):
            done(
                "warning: this system's Wi-Fi is managed by NetworkManager, which does not "
                "read that file: on Raspberry Pi OS set Wi-Fi in Raspberry Pi Imager"
            )
    if net.ssh_authorized_key:
        ssh = os.path.join(root, "root/.ssh")
        os.makedirs(ssh, mode=0o700, exist_ok=True)
        keys = os.path.join(ssh, "authorized_keys")
        key = net.ssh_authorized_key.strip()
        try:
            with open(keys, encoding="utf-8") as fh:
                present = [ln.strip() for ln in fh]
        except FileNotFoundError:
            present = []
        if key not in present:
            _write(keys, "".join(ln + "\n" for ln in present if ln) + key + "\n", 0o600)
        done("SSH key for root (/root/.ssh/authorized_keys)")

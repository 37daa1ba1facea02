"""The fast pieces of the SD image: `talkie firstboot` against a fake boot partition, the
first-boot unit verified by systemd-analyze, and image/install-talkie into a plain directory tree."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.integration.test_systemd_units import ENV, parse_unit, read_db, tool, value, values

ROOT = Path(__file__).resolve().parents[2]
FIRSTBOOT_UNIT = ROOT / "systemd" / "talkie-firstboot.service"
INSTALL = ROOT / "image" / "install-talkie"
KEY = "AIzaSyFAKE-firstboot-key-0123456789abc"


# ---- talkie firstboot ---------------------------------------------------------------------------


@pytest.fixture
def fake(tmp_path):
    boot, etc = tmp_path / "boot", tmp_path / "etc" / "talkie"
    boot.mkdir()
    etc.mkdir(parents=True)
    return boot, etc, tmp_path / "run" / "firstboot-error"


def firstboot(boot: Path, etc: Path, error_file: Path, *extra: str) -> subprocess.CompletedProcess:
    error_file.parent.mkdir(exist_ok=True)
    # --owner-group root: the test host has no talkie group (the chown is exercised as root).
    return subprocess.run([sys.executable, "-m", "talkie.cli", "firstboot", "--boot", str(boot),
                           "--etc", str(etc), "--owner-group", "root", "--error-file",
                           str(error_file), *extra],
                          capture_output=True, text=True, timeout=30, cwd=ROOT,
                          env={**ENV, "PYTHONPATH": str(ROOT / "daemon")})


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def tree(path: Path) -> dict[str, tuple]:
    """Every entry under ``path``: (kind, mode, uid, gid, content hash or link target)."""
    out = {}
    for p in sorted(path.rglob("*")):
        info = p.lstat()
        if p.is_symlink():
            what = os.readlink(p)
        elif p.is_file():
            what = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            what = None
        out[str(p.relative_to(path))] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode),
                                         info.st_uid, info.st_gid, what)
    return out


def test_a_valid_config_is_installed_0640_and_the_boot_copy_renamed(fake):
    boot, etc, err = fake
    text = (ROOT / "config" / "talkie.toml").read_text()
    (boot / "talkie.toml").write_text(text)
    result = firstboot(boot, etc, err)
    assert result.returncode == 0, result.stderr
    assert "installed talkie.toml from the boot partition" in result.stderr
    installed = etc / "talkie.toml"
    assert installed.read_text() == text and mode(installed) == 0o640
    assert os.geteuid() != 0 or installed.stat().st_uid == 0
    assert sorted(p.name for p in boot.iterdir()) == ["talkie.toml.installed"]
    assert sorted(p.name for p in etc.iterdir()) == ["talkie.toml"]  # no staged copy left
    assert not err.exists()


def test_a_bad_config_is_rejected_with_file_line_key_and_etc_untouched(fake):
    boot, etc, err = fake
    (etc / "talkie.toml").write_text("# the old config\n")
    before = tree(etc)
    (boot / "talkie.toml").write_text('[live]\nmodel = "x"\n\n[audio]\nchunk_ms = 500\n')
    result = firstboot(boot, etc, err)
    assert result.returncode == 78
    where = f"{boot / 'talkie.toml'}:5: [audio] chunk_ms: out of range"
    assert where in result.stderr
    assert tree(etc) == before
    assert sorted(p.name for p in boot.iterdir()) == ["talkie.toml.error.txt", "talkie.toml.rejected"]
    assert where in (boot / "talkie.toml.error.txt").read_text()
    assert where in err.read_text()  # for the LED / status
    # Fixed and put back: installed, and the stale error note goes.
    (boot / "talkie.toml").write_text('[audio]\nchunk_ms = 20\n')
    result = firstboot(boot, etc, err)
    assert result.returncode == 0, result.stderr
    assert (etc / "talkie.toml").read_text() == '[audio]\nchunk_ms = 20\n'
    assert sorted(p.name for p in boot.iterdir()) == ["talkie.toml.installed", "talkie.toml.rejected"]
    assert not err.exists()


def test_relative_file_references_resolve_against_the_config_folder(fake):
    boot, etc, err = fake
    (boot / "prompt.txt").write_text("be brief")  # next to the boot copy: not where it will live
    (boot / "talkie.toml").write_text('[live]\nsystem_instruction_file = "prompt.txt"\n')
    result = firstboot(boot, etc, err)
    assert result.returncode == 78
    assert f"{boot / 'talkie.toml'}:2: [live] system_instruction_file: cannot read " \
           f"{etc / 'prompt.txt'}" in result.stderr
    assert not (etc / "talkie.toml").exists()


def test_the_api_key_is_installed_for_root_alone_removed_from_boot_and_never_shown(fake):
    boot, etc, err = fake
    (boot / "talkie-api-key").write_text(f"\n  {KEY}  \r\n")
    result = firstboot(boot, etc, err, "--verbose")
    assert result.returncode == 0, result.stderr
    assert "installed the API key from the boot partition" in result.stderr
    assert KEY not in result.stdout + result.stderr
    key = etc / "api-key"
    assert key.read_text() == KEY + "\n" and mode(key) == 0o600
    if os.geteuid() == 0:  # root's alone: not the talkie group's, whoever owns the config
        assert (key.stat().st_uid, key.stat().st_gid) == (0, 0)
    assert list(boot.iterdir()) == []
    assert sorted(p.name for p in etc.iterdir()) == ["api-key"]


def test_an_empty_key_file_is_an_error_and_kept_aside(fake):
    boot, etc, err = fake
    (boot / "talkie-api-key").write_text(" \n")
    result = firstboot(boot, etc, err)
    assert result.returncode == 65
    assert "talkie-api-key: is empty" in result.stderr and "is empty" in err.read_text()
    assert [p.name for p in boot.iterdir()] == ["talkie-api-key.rejected"]
    assert list(etc.iterdir()) == []


def test_nothing_on_the_boot_partition_is_a_quiet_success(fake):
    boot, etc, err = fake
    result = firstboot(boot, etc, err)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""
    assert list(etc.iterdir()) == [] and list(boot.iterdir()) == []


def test_running_twice_is_idempotent(fake):
    boot, etc, err = fake
    (boot / "talkie.toml").write_text('[audio]\nchunk_ms = 20\n')
    (boot / "talkie-api-key").write_text(KEY)
    assert firstboot(boot, etc, err).returncode == 0
    after = tree(boot.parent)
    again = firstboot(boot, etc, err)
    assert again.returncode == 0 and again.stderr == ""
    assert tree(boot.parent) == after


# ---- the first-boot unit ------------------------------------------------------------------------


def test_systemd_analyze_verify_accepts_the_firstboot_unit(tmp_path):
    stub = tmp_path / "talkie-stub"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = FIRSTBOOT_UNIT.read_text(encoding="utf-8")
    assert text.count("/opt/talkie/bin/talkie") == 1
    copy = tmp_path / "talkie-firstboot.service"
    copy.write_text(text.replace("/opt/talkie/bin/talkie", str(stub)))
    result = subprocess.run([tool("systemd-analyze"), "verify", "--man=no", "--generators=no",
                             str(copy)], capture_output=True, text=True, timeout=60, env=ENV,
                            stdin=subprocess.DEVNULL)
    complaints = [line for line in (result.stderr + result.stdout).splitlines()
                  if "talkie-firstboot.service" in line]
    assert complaints == [] and result.returncode == 0, "\n".join(complaints)


def test_the_firstboot_unit_runs_once_before_talkie_and_only_when_needed():
    unit = parse_unit(FIRSTBOOT_UNIT.read_text(encoding="utf-8"))
    assert value(unit, "Service", "Type") == "oneshot"
    assert value(unit, "Service", "RemainAfterExit") == "no"
    assert value(unit, "Service", "ExecStart") == "/opt/talkie/bin/talkie firstboot"
    assert "talkie.service" in " ".join(values(unit, "Unit", "Before")).split()
    assert not values(unit, "Unit", "RequiredBy") and not values(unit, "Install", "RequiredBy")
    assert sorted(values(unit, "Unit", "ConditionPathExistsGlob")) == [
        "|/boot/firmware/talkie-api-key", "|/boot/firmware/talkie.toml"]
    assert value(unit, "Install", "WantedBy") == "multi-user.target"
    writable = " ".join(values(unit, "Service", "ReadWritePaths")).split()
    assert value(unit, "Service", "ProtectSystem") == "strict"
    assert sorted(writable) == ["-/etc/hostname", "-/etc/hosts", "-/etc/wpa_supplicant", "-/root",
                                "/boot/firmware", "/etc/talkie", "/run"]
    assert value(unit, "Service", "ProtectHome") == "no"  # strict covers /root
    assert "network-pre.target" in " ".join(values(unit, "Unit", "Before")).split()


# ---- image/install-talkie -----------------------------------------------------------------------


def build_wheel(wh: Path) -> Path:
    """talkie's wheel, built here without a build backend (offline and deterministic: the
    project's setuptools>=77 may not be installed). The same files `pip wheel .` would pack."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    name, version = meta["name"], meta["version"]
    dist_info = f"{name}-{version}.dist-info"
    files: dict[str, bytes] = {}
    package = ROOT / "daemon" / "talkie"
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files[str(path.relative_to(package.parent))] = path.read_bytes()
    files[f"{dist_info}/METADATA"] = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                      f"Requires-Python: {meta['requires-python']}\n").encode()
    files[f"{dist_info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: test_image\n"
                                   b"Root-Is-Purelib: true\nTag: py3-none-any\n")
    scripts = "".join(f"{k} = {v}\n" for k, v in meta["scripts"].items())
    files[f"{dist_info}/entry_points.txt"] = f"[console_scripts]\n{scripts}".encode()
    record = []
    for arcname, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{arcname},sha256={digest},{len(data)}")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + f"\n{dist_info}/RECORD,,\n").encode()
    wheel = wh / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, data in files.items():
            zf.writestr(zipfile.ZipInfo(arcname, (2020, 1, 1, 0, 0, 0)), data)
    return wheel


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory):
    wh = tmp_path_factory.mktemp("wheelhouse")
    build_wheel(wh)
    return wh


def install(root: Path, wheelhouse: Path) -> subprocess.CompletedProcess:
    # --no-deps: the test wheelhouse holds talkie alone; the real image's holds all its wheels.
    return subprocess.run([str(INSTALL), "--root", str(root), "--wheelhouse", str(wheelhouse),
                           "--no-deps"], capture_output=True, text=True, timeout=180, env=ENV,
                          stdin=subprocess.DEVNULL)


def test_install_talkie_into_a_directory_tree(tmp_path, wheelhouse):
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no /usr/bin/python3 to make the venv with")
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc" / "group").write_text("root:x:0:\naudio:x:29:\nvideo:x:44:\n")
    result = install(root, wheelhouse)
    assert result.returncode == 0, result.stdout + result.stderr

    units = root / "etc" / "systemd" / "system"
    for name in ("talkie.service", "talkie-firstboot.service"):
        assert (units / name).read_bytes() == (ROOT / "systemd" / name).read_bytes()
        assert mode(units / name) == 0o644
        link = units / "multi-user.target.wants" / name
        assert os.readlink(link) == f"/etc/systemd/system/{name}"
    rule = root / "etc/udev/rules.d/60-talkie-gpio.rules"
    assert rule.read_bytes() == (ROOT / "systemd" / "60-talkie-gpio.rules").read_bytes()
    assert mode(rule) == 0o644
    completion = root / "usr/share/bash-completion/completions/talkie"
    assert completion.read_bytes() == (ROOT / "systemd" / "talkie.bash-completion").read_bytes()
    assert mode(completion) == 0o644
    assert (root / "usr/lib/sysusers.d/talkie.conf").read_bytes() == \
        (ROOT / "systemd" / "talkie.sysusers").read_bytes()
    assert (root / "usr/lib/tmpfiles.d/talkie.conf").read_bytes() == \
        (ROOT / "systemd" / "talkie.tmpfiles").read_bytes()
    users, groups = read_db(root / "etc" / "passwd"), read_db(root / "etc" / "group")
    assert users["talkie"][5] == "/var/lib/talkie" and {"gpio", "talkie"} <= set(groups)
    toml = root / "etc" / "talkie" / "talkie.toml"
    assert toml.read_bytes() == (ROOT / "config" / "talkie.toml").read_bytes()
    assert mode(toml) == 0o640
    if os.geteuid() == 0:  # systemd-tmpfiles applied, with the target's talkie group
        gid = int(groups["talkie"][2])
        assert (toml.stat().st_uid, toml.stat().st_gid) == (0, gid)
        assert mode(root / "etc" / "talkie") == 0o750
        key = root / "etc" / "talkie" / "api-key"
        assert key.read_text() == "" and mode(key) == 0o600  # root's alone
        assert (key.stat().st_uid, key.stat().st_gid) == (0, 0)
        tokens = root / "etc" / "talkie" / "tokens"  # the MCP servers' bearer tokens
        assert tokens.is_dir() and mode(tokens) == 0o700
        assert (tokens.stat().st_uid, tokens.stat().st_gid) == (0, 0)

    venv = root / "opt" / "talkie"
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()
    check = subprocess.run([str(venv / "bin" / "python"), "-c", "import talkie.cli, talkie.provision.firstboot"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    # The entry point names the venv as the image will see it, not as the build host does.
    assert (venv / "bin" / "talkie").read_text().splitlines()[0] == "#!/opt/talkie/bin/python"

    # A second run changes nothing; an edited config is kept.
    toml.write_text("# the user's own\n")
    before = tree(root)
    again = install(root, wheelhouse)
    assert again.returncode == 0, again.stdout + again.stderr
    assert tree(root) == before


def test_install_talkie_also_installs_named_wheels(tmp_path, wheelhouse):
    """--also NAME: more distributions from the wheelhouse (the Debian image's lgpio)."""
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no /usr/bin/python3 to make the venv with")
    wh = tmp_path / "wheelhouse"
    wh.mkdir()
    for wheel in wheelhouse.iterdir():
        (wh / wheel.name).write_bytes(wheel.read_bytes())
    dist_info = "extra_gpio-1.0.dist-info"
    files = {"extra_gpio.py": b"BACKEND = 'test'\n",
             f"{dist_info}/METADATA": b"Metadata-Version: 2.1\nName: extra-gpio\nVersion: 1.0\n",
             f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                   b"Tag: py3-none-any\n"}
    files[f"{dist_info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{dist_info}/RECORD"]).encode()
    with zipfile.ZipFile(wh / "extra_gpio-1.0-py3-none-any.whl", "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    result = subprocess.run([str(INSTALL), "--root", str(root), "--wheelhouse", str(wh), "--no-deps",
                             "--also", "extra-gpio"], capture_output=True, text=True, timeout=180,
                            env=ENV, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    check = subprocess.run([str(root / "opt/talkie/bin/python"), "-c",
                            "import extra_gpio, talkie.cli; print(extra_gpio.BACKEND)"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert check.stdout == "test\n", check.stderr

"""The fast pieces of the image builders: the pi-gen stage's structure and scripts, the Debian
builder's arguments, and the smoke check's unit and serial-log verdict (the builds themselves
take half an hour or more and are not part of the suite: image/build --smoke runs them)."""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.integration.test_systemd_units import ENV, tool

ROOT = Path(__file__).resolve().parents[2]
STAGE = ROOT / "image" / "pi-gen" / "stage-talkie"
SCRIPTS = [ROOT / "image" / "build", ROOT / "image" / "pi-gen" / "build", ROOT / "image" / "install-talkie",
           ROOT / "image" / "wheelhouse",
           STAGE / "prerun.sh", STAGE / "00-talkie" / "01-run.sh", STAGE / "00-talkie" / "02-run-chroot.sh"]
# In the Raspberry Pi archive only (Raspberry Pi OS = Debian + that archive).
RASPBERRY_PI_ONLY = {"python3-picamera2", "python3-lgpio"}
SUITES = ROOT / "image" / "suites"


def bash(script: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                          cwd=cwd, env={**ENV, **env}, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_scripts_are_executable_and_parse(script):
    assert os.access(script, os.X_OK), f"{script} is not executable (pi-gen skips it)"
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_stage_has_what_pi_gen_looks_for():
    names = sorted(str(p.relative_to(STAGE)) for p in STAGE.rglob("*") if p.is_file())
    assert names == ["00-talkie/00-packages", "00-talkie/00-packages-nr", "00-talkie/01-run.sh",
                     "00-talkie/02-run-chroot.sh", "EXPORT_IMAGE", "prerun.sh"]
    result = bash(f'source "{STAGE / "EXPORT_IMAGE"}"; echo "$IMG_SUFFIX"', USE_QEMU="0")
    assert result.stdout == "-talkie\n"


def test_prerun_copies_the_previous_stage_only_once(tmp_path):
    stub = 'copy_previous() { echo copied; }; export -f copy_previous; '
    fresh = bash(stub + f'"{STAGE / "prerun.sh"}"', ROOTFS_DIR=str(tmp_path / "none"))
    assert fresh.returncode == 0 and fresh.stdout == "copied\n", fresh.stderr
    again = bash(stub + f'"{STAGE / "prerun.sh"}"', ROOTFS_DIR=str(tmp_path))
    assert again.returncode == 0 and again.stdout == ""


def packages(name: str) -> list[str]:
    text = (STAGE / "00-talkie" / name).read_text()
    return [word for line in text.splitlines() if not line.startswith("#") for word in line.split()]


def test_the_packages_are_in_raspberry_pi_os():
    listed = packages("00-packages") + packages("00-packages-nr")
    assert {"python3-venv", "python3-systemd", "libportaudio2", "libspeexdsp1", "python3-lgpio",
            "python3-picamera2"} <= set(listed)
    if shutil.which("apt-cache") is None:
        pytest.skip("no apt-cache to look the Debian packages up")
    debian = [p for p in listed if p not in RASPBERRY_PI_ONLY]
    result = subprocess.run(["apt-cache", "show", "--no-all-versions", *debian],
                            capture_output=True, text=True)
    found = {line.split(": ", 1)[1] for line in result.stdout.splitlines()
             if line.startswith("Package: ")}
    assert set(debian) <= found, f"not in Debian (or this host's apt lists): {set(debian) - found}"


def builder_packages() -> list[str]:
    """The Debian builder's package list (PACKAGES=( ... ) in image/build)."""
    block = re.search(r"^PACKAGES=\((.*?)^\)", (ROOT / "image" / "build").read_text(), re.M | re.S)
    assert block, "no PACKAGES=( ... ) in image/build"
    ab = re.search(r"^AB_PACKAGES=\((.*?)\)", (ROOT / "image" / "ab" / "lib.sh").read_text(), re.M)
    assert ab, "no AB_PACKAGES=( ... ) in image/ab/lib.sh"
    return [w for line in block[1].splitlines() for w in line.split("#")[0].split()] + ab[1].split()


def suite_table() -> tuple[str, dict[str, str]]:
    out = bash(f'. "{SUITES}"; echo "$DEFAULT_SUITE"; '
               'for s in "${!SUITE_PYTHON[@]}"; do echo "$s=${SUITE_PYTHON[$s]}"; done').stdout
    default, *pairs = out.split()
    return default, dict(pair.split("=") for pair in pairs)


def test_trixie_is_the_default_suite_and_each_suite_has_its_python():
    default, pythons = suite_table()
    assert default == "trixie"
    assert pythons == {"trixie": "3.13", "bookworm": "3.11"}
    for suite, python in pythons.items():
        found = bash(f'. "{SUITES}"; suite_for_python {python}')
        assert (found.returncode, found.stdout) == (0, suite + "\n")
    assert bash(f'. "{SUITES}"; suite_for_python 3.9').returncode == 1
    for builder in ("image/build", "image/pi-gen/build"):
        usage = subprocess.run([str(ROOT / builder), "--help"], capture_output=True, text=True)
        assert "default: trixie" in " ".join(usage.stderr.split()), usage.stderr


@pytest.mark.parametrize("builder", ["image/build", "image/pi-gen/build"])
def test_builders_take_every_suite_and_refuse_others(builder):
    """A known suite gets past the suite check to the next one (a missing file, so that neither
    builds anything); an unknown one is refused by name."""
    missing = (["--config", "/nonexistent"] if builder == "image/pi-gen/build"
               else ["--smoke-only", "/nonexistent"])

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(ROOT / builder), *args, *missing], capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL)

    _, pythons = suite_table()
    unknown = run("--suite", "buster")
    assert unknown.returncode == 1
    assert "--suite buster: not a suite this builder knows" in unknown.stderr
    for suite in pythons:
        known = run("--suite", suite)
        assert known.returncode == 1 and f"{missing[0]} /nonexistent: no such file" in known.stderr, (
            known.stderr)


def test_pi_gen_tags_name_their_suite():
    run = ROOT / "image" / "pi-gen" / "build"
    text = run.read_text()
    tags = dict(re.findall(r"\[(\w+)\]=(\d{4}-\d\d-\d\d-raspios-\w+-arm64)", text))
    _, pythons = suite_table()
    assert set(tags) == set(pythons)
    assert all(tag.endswith(f"-raspios-{suite}-arm64") for suite, tag in tags.items())
    wrong = subprocess.run([str(run), "--ref", tags["bookworm"], "--suite", "trixie"],
                           capture_output=True, text=True, timeout=30)
    assert wrong.returncode == 1 and "is not a trixie tag" in wrong.stderr


@pytest.mark.parametrize("suite", ["trixie", "bookworm"])
def test_the_packages_are_in_the_suites_debian_archive(tmp_path, suite):
    """Every package the Debian builder and the pi-gen stage name (less the Raspberry Pi archive's
    own) is in that suite's Debian archive for arm64, under that name: trixie renamed some (64-bit
    time_t: libasound2 is libasound2t64 there). Looked up in the Debian archive itself."""
    keyring = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
    if shutil.which("apt-get") is None or not keyring.exists():
        pytest.skip("no apt-get or Debian archive keyring to look the packages up with")
    lists = tmp_path / "lists"
    (lists / "partial").mkdir(parents=True)
    sources = tmp_path / "sources.list"
    sources.write_text(f"deb [arch=arm64 signed-by={keyring}] http://deb.debian.org/debian "
                       f"{suite} main non-free-firmware\n")
    apt = ["-o", f"Dir::Etc::SourceList={sources}", "-o", "Dir::Etc::SourceParts=-",
           "-o", f"Dir::State::Lists={lists}", "-o", f"Dir::Cache={tmp_path}",
           "-o", "Dir::State::status=/dev/null", "-o", "APT::Architecture=arm64",
           "-o", "APT::Architectures=arm64", "-o", "Debug::NoLocking=1",
           "-o", "APT::Sandbox::User=root"]
    update = subprocess.run(["apt-get", *apt, "-qq", "update"], capture_output=True, text=True,
                            timeout=300, stdin=subprocess.DEVNULL)
    if update.returncode != 0:
        pytest.skip(f"Debian's archive not reachable: {update.stderr.strip()[-200:]}")
    wanted = set(builder_packages()) | {
        p for p in packages("00-packages") + packages("00-packages-nr") if p not in RASPBERRY_PI_ONLY}
    assert {"libportaudio2", "libspeexdsp1", "python3-systemd", "linux-image-arm64"} <= wanted
    shown = subprocess.run(["apt-cache", *apt, "show", "--no-all-versions", *sorted(wanted)],
                           capture_output=True, text=True, timeout=60)
    found = {line.split(": ", 1)[1] for line in shown.stdout.splitlines()
             if line.startswith("Package: ")}
    assert wanted <= found, f"not in Debian {suite} (arm64): {sorted(wanted - found)}"


def test_run_copies_source_and_wheels_where_run_chroot_installs_from(tmp_path):
    stage = tmp_path / "00-talkie"
    shutil.copytree(STAGE / "00-talkie", stage)
    rootfs = tmp_path / "rootfs"
    (rootfs / "tmp").mkdir(parents=True)
    missing = bash("./01-run.sh", cwd=stage, ROOTFS_DIR=str(rootfs))
    assert missing.returncode == 1 and "files/talkie-src is missing" in missing.stderr
    (stage / "files" / "talkie-src" / "image").mkdir(parents=True)
    (stage / "files" / "talkie-src" / "image" / "install-talkie").write_text("#!/bin/sh\n")
    (stage / "files" / "wheelhouse").mkdir()
    (stage / "files" / "wheelhouse" / "talkie-0.1.0-py3-none-any.whl").write_text("")
    result = bash("./01-run.sh", cwd=stage, ROOTFS_DIR=str(rootfs))
    assert result.returncode == 0, result.stderr
    assert (rootfs / "tmp/talkie-src/image/install-talkie").exists()
    assert (rootfs / "tmp/wheelhouse/talkie-0.1.0-py3-none-any.whl").exists()
    chroot = (STAGE / "00-talkie" / "02-run-chroot.sh").read_text().splitlines()
    assert "/tmp/talkie-src/image/install-talkie --root / --wheelhouse /tmp/wheelhouse" in chroot
    # the -OO bytecode talkie.service (PYTHONOPTIMIZE=2) imports, made after the clean-up
    compile_at = next(i for i, line in enumerate(chroot) if "-OO -m compileall" in line)
    assert compile_at > next(i for i, line in enumerate(chroot) if "__pycache__" in line)


@pytest.mark.parametrize("builder", ["image/build", "image/pi-gen/build"])
def test_builders_explain_their_arguments(builder):
    usage = subprocess.run([str(ROOT / builder), "--help"], capture_output=True, text=True)
    assert usage.returncode == 64 and "usage:" in usage.stderr
    wrong = subprocess.run([str(ROOT / builder), "--frobnicate"], capture_output=True, text=True)
    assert wrong.returncode == 64 and "unknown argument: --frobnicate" in wrong.stderr


@pytest.mark.parametrize("suite, init_format", [("trixie", "cloudinit-rpi"), ("bookworm", "systemd")])
def test_the_imager_manifest_describes_the_image_and_how_imager_customises_it(tmp_path, suite,
                                                                             init_format):
    """Imager 2.x customises a local image only through a manifest: its init_format must be the
    suite's (trixie: cloud-init's NoCloud files; bookworm: firstrun.sh), and its sizes and
    checksums those of the file and of what it unpacks to, or Imager refuses the write."""
    raw = os.urandom(200_000) + bytes(300_000)
    image = tmp_path / f"image_2026-06-18-raspios-{suite}-arm64-talkie.img.xz"
    image.write_bytes(lzma.compress(raw))
    done = subprocess.run([str(ROOT / "image" / "imager-manifest"), str(image), "--suite", suite],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = tmp_path / f"image_2026-06-18-raspios-{suite}-arm64-talkie.rpi-imager-manifest"
    (entry,) = json.loads(out.read_text())["os_list"]
    assert entry["init_format"] == init_format
    assert entry["url"] == image.as_uri()
    assert entry["extract_size"] == len(raw)
    assert entry["extract_sha256"] == hashlib.sha256(raw).hexdigest()
    assert entry["image_download_size"] == image.stat().st_size
    assert entry["image_download_sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
    assert set(entry["devices"]) == {"pi5-64bit", "pi4-64bit", "pi3-64bit"}
    assert suite in entry["name"]
    image.write_bytes(lzma.compress(raw)[:-40])  # truncated: no manifest, an error
    broken = subprocess.run([str(ROOT / "image" / "imager-manifest"), str(image), "--suite", suite],
                            capture_output=True, text=True, timeout=60)
    assert broken.returncode == 1 and "error:" in broken.stderr and "Traceback" not in broken.stderr


# ---- the smoke check ----------------------------------------------------------------------------


def smoke(function: str, *args: str) -> subprocess.CompletedProcess:
    script = (f'say() {{ echo "$*"; }}; die() {{ echo "$*" >&2; exit 1; }}; '
              f'. "{ROOT / "image" / "smoke.sh"}"; {function} "$@"')
    return subprocess.run(["bash", "-c", script, "smoke", *args], capture_output=True, text=True,
                          timeout=30, env=ENV)


def test_systemd_analyze_verify_accepts_the_smoke_unit(tmp_path):
    unit = tmp_path / "talkie-smoke.service"
    unit.write_text(smoke("smoke_unit").stdout)
    assert "WantedBy=multi-user.target" in unit.read_text()
    result = subprocess.run([tool("systemd-analyze"), "verify", "--man=no", "--generators=no",
                             str(unit)], capture_output=True, text=True, timeout=60, env=ENV,
                            stdin=subprocess.DEVNULL)
    complaints = [line for line in (result.stderr + result.stdout).splitlines()
                  if "talkie-smoke.service" in line]
    assert complaints == [], "\n".join(complaints)


READY = """\
[   31.2] systemd[1]: Starting talkie-smoke.service - talkie image smoke check...
TALKIE-SMOKE first running after 3 s; watching for 40 s\r
TALKIE-SMOKE ActiveState=active
TALKIE-SMOKE SubState=running
TALKIE-SMOKE StatusText=idle; faults: no microphone; no GPIO; no API key
TALKIE-SMOKE NRestarts=0
TALKIE-SMOKE Result=success
TALKIE-SMOKE memory VmRSS:	   61234 kB
TALKIE-SMOKE root-size    2.1G (success)
TALKIE-SMOKE journal [   20.1] talkie[301]: started
TALKIE-SMOKE end
"""


@pytest.mark.parametrize("change, verdict", [
    ({}, "PASS"),
    ({"NRestarts=0": "NRestarts=3"}, "talkie.service is not NRestarts=0"),
    ({"SubState=running": "SubState=auto-restart"}, "talkie.service is not SubState=running"),
    ({"StatusText=idle; faults: no microphone; no GPIO; no API key": "StatusText="},
     "talkie.service has no status text"),
    ({"StatusText=idle; faults: no microphone; no GPIO; no API key": "StatusText=idle"},
     "status does not say what is missing"),
    ({"started": "Traceback (most recent call last):"}, "a Python traceback"),
    ({"TALKIE-SMOKE end\n": ""}, "the smoke unit did not finish"),
    ({"2.1G (success)": "1G (exit-code)"}, "the data partition did not grow"),
])
def test_the_serial_log_verdict(tmp_path, change, verdict):
    text = READY
    for old, new in change.items():
        text = text.replace(old, new)
    log = tmp_path / "serial.log"
    log.write_text(text)
    result = smoke("smoke_verdict", str(log))
    assert verdict in result.stdout + result.stderr
    assert (result.returncode == 0) == (verdict == "PASS")


def test_the_verdict_shows_what_talkie_holds_in_memory(tmp_path):
    log = tmp_path / "serial.log"
    log.write_text(READY)
    result = smoke("smoke_verdict", str(log))
    assert "TALKIE-SMOKE memory VmRSS:\t   61234 kB" in result.stdout


# ---- the wheelhouse both builders install from (the slow part that needs no bootstrap)


def test_the_aarch64_wheelhouse_holds_everything_pyproject_asks_for(tmp_path):
    """What the images install offline, for aarch64 and the default suite's CPython (trixie: 3.13)
    as the builders do it: a requirement with an environment marker (spaces, quotes) must not break
    it, the lgpio wheel must be real (PyPI has none for 3.13: cross-compiled from its sdist), and
    talkie must resolve from the folder alone."""
    wheels = tmp_path / "wheelhouse"
    done = subprocess.run([str(ROOT / "image" / "wheelhouse"), str(wheels), "--lgpio", "--check"],
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "checked: talkie resolves from the wheelhouse alone" in done.stdout
    names = sorted(p.name for p in wheels.iterdir())
    assert all(name.endswith(".whl") for name in names)
    assert any(n.startswith("talkie-") and n.endswith("-py3-none-any.whl") for n in names)
    for native in ("numpy", "soxr", "simplejpeg", "webrtcvad_wheels", "lgpio", "pydantic_core"):
        found = [n for n in names if n.startswith(native + "-")]
        assert found and all("aarch64" in n for n in found), (native, names)
    lgpio = next(n for n in names if n.startswith("lgpio-"))
    assert not lgpio.startswith("lgpio-0.0.0")  # the empty placeholder release
    assert "-cp313-cp313-" in lgpio, lgpio
    with zipfile.ZipFile(wheels / lgpio) as whl:
        module = whl.read("_lgpio.cpython-313-aarch64-linux-gnu.so")
        assert "def gpiochip_open(" in whl.read("lgpio.py").decode()
    # An ELF shared object for AArch64 (e_machine 183), not one for this machine.
    assert module[:4] == b"\x7fELF" and int.from_bytes(module[18:20], "little") == 183
    for name in names:  # the cp313 wheels of the native packages, or stable-ABI ones
        if "-cp3" in name:
            assert "-cp313-" in name or "-abi3-" in name, name
    assert not any(n.startswith("systemd_python") for n in names)  # the OS's python3-systemd

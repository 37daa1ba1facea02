"""The pieces of the Python 3.13 run (tests/run-py313, daemon/dev-env) that can be checked here.

The shell parses; tests/run starts tests/run-py313 when given no arguments, prints its output at
the end and fails when either run fails; the Debian mirror comes out of sample apt sources (one-line
and deb822); pip's local paths come out of a sample pip configuration.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEV_ENV = ROOT / "daemon" / "dev-env"


def bash(script: str, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run(
        ["bash", "-c", script, "bash", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=30,
    )


@pytest.mark.parametrize("path", ["tests/run", "tests/run-py313", "daemon/dev-env", "daemon/run"])
def test_the_scripts_parse(path):
    done = subprocess.run(
        ["bash", "-n", str(ROOT / path)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_run_py313_is_executable():
    assert os.stat(ROOT / "tests/run-py313").st_mode & stat.S_IXUSR


# ---- tests/run's wiring, with stand-ins for what it calls -------------------------------------


def write_exe(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def checkout(tmp_path):
    """A checkout with the real tests/run and stand-ins for dev-env, the venv and run-py313."""
    shutil.copy(ROOT / "tests/run", tmp_path / "run")
    (tmp_path / "tests").mkdir()
    shutil.move(tmp_path / "run", tmp_path / "tests/run")
    (tmp_path / "daemon").mkdir()
    (tmp_path / "daemon/dev-env").write_text(
        "ensure_system_packages() { :; }\nensure_venv() { :; }\n"
        'talkie_root_cmd() { [ -z "${NO_ROOT:-}" ] || { echo "needs root" >&2; return 1; }; }\n'
    )
    # the venv's python: records its arguments; pytest's exit status comes from MAIN_RC
    write_exe(
        tmp_path / ".venv/bin/python",
        '#!/bin/sh\necho "$*" >> "$LOG"\n'
        'case "$*" in *pytest*) echo "main pytest"; exit "${MAIN_RC:-0}";; esac\n',
    )
    write_exe(
        tmp_path / "tests/run-py313",
        '#!/bin/sh\necho "run-py313 $*" >> "$LOG"\n'
        'echo "python 3.13 (trixie): 7 passed"; exit "${PY313_RC:-0}"\n',
    )
    return tmp_path


def run_tests_run(checkout: Path, *args: str, **env: str):
    log = checkout / "calls.log"
    log.unlink(missing_ok=True)
    full = {k: v for k, v in os.environ.items() if k not in ("CI", "TALKIE_PY313")}
    full.update(LOG=str(log), **env)
    done = subprocess.run(
        ["bash", str(checkout / "tests/run"), *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=60,
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return done, calls


def test_tests_run_runs_the_python_313_tests_beside_the_rest(checkout):
    done, calls = run_tests_run(checkout)
    assert done.returncode == 0, done.stderr
    assert "run-py313 " in calls
    assert "-m pytest" in calls
    assert "-m mypy" in calls
    header = "python 3.13 (trixie): tests/run-py313"
    out = done.stdout
    assert header in out
    assert out.index("main pytest") < out.index(header) < out.index("7 passed")


@pytest.mark.parametrize(
    ("main_rc", "py313_rc", "want"), [("0", "3", 3), ("2", "0", 2), ("2", "3", 2)]
)
def test_tests_run_fails_when_either_run_fails(checkout, main_rc, py313_rc, want):
    done, _ = run_tests_run(checkout, MAIN_RC=main_rc, PY313_RC=py313_rc)
    assert done.returncode == want
    assert "python 3.13 (trixie): 7 passed" in done.stdout
    assert ("the unit tests under Python 3.13 failed" in done.stdout) == (py313_rc != "0")


def test_tests_run_with_arguments_leaves_the_python_313_run_out(checkout):
    done, calls = run_tests_run(checkout, "tests/unit", "-k", "machine")
    assert done.returncode == 0, done.stderr
    assert calls == ["-m pytest tests/unit -k machine"]


def test_tests_run_without_root_stops_before_anything_runs(checkout):
    done, calls = run_tests_run(checkout, NO_ROOT="1")
    assert done.returncode != 0
    assert "needs root" in done.stderr
    assert calls == []


def test_tests_run_leaves_python_313_out_only_when_asked_and_not_in_ci(checkout):
    done, calls = run_tests_run(checkout, TALKIE_PY313="0")
    assert done.returncode == 0
    assert "run-py313 " not in calls
    assert "left out" in done.stderr
    done, calls = run_tests_run(checkout, TALKIE_PY313="0", CI="true")
    assert "run-py313 " in calls


# ---- the Debian mirror, from apt's sources --------------------------------------------------


def mirror(root: Path) -> subprocess.CompletedProcess:
    return bash('. "$1"; talkie_debian_mirror "$2"', str(DEV_ENV), str(root))


def machine(tmp_path: Path, codename: str, files: dict[str, str]) -> Path:
    (tmp_path / "etc/apt/sources.list.d").mkdir(parents=True)
    (tmp_path / "etc/os-release").write_text(
        f'PRETTY_NAME="Debian"\nVERSION_CODENAME={codename}\nID=debian\n'
    )
    for name, text in files.items():
        (tmp_path / "etc/apt" / name).write_text(text)
    return tmp_path


def test_mirror_from_a_one_line_sources_list(tmp_path):
    root = machine(
        tmp_path,
        "bookworm",
        {
            "sources.list": (
                "# deb http://old.example/debian bookworm main\n"
                "deb-src http://src.example/debian bookworm main\n"
                "deb http://security.example/debian-security bookworm-security main\n"
                "deb [arch=arm64 signed-by=/usr/share/keyrings/k.gpg] http://mirror.example/debian/ "
                "bookworm main contrib non-free  # the archive\n"
            )
        },
    )
    assert mirror(root).stdout == "http://mirror.example/debian/\n"


def test_mirror_from_deb822_skips_disabled_and_other_suites(tmp_path):
    root = machine(
        tmp_path,
        "bookworm",
        {
            "sources.list.d/debian.sources": (
                "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\n"
                "Enabled: no\n\n"
                "# the security archive\nTypes: deb\nURIs: http://sec.example/debian-security\n"
                "Suites: bookworm-security\nComponents: main\n\n"
                "types: deb deb-src\nuris:\n http://deb.example/debian\n http://two.example/debian\n"
                "suites: bookworm bookworm-updates\ncomponents: main non-free-firmware\n"
            )
        },
    )
    assert mirror(root).stdout == "http://deb.example/debian\n"


def test_mirror_is_debian_before_a_vendor_archive_in_apt_order(tmp_path):
    # Raspberry Pi OS: Debian in sources.list, the vendor's archive (also "bookworm main") after.
    root = machine(
        tmp_path,
        "bookworm",
        {
            "sources.list.d/raspi.list": "deb http://vendor.example/debian/ bookworm main\n",
            "sources.list.d/docker.list": "deb https://docker.example/debian bookworm stable\n",
            "sources.list": "deb http://deb.example/debian bookworm main contrib\n",
        },
    )
    assert mirror(root).stdout == "http://deb.example/debian\n"
    (root / "etc/apt/sources.list").unlink()
    assert mirror(root).stdout == "http://vendor.example/debian/\n"


def test_mirror_ignores_files_apt_ignores(tmp_path):
    root = machine(
        tmp_path,
        "trixie",
        {
            "sources.list.d/a.list.disabled": "deb http://no.example/debian trixie main\n",
            "sources.list.d/b.sources": (
                "Types: deb\nURIs: http://yes.example/debian\nSuites: trixie\nComponents: main\n"
            ),
        },
    )
    assert mirror(root).stdout == "http://yes.example/debian\n"


def test_no_mirror_is_a_clear_error(tmp_path):
    root = machine(
        tmp_path,
        "bookworm",
        {"sources.list": "deb https://docker.example/debian bookworm stable\n"},
    )
    done = mirror(root)
    assert (done.returncode, done.stdout) == (1, "")
    assert "no Debian archive for 'bookworm'" in done.stderr
    assert "TALKIE_DEBIAN_MIRROR" in done.stderr


# ---- pip's local paths, for the chroot's pip ------------------------------------------------


def test_pip_local_paths_from_files_and_variables(tmp_path):
    (tmp_path / "wheels").mkdir()
    (tmp_path / "index/simple").mkdir(parents=True)
    (tmp_path / "more").mkdir()
    (tmp_path / "ca.pem").write_text("")
    (tmp_path / "constraints.txt").write_text("")
    conf = tmp_path / "pip.conf"
    conf.write_text(
        f"[global]\ncert = {tmp_path}/ca.pem\n# find-links = {tmp_path}/commented\n"
        f"extra-index-url =\n    file://{tmp_path}/index/simple\n    https://index.example/simple\n"
        f"    file://{tmp_path}/gone/simple\n[install]\nconstraint={tmp_path}/constraints.txt\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(
        PIP_FIND_LINKS=f"{tmp_path}/wheels {tmp_path}/more/",
        PIP_CERT=f"{tmp_path}/ca.pem",
        PIP_DEFAULT_TIMEOUT="60",
    )
    done = bash('. "$1"; talkie_pip_local_paths "$2"', str(DEV_ENV), str(conf), env=env)
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == sorted(
        [
            f"copy {tmp_path}/ca.pem",
            f"copy {tmp_path}/constraints.txt",
            f"mount {tmp_path}/index",
            f"mount {tmp_path}/wheels",
            f"mount {tmp_path}/more",
        ]
    )

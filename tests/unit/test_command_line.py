"""The command line's own habits: its version (one source, pyproject.toml), and the config file
every command uses when none is named ($TALKIE_CONFIG, else /etc/talkie/talkie.toml)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import talkie
from talkie import cli, config

REPO = Path(__file__).resolve().parents[2]
PROJECT_VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


# ---- the version


def test_the_version_is_pyprojects_wherever_it_is_read_from():
    assert talkie.version() == PROJECT_VERSION
    assert talkie.__version__ == PROJECT_VERSION
    # installed (the metadata) and a source checkout never installed (pyproject.toml) agree
    assert importlib.metadata.version("talkie") == PROJECT_VERSION, (
        "the installed metadata is stale: reinstall (pip install -e .)")
    assert talkie._checkout_version() == PROJECT_VERSION


def test_talkie_version_prints_it_and_exits_0(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"talkie {PROJECT_VERSION}\n"


def test_the_version_is_asked_for_only_when_shown():
    """`talkie ctl` stays fast: parsing imports no package metadata."""
    code = "import sys, talkie.cli; talkie.cli._parser(); print('importlib.metadata' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


# ---- which config file


@pytest.fixture
def default_path(tmp_path, monkeypatch):
    """The built-in default path, moved into tmp_path (a machine may have a real one)."""
    path = tmp_path / "etc-talkie.toml"
    monkeypatch.setattr(config, "DEFAULT_PATH", str(path))
    monkeypatch.delenv("TALKIE_CONFIG", raising=False)
    return path


def test_a_named_path_wins_over_talkie_config_which_wins_over_the_default(default_path):
    env = {"TALKIE_CONFIG": "/from/env.toml"}
    assert config.config_path("/given.toml", env) == "/given.toml"
    assert config.config_path(None, env) == "/from/env.toml"
    assert config.config_path(None, {}) == str(default_path)
    assert config.config_path(None, {"TALKIE_CONFIG": ""}) == str(default_path)


def test_config_check_without_a_path_checks_talkie_config_and_says_so(tmp_path, default_path,
                                                                     monkeypatch, capsys):
    good = tmp_path / "mine.toml"
    good.write_text("[audio]\nchunk_ms = 40\n")
    monkeypatch.setenv("TALKIE_CONFIG", str(good))
    assert cli.main(["config", "check"]) == 0
    out, err = capsys.readouterr()
    assert "chunk_ms = 40" in out
    assert f"# checked {good} (from $TALKIE_CONFIG): OK" in err.splitlines()


def test_config_check_without_a_path_or_talkie_config_checks_the_default(default_path, capsys):
    assert cli.main(["config", "check"]) == 78  # no such file here
    err = capsys.readouterr().err
    assert f"talkie: {default_path}: cannot read: no such file" in err
    assert all(line.startswith(f"talkie: {default_path}: ") for line in err.splitlines())
    default_path.write_text("[log]\nlevel = \"debug\"\n")
    assert cli.main(["config", "check"]) == 0
    assert f"# checked {default_path} (the default; $TALKIE_CONFIG names another): OK" in \
        capsys.readouterr().err


def test_config_check_with_a_path_checks_that_one(tmp_path, default_path, monkeypatch, capsys):
    named = tmp_path / "named.toml"
    named.write_text("[audio]\nchunk_ms = 500\n")
    monkeypatch.setenv("TALKIE_CONFIG", str(tmp_path / "other.toml"))
    for argv in (["config", "check", str(named)], ["config", "check", "--config", str(named)]):
        assert cli.main(argv) == 78
        err = capsys.readouterr().err
        assert err.splitlines() == [f"talkie: {named}:2: [audio] chunk_ms: out of range; found 500; "
                                    "allowed 10 to 100"]


@pytest.mark.parametrize("command", [["run"], ["check", "--no-input"]])
def test_run_and_check_read_talkie_config_too(tmp_path, default_path, monkeypatch, capsys,
                                              command):
    bad = tmp_path / "bad.toml"
    bad.write_text("[panel]\nled = \"disco\"\n")
    monkeypatch.setenv("TALKIE_CONFIG", str(bad))
    assert cli.main(command) == 78  # before anything is opened
    assert f"{bad}:2: [panel] led: unknown value" in capsys.readouterr().err
    monkeypatch.delenv("TALKIE_CONFIG")
    assert cli.main(command) == 78
    assert f"{default_path}: cannot read: no such file" in capsys.readouterr().err


def test_ctl_status_says_the_version():
    import asyncio

    from talkie.config.credentials import Secret
    from talkie.shell.app import App
    from talkie.shell.control import Commands
    from talkie.system.control_client import format_reply
    from tests.support import fakes

    async def main():
        app = App(fakes.settings(), Secret("AIzaSy-version-0123456789", "test"),
                  factories=fakes.factories(fakes.Log()), firstboot_error="")
        task = asyncio.create_task(app.run())
        async with asyncio.timeout(10):
            await app.ready.wait()
        status = Commands(app).status()
        app.stop()
        await asyncio.wait_for(task, 10)
        return status

    status = asyncio.run(main())
    assert status["version"] == PROJECT_VERSION
    assert f"version: {PROJECT_VERSION}" in format_reply({"ok": True, **status})

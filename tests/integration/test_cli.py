"""The `talkie` command as a user runs it: a bad config, the shipped config, and the daemon on a
machine without GPIO (keyboard push-to-talk in a real terminal), stopped by a signal."""

from __future__ import annotations

import os
import re
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from talkie import version as talkie_version

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config" / "talkie.toml"


def talkie(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "talkie", *args], capture_output=True, text=True,
                          timeout=60, env=env, **kw)


BAD = {
    "unknown_key": ("[audio]\nchunk_ms = 20\nchnk_ms = 30\n", ":3: [audio] chnk_ms: unknown key"),
    "wrong_type": ("[live]\nmodel = \"x\"\ntemperature = \"warm\"\n",
                   ":3: [live] temperature: wrong type"),
    "out_of_range": ("# comment\n[audio]\n\nchunk_ms = 500\n",
                     ":4: [audio] chunk_ms: out of range; found 500; allowed 10 to 100"),
    "bad_syntax": ("[live]\nmodel = \"gemini\n", ":2: invalid TOML"),
    "bad_choice": ("[panel]\nled = \"disco\"\n", ":2: [panel] led: "),
}


@pytest.mark.parametrize("command", [["run", "--config"], ["config", "check"]])
@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_config_exits_78_naming_file_line_and_key(tmp_path, case, command):
    text, expected = BAD[case]
    path = tmp_path / "talkie.toml"
    path.write_text(text)
    result = talkie(*command, str(path))
    assert result.returncode == 78
    assert f"{path}{expected}" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    if case in ("unknown_key", "bad_choice"):
        assert "allowed" in result.stderr


@pytest.mark.parametrize("command", [["run", "--config"], ["config", "check"]])
def test_a_missing_config_exits_78(tmp_path, command):
    result = talkie(*command, str(tmp_path / "nope.toml"))
    assert result.returncode == 78
    assert f"{tmp_path / 'nope.toml'}: cannot read: no such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_shipped_config_checks_and_never_shows_the_key(tmp_path):
    env = {**os.environ, "GEMINI_API_KEY": "AIzaSy-shown-nowhere-12345"}
    env.pop("CREDENTIALS_DIRECTORY", None)
    result = talkie("config", "check", str(SHIPPED), env=env)
    assert result.returncode == 0, result.stderr
    assert 'model = "gemini-3.8-live"' in result.stdout
    assert "API key: set (from $GEMINI_API_KEY; not shown)" in result.stdout
    assert "AIzaSy-shown-nowhere" not in result.stdout + result.stderr


def read_until(fd, *needles: bytes, timeout=20.0) -> bytes:
    """Read the terminal until one of ``needles`` shows."""
    seen = b""
    deadline = time.monotonic() + timeout
    while not any(needle in seen for needle in needles):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needles!r} not seen in: {seen.decode(errors='replace')}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_run_without_gpio_falls_back_to_the_keyboard_and_stops_on_sigterm(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GPIOZERO_", "GEMINI_", "GOOGLE_", "CREDENTIALS_"))}
    env["GPIOZERO_PIN_FACTORY"] = "no-such-factory"  # as on a laptop: no pin factory loads
    env["STATE_DIRECTORY"] = str(tmp_path)
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "talkie", "run", "--config", str(SHIPPED)],
                            stdin=slave, stdout=slave, stderr=slave, env=env, cwd=tmp_path,
                            start_new_session=True)
    os.close(slave)
    try:
        out = read_until(master, b"hold SPACE or press ENTER")
        out += read_until(master, b"state: ")  # the machine is running
        assert out.count(b"no GPIO") == 1  # said once
        os.write(master, b"\n")  # ENTER: press (no key, no microphone here: it must not crash)
        os.write(master, b"\n")  # ENTER: release
        # With no sound card it says it cannot listen; with one (the test rig's PulseAudio may be
        # visible) it tries to connect and says the key is missing. Either way: in words.
        out += read_until(master, b"cannot listen", b"ERROR talkie: no API key")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        try:
            while chunk := os.read(master, 4096):
                out += chunk
        except OSError:
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    text = out.decode(errors="replace")
    assert code == 0, text
    assert "Traceback" not in text
    assert "talkie stopped" in text
    # the status line stays beneath the log lines: drawn again after "ready" and every line after
    assert re.search("state: ready\r\n\r\x1b\\[2K.{0,20} idle\r", text), text
    kept = re.findall("\r\x1b\\[K([A-Z]+ talkie[^\r]*)\r\n", text)
    assert len(kept) >= 2, text  # "ready", the missing key, ...
    for line in kept:
        assert re.search(re.escape(line) + "\r\n\r\x1b\\[2K", text), line
    assert f"INFO talkie: talkie {talkie_version()} starting (config {SHIPPED}," in text
    assert "no API key" in text and "/etc/talkie/api-key" in text  # told once, at start

"""Shared pytest fixtures for talkie's tests (keep generic; room-specific fixtures live near their tests)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:  # make `support` importable whatever pytest's import mode
    sys.path.insert(0, str(TESTS_DIR))

SPEECH_TEXT = "Hello talkie. What is the weather like on the coast tomorrow morning?"


@pytest.fixture(scope="session")
def pulse():
    """A private PulseAudio daemon with a null-sink microphone and speaker (support.pulse.PulseHarness).

    Skips when PulseAudio / the ALSA pulse plugin / PortAudio are not installed, unless
    TALKIE_REQUIRE_AUDIO=1 (CI), which turns the skip into a failure.
    """
    from support.pulse import PulseHarness, PulseUnavailable

    harness = PulseHarness()
    try:
        harness.start()
    except PulseUnavailable as exc:
        if os.environ.get("TALKIE_REQUIRE_AUDIO") == "1":
            pytest.fail(f"TALKIE_REQUIRE_AUDIO=1 but {exc}")
        pytest.skip(str(exc))
    try:
        yield harness
    finally:
        harness.close()


def make_speech_wav(path: Path, text: str = SPEECH_TEXT, rate: int = 16000) -> Path:
    """Synthesize ``text`` with espeak-ng and convert it with sox to 16-bit mono ``rate`` Hz WAV."""
    raw = path.with_name(path.stem + "-espeak.wav")
    subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, capture_output=True, timeout=60)
    subprocess.run(["sox", str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(path)],
                   check=True, capture_output=True, timeout=60)
    raw.unlink()
    return path


@pytest.fixture
def speech_wav(tmp_path) -> Path:
    """Path of a WAV file with a few seconds of espeak-ng speech, 16 kHz mono 16-bit."""
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        if os.environ.get("TALKIE_REQUIRE_AUDIO") == "1":
            pytest.fail(f"TALKIE_REQUIRE_AUDIO=1 but missing {', '.join(missing)}")
        pytest.skip(f"speech_wav needs {', '.join(missing)}")
    return make_speech_wav(tmp_path / "speech.wav")


# ---- no API key in any log line of the whole suite -------------------------------------------

#: Every API key the tests use starts like a real Google key does.
TEST_KEY_MARK = "AIzaSy"


class _KeyLeakWatch:
    """Collects log records (from anything but the test rig itself) that carry a test API key."""

    def __init__(self) -> None:
        import logging

        self.leaks: list[str] = []
        self.seen = 0
        self.handler = logging.Handler(logging.DEBUG)
        self.handler.emit = self._check  # type: ignore[method-assign]

    def _check(self, record) -> None:
        import logging

        if record.name.startswith("tests."):
            return  # the Live double is the service: it may log the header it received
        self.seen += 1
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        text += " ".join(str(v) for k, v in vars(record).items() if k.startswith("talkie_"))
        if TEST_KEY_MARK in text:
            self.leaks.append(f"{record.name}: {text[:300]}")


@pytest.fixture(scope="session", autouse=True)
def no_key_in_any_log_line():
    """Every log record of the session, at DEBUG, is searched for the test keys: none may appear."""
    import logging

    watch = _KeyLeakWatch()
    root, talkie = logging.getLogger(), logging.getLogger("talkie")
    level = root.level
    root.setLevel(logging.DEBUG)
    # "talkie" stops propagating once logs.setup() has run: watch it directly too.
    for logger in (root, talkie):
        logger.addHandler(watch.handler)
    try:
        yield watch
    finally:
        for logger in (root, talkie):
            logger.removeHandler(watch.handler)
        root.setLevel(level)
    assert not watch.leaks, "the API key reached the log:\n" + "\n".join(watch.leaks)


@pytest.fixture(autouse=True)
def talkie_logger_restored():
    """Tests that run logs.setup() (as the daemon does) must not change logging for the next test."""
    import logging

    import sys
    import threading

    saved = {}
    for name in ("talkie", "asyncio"):  # logs.setup() routes asyncio's lines through talkie's
        logger = logging.getLogger(name)
        saved[name] = (list(logger.handlers), list(logger.filters), logger.level, logger.propagate)
    hooks = sys.excepthook, threading.excepthook
    yield
    for name, (handlers, filters, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:], logger.filters[:] = handlers, filters
        logger.setLevel(level)
        logger.propagate = propagate
    sys.excepthook, threading.excepthook = hooks


@pytest.fixture(autouse=True)
def frozen_objects_released():
    """A daemon started in a test freezes what is loaded (shell.memory.settle), as the real one
    does once at its start: the next test's garbage must stay collectable."""
    import gc

    yield
    gc.unfreeze()

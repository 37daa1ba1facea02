"""Native journal entries: fields, priorities, the JOURNAL_STREAM switch, and no key in any field."""

from __future__ import annotations

import io
import logging
import os

import pytest

from talkie.system import logs
from talkie.config import credentials
from talkie.config.credentials import Secret
from talkie.system.journal import TalkieJournalHandler, journal_wanted, priority


class Capture:
    """A sender_function that keeps every entry as a dict of fields."""

    def __init__(self) -> None:
        self.entries: list[dict] = []

    def __call__(self, MESSAGE, **fields):  # noqa: N803  (journal.send's spelling)
        self.entries.append({"MESSAGE": MESSAGE, **fields})


@pytest.fixture
def clean_logging():
    """Restore the talkie tree and the handshake loggers after a test that sets them up."""
    names = ("talkie", *credentials.HANDSHAKE_LOGGERS)
    saved = {n: (list(logging.getLogger(n).handlers), list(logging.getLogger(n).filters),
                 logging.getLogger(n).level, logging.getLogger(n).propagate) for n in names}
    yield
    for name, (handlers, filters, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.filters[:] = filters
        logger.setLevel(level)
        logger.propagate = propagate


def _logger_with(capture: Capture, name: str = "talkie.test") -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [TalkieJournalHandler(sender_function=capture)]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger


def test_entry_fields(clean_logging):
    capture = Capture()
    logger = _logger_with(capture, "talkie.test.fields")
    logger.info("state: %s", "listening",
                extra={"talkie_state": "listening", "talkie_event": "ButtonDown",
                       "talkie_session": "s-1", "talkie_latency_ms": 412, "talkie_nothing": None})
    (entry,) = capture.entries
    assert entry["MESSAGE"] == "state: listening"
    assert entry["PRIORITY"] == "6"
    assert entry["SYSLOG_IDENTIFIER"] == "talkie"
    assert entry["LOGGER"] == "talkie.test.fields"
    assert entry["TALKIE_STATE"] == "listening"
    assert entry["TALKIE_EVENT"] == "ButtonDown"
    assert entry["TALKIE_SESSION"] == "s-1"
    assert entry["TALKIE_LATENCY_MS"] == "412"
    assert "TALKIE_NOTHING" not in entry
    assert entry["CODE_FILE"] == __file__
    assert entry["CODE_FUNC"] == "test_entry_fields"
    assert isinstance(entry["CODE_LINE"], int) and entry["CODE_LINE"] > 0
    # only journal-style names: nothing of the record's own attributes leaks in as fields
    assert all(key == key.upper() for key in entry)


def test_transcript_field(clean_logging):
    capture = Capture()
    logger = _logger_with(capture)
    logger.info("heard: %s", "what is the weather", extra={"talkie_transcript": "heard"})
    logger.info("said: %s", "sunny", extra={"talkie_transcript": "said"})
    assert [(e["MESSAGE"], e["TALKIE_TRANSCRIPT"]) for e in capture.entries] == [
        ("heard: what is the weather", "heard"), ("said: sunny", "said")]


@pytest.mark.parametrize(("level", "expected"), [
    (logging.DEBUG, "7"), (logging.INFO, "6"), (logging.WARNING, "4"), (logging.ERROR, "3"),
    (logging.CRITICAL, "2"),
])
def test_priority_per_level(clean_logging, level, expected):
    capture = Capture()
    _logger_with(capture).log(level, "x")
    assert capture.entries[0]["PRIORITY"] == expected


def test_priority_between_levels():
    assert priority(5) == 7 and priority(25) == 4 and priority(35) == 3 and priority(45) == 2


def test_exception_traceback_in_message(clean_logging):
    capture = Capture()
    logger = _logger_with(capture)
    try:
        raise ValueError("the cause")
    except ValueError:
        logger.exception("error: it broke")
    message = capture.entries[0]["MESSAGE"]
    assert message.startswith("error: it broke\nTraceback (most recent call last):")
    assert "ValueError: the cause" in message
    assert capture.entries[0]["PRIORITY"] == "3"


def test_sender_failure_does_not_raise(clean_logging, monkeypatch):
    def broken(MESSAGE, **fields):  # noqa: N803
        raise OSError("journal gone")

    monkeypatch.setattr(logging, "raiseExceptions", False)
    _logger_with(broken).error("still fine")  # type: ignore[arg-type]


def test_default_sender_is_systemd_journal_send():
    from systemd import journal
    assert TalkieJournalHandler().sender is journal.send


# --- journal_wanted ----------------------------------------------------------------------------

def _stream_id(f) -> str:
    st = os.fstat(f.fileno())
    return f"{st.st_dev}:{st.st_ino}"


def test_journal_wanted_matching_stream(tmp_path):
    with open(tmp_path / "stderr", "w") as stderr, open(tmp_path / "other", "w") as other:
        assert journal_wanted({"JOURNAL_STREAM": _stream_id(stderr)}, stderr)
        assert journal_wanted({"JOURNAL_STREAM": _stream_id(stderr)}, stderr.fileno())
        assert not journal_wanted({"JOURNAL_STREAM": _stream_id(other)}, stderr)
        assert not journal_wanted({}, stderr)
        assert not journal_wanted({"JOURNAL_STREAM": "garbage"}, stderr)
        assert not journal_wanted({"JOURNAL_STREAM": "1:x"}, stderr)
    assert not journal_wanted({"JOURNAL_STREAM": "1:2"}, io.StringIO())


def test_journal_wanted_reads_the_environment(tmp_path, monkeypatch):
    with open(tmp_path / "stderr", "w") as stderr:
        monkeypatch.setenv("JOURNAL_STREAM", _stream_id(stderr))
        monkeypatch.setattr("sys.stderr", stderr)
        assert journal_wanted()
        monkeypatch.delenv("JOURNAL_STREAM")
        assert not journal_wanted()


# --- logs.setup --------------------------------------------------------------------------------

def test_setup_plain_lines(clean_logging):
    stream = io.StringIO()
    root = logs.setup("info", stream=stream, journal=False)
    logging.getLogger("talkie.app").info("state: %s", "idle", extra={"talkie_state": "idle"})
    logging.getLogger("talkie.app").debug("hidden")
    assert stream.getvalue() == "INFO talkie.app: state: idle\n"
    assert root.name == "talkie" and not root.propagate


def test_setup_auto_without_journal_stream_is_plain(clean_logging, monkeypatch):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    stream = io.StringIO()
    logs.setup("info", stream=stream)
    logging.getLogger("talkie.x").warning("w")
    assert stream.getvalue() == "WARNING talkie.x: w\n"


def test_setup_auto_with_journal_stream(clean_logging, monkeypatch, tmp_path):
    capture = Capture()
    with open(tmp_path / "stderr", "w") as stderr:
        monkeypatch.setenv("JOURNAL_STREAM", _stream_id(stderr))
        logs.setup("debug", stream=stderr, journal_sender=capture)
        logging.getLogger("talkie.app").debug("state: %s", "idle", extra={"talkie_state": "idle"})
    assert stderr.closed and (tmp_path / "stderr").read_text() == ""
    assert capture.entries[0]["MESSAGE"] == "state: idle"
    assert capture.entries[0]["TALKIE_STATE"] == "idle"


def test_setup_journal_without_systemd_python_falls_back(clean_logging, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "systemd", None)
    stream = io.StringIO()
    logs.setup("info", stream=stream, journal=True)
    logging.getLogger("talkie.x").info("hello")
    assert stream.getvalue() == "INFO talkie.x: hello\n"


def test_secret_never_reaches_the_journal(clean_logging):
    key = Secret("AIzaSy-very-secret-key-0123456789", "test")
    capture = Capture()
    logs.setup("debug", journal=True, journal_sender=capture)
    credentials.guard_secret(key.reveal())

    # on a child logger (the Redactor sits on "talkie"; the handler applies it to the whole tree)
    child = logging.getLogger("talkie.live.link")
    child.info("connecting with %s", key.reveal(), extra={"talkie_session": key.reveal()})
    child.info("url=wss://x/?key=" + key.reveal())
    try:
        raise ConnectionError(f"401 for key {key.reveal()}")
    except ConnectionError:
        child.exception("error: API key rejected")
        logging.getLogger("talkie").error("root view", exc_info=True)

    assert len(capture.entries) == 4
    for entry in capture.entries:
        for value in entry.values():
            assert key.reveal() not in str(value)
    assert "***" in capture.entries[0]["MESSAGE"]
    assert capture.entries[0]["TALKIE_SESSION"] == "***"
    assert "ConnectionError: 401 for key ***" in capture.entries[2]["MESSAGE"]
    assert "ConnectionError: 401 for key ***" in capture.entries[3]["MESSAGE"]


def test_secret_never_reaches_stderr_lines(clean_logging):
    secret = "sk-another-secret-value"
    stream = io.StringIO()
    logs.setup("debug", stream=stream, journal=False)
    credentials.guard_secret(secret)
    logging.getLogger("talkie.live").warning("key=%s", secret)
    assert secret not in stream.getvalue() and "key=***" in stream.getvalue()


def test_asyncio_and_uncaught_exceptions_pass_through_the_same_redaction(clean_logging):
    """An exception in a callback (asyncio's "Exception in callback ..."), one in a thread and
    one nobody caught: their lines and tracebacks are the talkie handler's, the key redacted."""
    import asyncio
    import sys
    import threading

    key = "AIzaSyFAKE-exception-hooks-0123456789ab"
    stream = io.StringIO()
    logs.setup("info", stream=stream, journal=False)
    credentials.guard_secret(key)

    def fails():
        raise RuntimeError(f"handshake failed for key={key}")

    async def main():
        asyncio.get_running_loop().call_soon(fails)
        await asyncio.sleep(0.01)

    asyncio.run(main())
    worker = threading.Thread(target=fails, name="talkie-test")
    worker.start()
    worker.join()
    try:
        fails()
    except RuntimeError:
        sys.excepthook(*sys.exc_info())
    text = stream.getvalue()
    assert key not in text
    assert "Exception in callback" in text and "uncaught exception in thread talkie-test" in text
    assert text.count("handshake failed for key=***") == 3

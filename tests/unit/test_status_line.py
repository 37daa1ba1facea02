"""The keyboard panel's status line stays at the bottom of its terminal: a log line written to the
same terminal clears it, is written, and draws it again beneath itself (on a real pty). On a
pipe, plain lines only: no escape code anywhere."""

from __future__ import annotations

import logging
import os
import sys
import threading

import pytest

from talkie.config.settings import DEFAULT_PATTERNS
from talkie.panel import Panel
from talkie.panel.keyboard import TerminalLed
from talkie.system import logs

IDLE = "\r\x1b[2K\x1b[2;32m●\x1b[0m idle\r"  # dim green, as TerminalLed draws it


class NoLoop:
    """TerminalLed's loop, for patterns that never animate."""

    def call_later(self, *_):
        raise AssertionError("a static pattern needs no timer")


@pytest.fixture
def restored_logging():
    names = ("talkie", "asyncio")
    saved = {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).level,
                 logging.getLogger(n).propagate) for n in names}
    hooks = (sys.excepthook, threading.excepthook)
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
    sys.excepthook, threading.excepthook = hooks


@pytest.fixture
def pty_stream():
    master, slave = os.openpty()
    stream = open(slave, "w", encoding="utf-8")
    yield master, stream
    stream.close()
    os.close(master)


def read_all(fd: int) -> str:
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, 65536):
            data += chunk
    except BlockingIOError:
        pass
    return data.decode()


def test_a_log_line_on_the_status_lines_terminal_keeps_it_beneath(restored_logging, pty_stream):
    master, stream = pty_stream
    logs.setup("info", stream=stream, journal=False)
    led = TerminalLed(stream, loop=NoLoop())
    led.show(DEFAULT_PATTERNS["idle"], "idle")
    assert read_all(master) == IDLE
    panel = Panel("keyboard", None, led=led)
    assert panel.status_line is led
    assert logs.keep_status_line(panel.status_line)
    assert led.lock is logging.getLogger("talkie").handlers[0].lock  # one lock for both

    logging.getLogger("talkie").info("state: ready")
    logging.getLogger("talkie.panel").warning("no GPIO")
    # (the terminal turns each \n into \r\n)
    assert read_all(master) == (f"\r\x1b[KINFO talkie: state: ready\r\n{IDLE}"
                                f"\r\x1b[KWARNING talkie.panel: no GPIO\r\n{IDLE}")
    led.close()
    logging.getLogger("talkie").info("talkie stopped")
    assert read_all(master) == "\r\x1b[2KINFO talkie: talkie stopped\r\n"  # nothing redrawn


def test_the_redrawn_line_is_the_one_shown_now(restored_logging, pty_stream):
    master, stream = pty_stream
    logs.setup("info", stream=stream, journal=False)
    led = TerminalLed(stream, loop=NoLoop())
    logs.keep_status_line(led)
    logging.getLogger("talkie").info("before anything is shown")
    assert read_all(master) == "INFO talkie: before anything is shown\r\n"  # plain
    led.show(DEFAULT_PATTERNS["listening"], "listening")
    listening = read_all(master)
    assert listening.endswith(" listening\r") and listening == led.drawn()
    logging.getLogger("talkie").error("cannot listen")
    assert read_all(master) == f"\r\x1b[KERROR talkie: cannot listen\r\n{listening}"


def test_a_status_line_on_another_terminal_is_not_kept(restored_logging, pty_stream):
    master, stream = pty_stream
    other_master, other_slave = os.openpty()
    try:
        with open(other_slave, "w", encoding="utf-8") as other:
            logs.setup("info", stream=other, journal=False)
            led = TerminalLed(stream, loop=NoLoop())
            led.show(DEFAULT_PATTERNS["idle"], "idle")
            assert not logs.keep_status_line(led)
            logging.getLogger("talkie").info("elsewhere")
            assert read_all(other_master) == "INFO talkie: elsewhere\r\n"
    finally:
        os.close(other_master)


def test_two_descriptors_of_one_terminal_are_the_same_terminal(pty_stream):
    _, stream = pty_stream
    with open(os.dup(stream.fileno()), "w") as again:
        assert logs.same_terminal(stream, again)
    read_fd, write_fd = os.pipe()
    with open(read_fd) as r, open(write_fd, "w") as w:
        assert not logs.same_terminal(w, w)
        assert not logs.same_terminal(stream, w)
        assert not logs.same_terminal(r, w)


def test_on_a_pipe_only_plain_lines(restored_logging):
    read_fd, write_fd = os.pipe()
    with open(write_fd, "w", encoding="utf-8") as stream:
        logs.setup("info", stream=stream, journal=False)
        led = TerminalLed(stream, loop=NoLoop())
        led.show(DEFAULT_PATTERNS["idle"], "idle")
        assert Panel("keyboard", None, led=led).status_line is None
        assert not logs.keep_status_line(led)
        assert not logs.keep_status_line(None)
        logging.getLogger("talkie").info("state: ready")
        led.show(DEFAULT_PATTERNS["listening"], "listening")
        logging.getLogger("talkie").info("heard: hello")
        led.close()
    text = read_all(read_fd)
    os.close(read_fd)
    assert text == ("talkie: idle\nINFO talkie: state: ready\ntalkie: listening\n"
                    "INFO talkie: heard: hello\n")
    assert "\x1b" not in text and "\r" not in text


def test_forgetting_the_status_line_leaves_plain_lines(restored_logging, pty_stream):
    master, stream = pty_stream
    logs.setup("info", stream=stream, journal=False)
    led = TerminalLed(stream, loop=NoLoop())
    led.show(DEFAULT_PATTERNS["idle"], "idle")
    logs.keep_status_line(led)
    logs.keep_status_line(None)  # a reopened panel without one
    read_all(master)
    logging.getLogger("talkie").info("plain")
    assert read_all(master) == "INFO talkie: plain\r\n"

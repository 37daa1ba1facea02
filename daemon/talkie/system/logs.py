"""Logging set-up: one logger tree, ``talkie``; native journal entries under systemd, else plain
lines on stderr; and the filter that keeps the API key out of every line.

On a terminal that also shows a status line (the keyboard panel's LED), :func:`keep_status_line`
keeps that line beneath the log lines: each one clears it, is written, and draws it again.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from talkie.config.credentials import Redactor
from talkie.system.journal import TalkieJournalHandler, journal_wanted

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
ROOT = "talkie"


def setup(
    level: str = "info",
    stream: TextIO | None = None,
    journal: bool | None = None,
    *,
    journal_sender: Callable[..., Any] | None = None,
) -> logging.Logger:
    """Route the ``talkie`` loggers at ``level``; return the root of the tree.

    ``journal``: True -> native journal entries (:class:`TalkieJournalHandler`, with
    ``journal_sender`` in place of ``systemd.journal.send`` if given); False -> plain
    ``LEVEL name: message`` lines on ``stream`` (stderr); None -> the journal when stderr is the
    journal stream systemd connected (:func:`journal_wanted`). Without systemd-python the journal
    falls back to stderr lines (which, under systemd, still reach the journal).
    """
    root = logging.getLogger(ROOT)
    for old in list(root.handlers):
        root.removeHandler(old)
    if journal is None:
        journal = journal_wanted(stderr=stream)
    handler: logging.Handler | None = None
    if journal:
        try:
            handler = TalkieJournalHandler(sender_function=journal_sender)
        except ImportError:
            handler = None
    if handler is None:
        handler = TerminalHandler(stream or sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(TreeRedaction(root))
    root.addHandler(handler)
    root.setLevel(LEVELS.get(level, logging.INFO))
    root.propagate = False
    # The SDK and websockets log at INFO/DEBUG things we already say in our own words.
    for noisy in ("google_genai", "websockets", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # What asyncio says of an exception in a callback or a task, and an exception nobody caught
    # (in the main thread or another), go out through the same handler and its redaction.
    aio = logging.getLogger("asyncio")
    for old in list(aio.handlers):
        aio.removeHandler(old)
    aio.addHandler(handler)
    aio.propagate = False
    sys.excepthook = _uncaught
    threading.excepthook = _uncaught_in_thread
    return root


def _uncaught(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
    logging.getLogger(ROOT).critical("uncaught exception", exc_info=(kind, exc, tb))


def _uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or issubclass(args.exc_type, SystemExit):
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger(ROOT).critical(
        "uncaught exception in thread %s",
        name,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def set_level(level: str) -> None:
    """Change the level of the ``talkie`` tree (a reload)."""
    logging.getLogger(ROOT).setLevel(LEVELS.get(level, logging.INFO))


class TreeRedaction(logging.Filter):
    """A handler filter applying the :class:`Redactor` s installed on ``logger`` to every record.

    A logger's own filters see only records logged on that very logger, not those propagated from
    its children (``talkie.live.link``); on the tree's handler, this covers them all. It also
    redacts string ``talkie_*`` fields (journal fields).
    """

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.logger = logger

    def filter(self, record: logging.LogRecord) -> bool:
        for redactor in self.logger.filters:
            if isinstance(redactor, Redactor) and redactor.secret:
                redactor.filter(record)
                for name, value in list(vars(record).items()):
                    if (
                        name.startswith("talkie_")
                        and isinstance(value, str)
                        and redactor.secret in value
                    ):
                        setattr(record, name, value.replace(redactor.secret, "***"))
        return True


# ---- a status line kept beneath the log lines

#: Back to column 0 and clear to the end of the line.
CLEAR_LINE = "\r\x1b[K"


class StatusLine(Protocol):
    """A line drawn at the bottom of a terminal (:class:`talkie.panel.keyboard.TerminalLed`)."""

    stream: Any  # where it is drawn
    lock: Any  # taken around each of its writes

    def drawn(self) -> str:
        """The line as written (ending at column 0), or "" when nothing is drawn."""
        ...


class TerminalHandler(logging.StreamHandler):
    """Plain ``LEVEL name: message`` lines on a stream; with a :class:`StatusLine` on the same
    terminal (:func:`keep_status_line`), each line first clears the status line, and draws it
    again beneath itself. Without one, or on anything but a terminal, just the plain lines."""

    status: StatusLine | None = None

    def emit(self, record: logging.LogRecord) -> None:
        status = self.status
        below = status.drawn() if status is not None else ""
        if not below:
            super().emit(record)
            return
        try:
            self.stream.write(f"{CLEAR_LINE}{self.format(record)}\n{below}")
            self.flush()
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - as logging.StreamHandler: never raise from a log call
            self.handleError(record)


def keep_status_line(line: StatusLine | None) -> bool:
    """Keep ``line`` beneath the ``talkie`` tree's log lines if both are on the same terminal
    (then they share one lock, so a redraw never cuts a log line); None forgets the one kept.
    Whether it is kept."""
    kept = False
    for handler in logging.getLogger(ROOT).handlers:
        if not isinstance(handler, TerminalHandler):
            continue
        handler.status = None
        if line is not None and same_terminal(handler.stream, line.stream):
            line.lock = handler.lock
            handler.status, kept = line, True
    return kept


def same_terminal(a: Any, b: Any) -> bool:
    """Whether the streams ``a`` and ``b`` are one terminal (the same one, or two descriptors of
    the same device: stderr and stdout on one pty)."""
    try:
        fds = (a.fileno(), b.fileno())
        if not all(os.isatty(fd) for fd in fds):
            return False
        first, second = (os.fstat(fd) for fd in fds)
    except (AttributeError, OSError, ValueError):
        return False
    return (first.st_dev, first.st_ino, first.st_rdev) == (
        second.st_dev,
        second.st_ino,
        second.st_rdev,
    )

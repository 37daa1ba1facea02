"""Logging set-up: one logger tree, ``talkie``; native journal entries under systemd, else plain
lines on stderr; and the filter that keeps the API key out of every line.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

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
        handler = logging.StreamHandler(stream or sys.stderr)
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

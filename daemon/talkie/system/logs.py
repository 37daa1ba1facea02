"""Logging set-up: one logger tree, ``talkie``; native journal entries under systemd, else plain
lines on stderr; and the filter that keeps the API key out of every line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, TextIO

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
    for handler in list(root.handlers):
        root.removeHandler(handler)
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
    return root


#: Third-party loggers that see the Live handshake; websockets.client logs request headers
#: (x-goog-api-key among them) at DEBUG.
HANDSHAKE_LOGGERS = (
    "websockets.client",
    "websockets",
    "google_genai",
    "google_genai.live",
    "google_genai._api_client",
    "httpx",
)


class Redactor(logging.Filter):
    """Rewrites a record so that ``secret`` never leaves it (message, arguments, traceback text)."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secret:
            return True
        message = record.getMessage()
        if self.secret in message:
            record.msg, record.args = message.replace(self.secret, "***"), None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            if self.secret in text:
                record.exc_info, record.exc_text = None, text.replace(self.secret, "***")
        return True


def guard_secret(secret: str, loggers: tuple[str, ...] = HANDSHAKE_LOGGERS) -> None:
    """Install a :class:`Redactor` for ``secret`` on the loggers that could see it (once each)."""
    for name in (*loggers, "talkie"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, Redactor) and f.secret == secret for f in logger.filters):
            logger.addFilter(Redactor(secret))


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

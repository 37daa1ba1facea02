"""Logging set-up: one logger tree, ``talkie``; plain lines on stderr.

(journald-native logging with structured fields arrives with the systemd integration.)
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}


def setup(level: str = "info", stream: TextIO | None = None) -> logging.Logger:
    """Route the ``talkie`` loggers to ``stream`` (stderr) at ``level``; return the root of the tree."""
    root = logging.getLogger("talkie")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(LEVELS.get(level, logging.INFO))
    root.propagate = False
    # The SDK and websockets log at INFO/DEBUG things we already say in our own words.
    for noisy in ("google_genai", "websockets", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return root


#: Third-party loggers that see the Live handshake; websockets.client logs request headers
#: (x-goog-api-key among them) at DEBUG.
HANDSHAKE_LOGGERS = ("websockets.client", "websockets", "google_genai", "google_genai.live",
                     "google_genai._api_client", "httpx")


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

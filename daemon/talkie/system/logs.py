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

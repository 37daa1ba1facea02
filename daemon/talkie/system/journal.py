"""Native journald logging: one journal entry per record, with talkie's structured fields.

Under systemd, talkie's stderr is already connected to the journal; :func:`journal_wanted` tells
when (``$JOURNAL_STREAM`` names stderr), and then :class:`TalkieJournalHandler` sends entries
natively instead, so each carries its priority and fields such as ``TALKIE_STATE=listening``::

    journalctl -u talkie TALKIE_TRANSCRIPT=heard -o cat
    journalctl -u talkie -p warning
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

IDENTIFIER = "talkie"
#: Record attributes with this prefix become journal fields (``talkie_state`` -> ``TALKIE_STATE``).
FIELD_PREFIX = "talkie_"
_FIELD_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")

#: The journal's sender: ``send(MESSAGE, **fields)``, like ``systemd.journal.send``.
Sender = Callable[..., Any]


def journal_wanted(env: Mapping[str, str] | None = None, stderr: Any = None) -> bool:
    """True when stderr is the journal stream systemd gave us (``$JOURNAL_STREAM`` = its dev:inode).

    ``stderr`` is a file object or a descriptor (default ``sys.stderr``); a redirected stderr (a
    terminal, a file, ``2>&1 | tee``) keeps plain lines even under systemd.
    """
    env = os.environ if env is None else env
    stderr = sys.stderr if stderr is None else stderr
    device, sep, inode = env.get("JOURNAL_STREAM", "").partition(":")
    if not sep:
        return False
    try:
        fd = stderr if isinstance(stderr, int) else stderr.fileno()
        st = os.fstat(fd)
        return (int(device), int(inode)) == (st.st_dev, st.st_ino)
    except (AttributeError, OSError, ValueError):  # no fileno (pytest capture, StringIO), closed
        return False


def priority(levelno: int) -> int:
    """syslog priority for a logging level: debug 7, info 6, warning 4, error 3, critical 2."""
    if levelno <= logging.DEBUG:
        return 7
    if levelno <= logging.INFO:
        return 6
    if levelno <= logging.WARNING:
        return 4
    if levelno <= logging.ERROR:
        return 3
    return 2


def talkie_fields(record: logging.LogRecord) -> dict[str, str | bytes]:
    """The record's ``talkie_*`` attributes as journal fields (None values left out)."""
    fields: dict[str, str | bytes] = {}
    for name, value in vars(record).items():
        if name.startswith(FIELD_PREFIX) and value is not None:
            key = name.upper()
            if _FIELD_NAME.fullmatch(key):
                fields[key] = value if isinstance(value, str | bytes) else str(value)
    return fields


class TalkieJournalHandler(logging.Handler):
    """A logging handler that writes native journal entries.

    Each entry has ``MESSAGE`` (the formatted message; a traceback, when there is one, follows it
    in the same message), ``PRIORITY``, ``SYSLOG_IDENTIFIER=talkie``, ``LOGGER``, ``THREAD_NAME``,
    ``CODE_FILE``/``CODE_LINE``/``CODE_FUNC`` and every ``talkie_*`` attribute of the record
    (``extra={"talkie_state": "listening"}`` -> ``TALKIE_STATE=listening``).

    ``sender_function`` defaults to ``systemd.journal.send`` (imported here, so constructing the
    handler raises ImportError when systemd-python is missing); tests pass their own. Filters on
    the handler run before formatting, so a redacting filter sees the record first.
    """

    def __init__(
        self,
        level: int = logging.NOTSET,
        sender_function: Sender | None = None,
        identifier: str = IDENTIFIER,
    ) -> None:
        super().__init__(level)
        if sender_function is None:
            from systemd import journal  # type: ignore[attr-defined]

            sender_function = journal.send
        self.sender = sender_function
        self.identifier = identifier
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            fields = talkie_fields(record)
            fields.update(
                PRIORITY=str(priority(record.levelno)),
                SYSLOG_IDENTIFIER=self.identifier,
                LOGGER=record.name,
                THREAD_NAME=record.threadName or "",
            )
            self.sender(
                message,
                CODE_FILE=record.pathname or "",
                CODE_LINE=int(record.lineno or 0),
                CODE_FUNC=record.funcName or "",
                **fields,
            )
        except Exception:  # noqa: BLE001  (logging's own error path: report on stderr, go on)
            self.handleError(record)

"""The Live conversation's resumption handle: the newest one, kept across reconnects and restarts.

The server sends ``sessionResumptionUpdate{newHandle, resumable}`` during a session; a new
connection set up with that handle continues the same conversation (the model keeps its context).
Handles stay valid about 2 hours after their session ends, so :class:`ResumeStore` forgets one
``max_age_s`` after it was saved.

Persisted as JSON ``{"handle": ..., "saved_at": <epoch seconds>}`` in ``resume.json`` in the state
directory, a :class:`~talkie.storage.StateFile` (written atomically, mode 0600), so a daemon
restart resumes the conversation. Nothing here raises: a missing, corrupt or unreadable file means
no handle, a file that cannot be written leaves the handle in memory only, each said once in the
log. A handle that is no longer good is harmless: the link falls back to a fresh session when the
server refuses it.

The handle is a bearer token for the conversation: it is never logged.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from talkie.storage import DEFAULT_STATE_DIR as DEFAULT_STATE_DIR
from talkie.storage import StateFile
from talkie.storage import default_state_dir as default_state_dir

log = logging.getLogger("talkie.live.resume")

FILE_NAME = "resume.json"
#: How long a handle stays usable after its session ended (the Live API says 2 hours).
MAX_AGE_S = 7200.0
#: A handle saved "in the future" by more than this (the clock was stepped back: a Raspberry Pi
#: has no real-time clock) has an unknown age and is not trusted.
CLOCK_SLACK_S = 300.0


class ResumeStore:
    """The newest resumable handle and when it was saved; persisted unless ``path`` is None."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        max_age_s: float = MAX_AGE_S,
        clock: Callable[[], float] = time.time,
        background: bool = False,
    ) -> None:
        self.max_age_s = max_age_s
        self.clock = clock
        #: Write in a thread of the store's own (the daemon's loop never waits for the disk);
        #: else at once, in the caller's thread.
        self.background = background
        self._handle: str | None = None
        self.saved_at: float | None = None
        self._lock = threading.Lock()  # the handle and its time change together, in order
        self._file = StateFile(
            path,
            what="the resumption state",
            unread="starting a fresh conversation",
            unsaved="a restart will start a fresh conversation",
            background=background,
            log=log,
            save=lambda kept: self._save(*kept),
        )
        self._load()

    @property
    def path(self) -> Path | None:
        return self._file.path

    @property
    def handle(self) -> str | None:
        """The handle to resume with, or None (none kept, or too old to be worth trying)."""
        if self._handle is None or self.saved_at is None:
            return None
        age = self.clock() - self.saved_at
        if age > self.max_age_s or age < -CLOCK_SLACK_S:
            return None
        return self._handle

    def update(self, handle: str | None, resumable: bool) -> None:
        """A ``sessionResumptionUpdate``: keep ``handle`` if the session is resumable there."""
        if not resumable or not handle:
            # mid-generation or mid-tool-call: the previous handle stays the newest usable one
            return
        with self._lock:
            self._handle, self.saved_at = handle, self.clock()
            self._file.write((self._handle, self.saved_at))

    def clear(self) -> None:
        """Forget the handle (a fresh conversation from the next session on) and delete the file."""
        with self._lock:
            self._handle = self.saved_at = None
            self._file.write((None, None))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until what is kept is on disk (at most ``timeout`` s); whether it is."""
        return self._file.flush(timeout)

    def _save(self, handle: str | None, saved_at: float | None) -> bool:
        """Write the handle (None: delete the file) in this thread; whether it is on disk. The
        file's writer calls this with the newest handle."""
        doc = None if handle is None else {"handle": handle, "saved_at": saved_at}
        done = self._file.save_now(doc)
        if done and handle is not None:
            log.debug("saved a resumption handle")
        return done

    def _load(self) -> None:
        data = self._file.read()
        if data is None:
            return
        handle = data.get("handle") if isinstance(data, dict) else None
        saved_at = data.get("saved_at") if isinstance(data, dict) else None
        if (
            not isinstance(handle, str)
            or not handle
            or isinstance(saved_at, bool)
            or not isinstance(saved_at, (int, float))
            or not math.isfinite(saved_at)
        ):
            self._file.unusable("not a resumption handle")
            return
        self._handle, self.saved_at = handle, float(saved_at)

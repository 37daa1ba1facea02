"""The Live conversation's resumption handle: the newest one, kept across reconnects and restarts.

The server sends ``sessionResumptionUpdate{newHandle, resumable}`` during a session; a new
connection set up with that handle continues the same conversation (the model keeps its context).
Handles stay valid about 2 hours after their session ends, so :class:`ResumeStore` forgets one
``max_age_s`` after it was saved.

Persisted as JSON ``{"handle": ..., "saved_at": <epoch seconds>}`` in the state directory
(``$STATE_DIRECTORY``, systemd's ``StateDirectory=``; ``/var/lib/talkie`` otherwise), written
atomically (a temporary file in the same directory, then ``os.replace``) with mode 0600, so a daemon
restart resumes the conversation. Nothing here raises: a missing, corrupt or unreadable file means
no handle, a file that cannot be written leaves the handle in memory only, each said once in the
log. A handle that is no longer good is harmless: the link falls back to a fresh session when the
server refuses it.

The handle is a bearer token for the conversation: it is never logged.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

log = logging.getLogger("talkie.live.resume")

DEFAULT_STATE_DIR = "/var/lib/talkie"
FILE_NAME = "resume.json"
#: How long a handle stays usable after its session ended (the Live API says 2 hours).
MAX_AGE_S = 7200.0
#: A handle saved "in the future" by more than this (the clock was stepped back: a Raspberry Pi
#: has no real-time clock) has an unknown age and is not trusted.
CLOCK_SLACK_S = 300.0


def default_state_dir(env: Mapping[str, str] = os.environ) -> str:
    """The first directory of ``$STATE_DIRECTORY`` (colon-separated), else ``/var/lib/talkie``."""
    first = (env.get("STATE_DIRECTORY") or "").split(":", 1)[0].strip()
    return first or DEFAULT_STATE_DIR


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
        self.path = Path(path) if path is not None else None
        self.max_age_s = max_age_s
        self.clock = clock
        #: Write in a thread of the store's own (the daemon's loop never waits for the disk);
        #: else at once, in the caller's thread.
        self.background = background
        self._handle: str | None = None
        self.saved_at: float | None = None
        self._write_failed = False  # warn once per run of failures, not at every update
        self._cond = threading.Condition()
        self._wanted = self._written = 0  # versions of the state: asked for, on disk
        self._writer: threading.Thread | None = None
        self._load()

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
        with self._cond:
            self._handle, self.saved_at = handle, self.clock()
        self._persist()

    def clear(self) -> None:
        """Forget the handle (a fresh conversation from the next session on) and delete the file."""
        with self._cond:
            self._handle = self.saved_at = None
        self._persist()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until what is kept is on disk (at most ``timeout`` s); whether it is."""
        with self._cond:
            return self._cond.wait_for(lambda: self._written == self._wanted, timeout)

    def _persist(self) -> None:
        if self.path is None:
            return
        if not self.background:
            self._write(self._handle, self.saved_at)
            return
        with self._cond:
            self._wanted += 1
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_newest, name="talkie-resume", daemon=True
                )
                self._writer.start()
            self._cond.notify_all()

    def _write_newest(self) -> None:
        """The writer thread: the newest state, each time it changes (older ones are skipped)."""
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._written != self._wanted)
                version, handle, saved_at = self._wanted, self._handle, self.saved_at
            self._write(handle, saved_at)
            with self._cond:
                self._written = version
                self._cond.notify_all()

    def _write(self, handle: str | None, saved_at: float | None) -> None:
        if handle is None:
            self._delete()
        elif self._save(handle, saved_at):
            log.debug("saved a resumption handle")

    def _delete(self) -> None:
        assert self.path is not None
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot delete the resumption state %s (%s)", self.path, _why(exc))

    # ---- persistence

    def _load(self) -> None:
        if self.path is None:
            return
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError) as exc:
            log.warning(
                "cannot read the resumption state %s (%s): starting a fresh conversation",
                self.path,
                _why(exc),
            )
            return
        try:
            data = json.loads(text)
            handle, saved_at = data["handle"], data["saved_at"]
            if (
                not isinstance(handle, str)
                or not handle
                or isinstance(saved_at, bool)
                or not isinstance(saved_at, (int, float))
            ):
                raise TypeError("wrong types")
        except (ValueError, TypeError, KeyError):
            log.warning(
                "the resumption state %s is corrupt: starting a fresh conversation", self.path
            )
            return
        self._handle, self.saved_at = handle, float(saved_at)

    def _save(self, handle: str, saved_at: float | None) -> bool:
        if self.path is None:
            return False
        text = json.dumps({"handle": handle, "saved_at": saved_at})
        tmp: str | None = None
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
            )  # mode 0600
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, self.path)
            tmp = None
        except OSError as exc:
            if not self._write_failed:
                log.warning(
                    "cannot save the resumption state in %s (%s): a restart will start a "
                    "fresh conversation",
                    self.path,
                    _why(exc),
                )
            self._write_failed = True
            return False
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
        self._write_failed = False
        return True


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or type(exc).__name__

"""The small JSON files the daemon keeps in its state directory: one mechanism for all of them.

Each is a :class:`StateFile` (the Live conversation's resumption handle, the timers and alarms):
read once at start, a regular file of at most ``limit`` bytes holding UTF-8 JSON, and written
whole and atomically: a temporary file in the same folder (mode 0600), flushed to disk, renamed
over the old one, the folder flushed too, so a power cut leaves the old file or the new one, never
part of either. With ``background`` a writer thread of the file's own does the writing (the
daemon's loop never waits for an SD card), always of the newest data: what was asked for while it
was busy is skipped.

Nothing here raises for what the disk does: a missing file means nothing kept, silently; one that
cannot be read or is not what it should be means nothing kept, one warning in words; a file that
cannot be written leaves the data in memory only, one warning per run of failures. Never a
traceback: these are states of the device, not bugs.

The state directory is ``$STATE_DIRECTORY`` (systemd's ``StateDirectory=``), else
``/var/lib/talkie`` (:func:`default_state_dir`).
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
from typing import Any

from talkie.config.files import read_file
from talkie.config.text import why

DEFAULT_STATE_DIR = "/var/lib/talkie"
#: The most a state file may hold unless its store says otherwise.
READ_MAX = 64 * 1024

_log = logging.getLogger("talkie.storage")


def default_state_dir(env: Mapping[str, str] = os.environ) -> str:
    """The first directory of ``$STATE_DIRECTORY`` (colon-separated), else ``/var/lib/talkie``."""
    first = (env.get("STATE_DIRECTORY") or "").split(":", 1)[0].strip()
    return first or DEFAULT_STATE_DIR


class StateFile:
    """One small JSON document in the state directory, at ``path`` (None: nothing on disk).

    ``what`` names the content in the log ("the timers and alarms"); ``unread`` says what a file
    that cannot be read means ("starting with none"), ``unsaved`` what one that cannot be written
    means ("a restart will forget them"). ``save`` is what writing the newest data does, in the
    writer thread or at once: :meth:`save_now` unless a store wraps it (to log each save, say).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        what: str,
        unread: str = "starting without it",
        unsaved: str = "a restart will not find it",
        limit: int = READ_MAX,
        background: bool = True,
        log: logging.Logger | None = None,
        save: Callable[[Any], object] | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.what, self.unread, self.unsaved = what, unread, unsaved
        self.limit = limit
        self.background = background
        self.log = log or _log
        self._save = save or self.save_now
        self._cond = threading.Condition()
        self._io = threading.Lock()  # one write at a time, so the newest data lands last
        self._data: Any = None
        self._wanted = self._written = 0  # versions of the data: asked for, written (or failed)
        self._writer: threading.Thread | None = None
        self._closed = False
        self._failing = False  # a failed write was warned about: not again until one works

    # ---- reading

    def read(self) -> Any | None:
        """The file's JSON, or None: there is no file (silently), or it is unusable (a warning)."""
        if self.path is None:
            return None
        try:
            raw = read_file(self.path, self.limit)  # a FIFO or a device is refused, not waited on
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.unusable(why(exc))
            return None
        try:
            return json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            self.unusable("not UTF-8 text")
        except RecursionError:
            self.unusable("nested too deeply")
        except ValueError:
            self.unusable("not valid JSON")
        return None

    def unusable(self, reason: str) -> None:
        """Warn that the file cannot be used (``reason``, in words), e.g. its store's own check."""
        self.log.warning("cannot read %s in %s (%s): %s", self.what, self.path, reason, self.unread)

    # ---- writing

    def write(self, data: Any | None) -> None:
        """Keep ``data`` in the file (None: delete it): with ``background`` in the writer thread
        (this returns at once, and the newest data wins), else (or once closed) at once."""
        with self._cond:
            self._data = data
            self._wanted += 1
            if self.path is None:
                self._written = self._wanted
                return
            if self.background and not self._closed:
                if self._writer is None:
                    self._writer = threading.Thread(
                        target=self._run, name=f"talkie-{self.path.stem}", daemon=True
                    )
                    self._writer.start()
                self._cond.notify_all()
                return
        self._drain()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until nothing is left to write (at most ``timeout`` s); whether nothing is.

        A write that failed is not left: the log said so, and the data lives in memory only.
        """
        with self._cond:
            return self._cond.wait_for(lambda: self._written >= self._wanted, timeout)

    def close(self, timeout: float | None = 2.0) -> bool:
        """Write what is pending and end the writer thread (at most ``timeout`` s in all); whether
        nothing is left to write. Later writes are made at once."""
        deadline = None if timeout is None else time.monotonic() + timeout
        done = self.flush(timeout)
        with self._cond:
            self._closed = True
            writer, self._writer = self._writer, None
            self._cond.notify_all()
        if writer is not None and writer is not threading.current_thread():
            writer.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return done

    def save_now(self, data: Any | None) -> bool:
        """Write ``data`` (None: delete the file) in this thread; whether it is on disk.

        A failure is one warning per run of them. ``data`` that is not JSON is a bug: it raises.
        """
        if self.path is None:
            return False
        text = None if data is None else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        try:
            if text is None:
                self.path.unlink(missing_ok=True)
            else:
                replace_text(self.path, text)
        except OSError as exc:
            if not self._failing:
                if text is None:
                    self.log.warning("cannot delete %s in %s (%s)", self.what, self.path, why(exc))
                else:
                    self.log.warning(
                        "cannot save %s in %s (%s): %s",
                        self.what,
                        self.path,
                        why(exc),
                        self.unsaved,
                    )
            self._failing = True
            return False
        _sync_dir(self.path.parent)
        if self._failing:
            self.log.info("writing %s in %s works again", self.what, self.path)
        self._failing = False
        return True

    def _drain(self, *, in_writer: bool = False) -> None:
        """Write the newest data unless that is done: the writer thread's step, or the caller's."""
        with self._io:
            with self._cond:
                version, data = self._wanted, self._data
                if version <= self._written:
                    return
            try:
                self._save(data)
            except Exception:
                if not in_writer:
                    raise
                # a bug (data that is not JSON, a failing hook): said, and the thread lives on
                self.log.exception("writing %s in %s failed", self.what, self.path)
            finally:
                with self._cond:
                    self._written = max(self._written, version)
                    self._cond.notify_all()

    def _run(self) -> None:
        """The writer thread: the newest data, each time it changes, until closed."""
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._written < self._wanted or self._closed)
                if self._written >= self._wanted:
                    return  # closed, and nothing left to write
            self._drain(in_writer=True)


def replace_text(path: Path, text: str) -> None:
    """``path`` holds ``text`` now, or (OSError) still what it held: written beside it, fsynced,
    renamed over it (a rename is atomic on ext4 and as good as it gets on FAT)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _sync_dir(folder: Path) -> None:
    """The rename or deletion on disk too (a power cut right after it keeps it)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

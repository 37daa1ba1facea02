"""The shell's care of the audio devices: open both streams, notice when they fail or stall, reopen
them, say in the log what was lost, and tell the watchdog whether the audio path is alive.

Part of the imperative shell (:mod:`talkie.shell.app`): it reports through ``emit`` with
state-machine events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from talkie.core import machine as m

log = logging.getLogger("talkie")

#: How often a failed audio device is tried again.
RETRY_S = 5.0
#: How long an open stream may go without a callback before it counts as dead.
STALL_S = 3.0

#: Counters that mean audio was lost; each increase is logged (once per check).
COUNTERS = (
    ("capture", "overflows", "microphone blocks dropped (event loop too slow)"),
    ("capture", "xruns", "microphone overruns reported by the device"),
    ("playback", "overflows", "speaker samples dropped (playback buffer full)"),
    ("playback", "underruns", "speaker underruns (audio arrived too slowly)"),
)


class AudioDevices:
    """Capture and playback, opened and watched together."""

    def __init__(
        self,
        capture: Any,
        playback: Any,
        emit: Callable[[m.Event], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capture = capture
        self.playback = playback
        self.emit = emit
        self.clock = clock
        self.ok = False
        #: Why the streams died while open (a stall), until they are reopened; "" otherwise.
        #: A device that was never there is not a stall: it is an error the user fixes, and a
        #: restart would not help, so it does not stop the watchdog.
        self.dead = ""
        self._seen: dict[tuple[str, str], int] = {}

    def open(self) -> bool:
        """Start both streams; on failure report it (the machine logs it once) and close them."""
        from talkie.audio.devices import AudioError

        try:
            self.playback.start()
            self.capture.start()
        except AudioError as exc:
            self.close()
            self.ok = False
            self.emit(m.AudioFailed(str(exc)))
            return False
        self.ok = True
        return True

    def close(self) -> None:
        for stream in (self.capture, self.playback):
            try:
                stream.stop()
            except Exception:  # closing a broken stream must not stop the daemon
                log.debug("closing an audio stream failed", exc_info=True)

    def stalled(self) -> str:
        """Why the open streams count as dead ("" when they are alive or deliberately closed)."""
        if not self.ok:
            return ""
        now = self.clock()
        for name, stream in (("microphone", self.capture), ("speaker", self.playback)):
            last = getattr(stream, "last_callback", 0.0) or 0.0
            if last and now - last > STALL_S:
                return f"the {name} stream stopped ({now - last:.0f} s without audio)"
        return ""

    def alive(self) -> tuple[bool, str]:
        """For the watchdog: a stream that is open but silent is a reason to be restarted."""
        reason = self.dead or self.stalled()
        return (not reason, reason)

    async def watch(self) -> None:
        """Reopen failed devices; turn a stalled stream into AudioFailed; log lost audio."""
        while True:
            await asyncio.sleep(RETRY_S if not self.ok else STALL_S)
            if not self.ok:
                if self.open():
                    self.dead = ""
                    self.emit(m.AudioRestored())
                continue
            self.report_counters()
            reason = self.stalled()
            if reason:
                self.close()
                self.ok = False
                self.dead = reason
                self.emit(m.AudioFailed(reason))

    def report_counters(self) -> None:
        for adapter, counter, words in COUNTERS:
            value = getattr(getattr(self, adapter), counter, 0)
            seen = self._seen.get((adapter, counter), 0)
            if isinstance(value, int) and value > seen:
                self._seen[(adapter, counter)] = value
                log.warning("%s: %d so far", words, value)

    async def stop(self, drain_s: float) -> None:
        """At shutdown: cut the answer short (as a person expects) and close both streams."""
        if self.ok:
            self.playback.flush()
            try:
                await asyncio.wait_for(asyncio.to_thread(self.playback.stop), drain_s)
            except Exception:
                log.debug("playback did not stop cleanly", exc_info=True)
        try:
            self.capture.stop()
        except Exception:
            log.debug("capture did not stop cleanly", exc_info=True)
        self.ok = False

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

from talkie.core import machine as m
from talkie.core.words import one_line
from talkie.shell import ports

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


def mic_stream(capture: ports.Capture | None, now: float | None = None) -> str:
    """``ctl status``'s ``microphone_stream``: "delivering" (a block within STALL_S), "stalled"
    or "none" (no microphone open). The A/B update's health check waits for "delivering"."""
    if capture is None or not capture.last_callback:
        return "none"
    age = (time.monotonic() if now is None else now) - capture.last_callback
    return "delivering" if age < STALL_S else "stalled"


class AudioDevices:
    """Capture and playback, opened and watched together."""

    def __init__(
        self,
        capture: ports.Capture,
        playback: ports.Playback,
        emit: Callable[[m.Event], None],
        clock: Callable[[], float] = time.monotonic,
        *,
        retry_s: float = RETRY_S,
        stall_s: float = STALL_S,
    ) -> None:
        self.capture = capture
        self.playback = playback
        self.emit = emit
        self.clock = clock
        self.retry_s, self.stall_s = retry_s, stall_s
        self.ok = False
        #: When the streams were last opened (a stream that never calls back counts from here).
        self.opened_at = 0.0
        #: Why the streams died while open (a stall), until they are reopened; "" otherwise.
        #: A device that was never there is not a stall: it is an error the user fixes, and a
        #: restart would not help, so it does not stop the watchdog.
        self.dead = ""
        self._seen: dict[tuple[str, str], int] = {}

    def open(self) -> bool:
        """Start both streams; on failure report it (the machine logs it once) and close them.

        Blocking (PortAudio opens devices synchronously): at start-up only, before the loop
        serves; later, :meth:`reopen` does it in a worker thread."""
        failure = self._start()
        if failure:
            self.emit(m.AudioFailed(one_line(failure)))
        return not failure

    def _start(self) -> str:
        """Start both streams (any thread); why they could not be, or ""."""
        from talkie.audio.devices import AudioError

        try:
            self.playback.start()
            self.capture.start()
        except AudioError as exc:
            self.close()
            self.ok = False
            return str(exc)
        self.opened_at = self.clock()
        self.ok = True
        return ""

    def close(self) -> None:
        """Stop both streams (blocking: playback lets what is queued play out first)."""
        for stream in (self.capture, self.playback):
            try:
                stream.stop()
            except Exception:  # closing a broken stream must not stop the daemon
                log.debug("closing an audio stream failed", exc_info=True)

    async def reopen(self) -> bool:
        """Close and open both streams again (new devices), in a worker thread: the loop goes
        on meanwhile. A failure is reported like any other (AudioFailed, retried)."""
        self.ok = False
        await asyncio.to_thread(self.close)
        failure = await asyncio.to_thread(self._start)
        if failure:
            self.emit(m.AudioFailed(one_line(failure)))
        else:
            self.dead = ""
            self.emit(m.AudioRestored())  # an error the new devices fix is over
        return not failure

    def stalled(self) -> str:
        """Why the open streams count as dead ("" when they are alive or deliberately closed)."""
        if not self.ok:
            return ""
        now = self.clock()
        for name, stream in (("microphone", self.capture), ("speaker", self.playback)):
            last = stream.last_callback or 0.0
            if last and now - last > self.stall_s:
                return f"the {name} stream stopped ({now - last:.0f} s without audio)"
            if not last and now - self.opened_at > self.stall_s:  # never called back at all
                waited = now - self.opened_at
                return f"the {name} stream never started ({waited:.0f} s without audio)"
        return ""

    def alive(self) -> tuple[bool, str]:
        """For the watchdog: a stream that is open but silent is a reason to be restarted."""
        reason = self.dead or self.stalled()
        return (not reason, reason)

    async def watch(self) -> None:
        """Reopen failed devices; turn a stalled stream into AudioFailed; log lost audio. What
        blocks (PortAudio's open and close) runs in a worker thread."""
        while True:
            await asyncio.sleep(self.retry_s if not self.ok else self.stall_s)
            if not self.ok:
                failure = await asyncio.to_thread(self._start)
                if failure:
                    self.emit(m.AudioFailed(one_line(failure)))  # said once: the machine keys it
                else:
                    self.dead = ""
                    self.emit(m.AudioRestored())
                continue
            self.report_counters()
            reason = self.stalled()
            if reason:
                self.ok = False
                self.dead = reason
                self.emit(m.AudioFailed(reason))
                await asyncio.to_thread(self.close)

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

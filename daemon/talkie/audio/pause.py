"""The speaker's stream paused while nothing plays (:class:`talkie.audio.playback.Playback`).

An output stream playing silence costs as much CPU as the microphone's (measured on PulseAudio:
2.8 % of a core against 1.4 %), and starting a stopped stream again takes under a millisecond to
its first callback. So ``idle_pause_s`` after the last sound the stream is stopped, and the next
``play`` starts it again: the answer's first sample is as soon at the DAC. Loop thread only; the
stream's start and abort under the playback's lock (a flush's restart runs in a worker).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("talkie.audio")

#: A paused stream starts when the queue holds its output latency and this much more.
START_MARGIN_S = 0.02


class IdlePause:
    """Pauses ``playback``'s stream when it has been idle long enough, resumes it on demand."""

    def __init__(self, playback: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.playback = playback
        self._loop = loop
        self._handle: asyncio.TimerHandle | None = None

    def _cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def soon(self) -> None:
        """Pause the stream ``idle_pause_s`` from now, unless something plays meanwhile."""
        pb = self.playback
        self._cancel()
        if pb.idle_pause_s is not None and pb._stream is not None:
            self._handle = self._loop.call_later(pb.idle_pause_s, self.pause)

    def pause(self) -> None:
        pb = self.playback
        self._handle = None
        stream = pb._stream
        cutting = pb._cutting
        if (
            stream is None
            or pb.paused
            or pb.busy
            or pb._pending_finish is not None
            or (cutting is not None and not cutting.done())
        ):
            return
        with pb._lock:
            try:
                stream.abort(ignore_errors=True)  # only silence is in it
            except Exception:
                log.debug("speaker: pausing the output stream failed", exc_info=True)
                return
            pb.paused = True
            pb.pauses += 1
            if pb._ring is not None:
                pb._ring.release()  # what a cut-short answer left in it
            pb.dac_stamp = None  # the next block's time starts the echo reference afresh

    def wake(self, buffered: int) -> None:
        """Audio was queued (``buffered`` samples at the device's rate): a paused stream starts
        once there is enough to fill what PortAudio asks for at a start (its output latency and a
        period more), so the answer's first sound is not cut by a dry buffer."""
        pb = self.playback
        if pb.paused and buffered < pb.device_rate * (pb.latency + START_MARGIN_S):
            self._cancel()  # not yet: but no pause is due either
        else:
            self.resume()

    def resume(self) -> None:
        pb = self.playback
        self._cancel()
        if not pb.paused:
            return
        with pb._lock:
            pb.paused = False
            stream = pb._stream
            if stream is None:
                return
            try:
                stream.start()
            except Exception as exc:  # noqa: BLE001 - the shell's watch reopens a dead stream
                pb._last_callback = 0.0
                log.warning("speaker: the output stream did not start again (%s)", exc)

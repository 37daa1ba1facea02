"""Speaker playback: a PortAudio output stream fed from a preallocated jitter ring, paused while
nothing plays (:mod:`talkie.audio.pause`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from talkie.audio.capture import apply_gain
from talkie.audio.devices import AudioError, DeviceInfo, find_device, import_sounddevice
from talkie.audio.pause import IdlePause
from talkie.audio.ring import Ring

if TYPE_CHECKING:
    from talkie.audio.resample import Resampler

log = logging.getLogger("talkie.audio")

STOP_TIMEOUT_S = 2.0
#: Seconds of played audio kept for the echo canceller's reference.
HISTORY_S = 2.0
# Output latency asked of PortAudio.  "low" (~8 ms) glitches with a Python callback as soon as the
# loop thread holds the GIL for a few ms (measured: every run with 30 ms bursts of Python work in
# the loop); 50 ms never did, and only adds 50 ms to a barge-in flush.
OUTPUT_LATENCY_S = 0.05
#: The stream is paused this long after the last sound (None: never).
IDLE_PAUSE_S = 2.0


class Playback:
    """Plays s16le mono ``rate`` Hz audio on ``device`` through a jitter buffer.

    The output stream stays open; it plays silence while the buffer is empty and is paused
    ``idle_pause_s`` after the last sound (:mod:`talkie.audio.pause`).  All public methods
    are called from the loop thread; the PortAudio callback only copies from the ring and reaches
    the loop through ``loop.call_soon_threadsafe``.

    * :meth:`play` appends audio (``volume`` applied here; resampled if the device cannot run at
      ``rate``).  Audio beyond ``buffer_s`` is dropped and counted in ``overflows`` (samples).
    * :meth:`flush` drops everything not yet handed to PortAudio, within one callback period, and
      cancels a pending :meth:`finish`.
    * :meth:`finish` ends a turn: ``on_drained()`` is called once in the loop when the last sample
      written so far has reached the DAC (output latency included).

    Counters: ``underruns`` (times the buffer ran dry in the middle of a turn, i.e. after
    :meth:`play` and before :meth:`finish`), ``overflows``, ``played_samples`` (samples handed to
    PortAudio, at ``device_rate``), ``xruns`` (callbacks with a status flag).  ``last_callback`` is
    the ``time.monotonic()`` of the latest callback; ``latency`` the stream's output latency (s),
    ``latency=`` what is asked of PortAudio (seconds or "low"/"high"; see OUTPUT_LATENCY_S).
    """

    def __init__(
        self,
        device: str | int,
        *,
        loop: asyncio.AbstractEventLoop,
        on_drained: Callable[[], None],
        rate: int = 24000,
        volume: float = 1.0,
        buffer_s: float = 120.0,
        latency: float | str = OUTPUT_LATENCY_S,
        idle_pause_s: float | None = IDLE_PAUSE_S,
    ) -> None:
        if rate <= 0 or buffer_s <= 0:
            raise ValueError("rate and buffer_s must be > 0")
        self.device = device
        self.rate = int(rate)
        self.volume = float(volume)
        self.buffer_s = float(buffer_s)
        self.requested_latency = latency
        self.device_info: DeviceInfo | None = None
        self.device_rate = self.rate
        self.latency = 0.0
        self.underruns = 0
        self.xruns = 0
        self.played_samples = 0
        self._last_callback = 0.0
        self.idle_pause_s = idle_pause_s
        #: The stream is stopped while nothing plays (see the module's words); ``pauses`` counts.
        self.paused = False
        self.pauses = 0
        self._idle = IdlePause(self, loop)
        self.max_block = 0  # largest callback block seen (frames): the flush granularity
        #: The last HISTORY_S of what was handed to PortAudio (device rate), for the echo
        #: canceller's reference (a history :class:`Ring`, None before the first start), and
        #: ``dac_stamp``: (its position at the latest block's start, that block's DAC time).
        self.history: Ring | None = None
        self.dac_stamp: tuple[int, float] | None = None
        #: Times a flush cut what PortAudio already held (stream aborted and restarted), and times
        #: the restart failed (the first said in the journal).
        self.cuts = 0
        self.cut_failures = 0
        self._cutting: concurrent.futures.Future | None = None
        self._lock = threading.Lock()  # stream start/abort/close: loop thread vs the cut's worker
        self._loop = loop
        self._on_drained = on_drained
        self._stream = None
        self._ring: Ring | None = None
        self._resampler: Resampler | None = None
        self._odd = b""
        # Loop-owned state read by the callback.
        self._playing = False  # a turn is in progress (play() seen, finish()/flush() not yet)
        self._finish_req = 0  # generation of the latest finish() request
        self._finish_at = 0  # ring write position the latest finish() waits for
        # Loop-only state.
        self._finish_gen = 0
        self._pending_finish: int | None = None
        self._drain_handle: asyncio.TimerHandle | None = None
        # Callback-owned state.
        self._finish_done = 0
        self._dry = False

    @property
    def overflows(self) -> int:
        """Samples dropped because the jitter buffer was full."""
        return self._ring.overflows if self._ring is not None else 0

    @property
    def buffered_samples(self) -> int:
        """Samples waiting in the jitter buffer (at ``device_rate``)."""
        return self._ring.available() if self._ring is not None else 0

    @property
    def busy(self) -> bool:
        """A turn is playing: audio was queued and has not all been handed to PortAudio."""
        return self._playing or self.buffered_samples > 0

    @property
    def active(self) -> bool:
        """True while the stream is open and running."""
        return self._stream is not None and bool(self._stream.active)

    @property
    def last_callback(self) -> float:
        """The ``time.monotonic()`` of the latest callback (now, while paused: a paused stream
        is not a stalled one)."""
        return time.monotonic() if self.paused else self._last_callback

    def start(self) -> None:
        """Open and start the output stream (raises AudioError if the device cannot be opened)."""
        if self._stream is not None:
            return
        sd = import_sounddevice()
        info = find_device(self.device, "output")
        self.device_info = info
        device_rate = self.rate
        try:
            sd.check_output_settings(info.index, channels=1, dtype="int16", samplerate=self.rate)
        except Exception:  # noqa: BLE001 - not at this rate: PortAudio says so in many ways
            device_rate = int(round(info.default_rate))
            if device_rate <= 0:
                raise AudioError(
                    f"output device {info.name!r} cannot play at {self.rate} Hz"
                ) from None
        self.device_rate = device_rate
        self._resampler = None
        if device_rate != self.rate:
            from talkie.audio.resample import Resampler

            self._resampler = Resampler(self.rate, device_rate)
        if self._ring is None or self._ring.capacity != int(device_rate * self.buffer_s):
            self._ring = Ring(int(device_rate * self.buffer_s))
        if self.history is None or self.history.capacity != int(device_rate * HISTORY_S):
            self.history = Ring(int(device_rate * HISTORY_S))
        self.dac_stamp = None
        try:
            stream = sd.OutputStream(
                device=info.index,
                samplerate=device_rate,
                channels=1,
                dtype="int16",
                latency=self.requested_latency,
                callback=self._callback,
            )
        except Exception as exc:
            raise AudioError(
                f"cannot open output device {info.name!r} at {device_rate} Hz: {exc}"
            ) from exc
        # under the lock: a flush's restart (_cut, in a worker) never meets a stream half started
        with self._lock:
            self.latency = float(stream.latency)
            self._stream = stream
            try:
                stream.start()
            except Exception as exc:
                self._stream = None
                stream.close(ignore_errors=True)
                raise AudioError(f"cannot start output device {info.name!r}: {exc}") from exc
            self.paused = False
        try:  # from the loop (start-up) or a worker (a reopen): the loop's timer either way
            self._loop.call_soon_threadsafe(self._idle.soon)
        except RuntimeError:  # loop closed
            pass

    def play(self, pcm: bytes, gain: float | None = None) -> None:
        """Queue s16le mono audio at ``rate`` Hz (``volume`` applied, or ``gain`` instead: the
        ring of an alarm has its own; resampled if needed)."""

        if self._ring is None:
            raise AudioError("playback is not started")
        if self._odd:
            pcm = self._odd + pcm
            self._odd = b""
        if len(pcm) % 2:
            self._odd = pcm[-1:]
            pcm = pcm[:-1]
        if not pcm:
            return
        samples = np.frombuffer(pcm, dtype=np.int16)
        level = self.volume if gain is None else gain
        if level != 1.0:
            samples = apply_gain(samples, max(0.0, level))
        if self._resampler is not None:
            samples = self._resampler.process(samples)
        self._ring.write(samples)
        self._playing = True  # after the write: the callback must not see an empty "turn"
        self._idle.wake(self._ring.available())

    def flush(self) -> None:
        """Silence now: drop all queued audio and cancel a pending finish.

        The callback plays silence from its next period on; if audio was playing, what PortAudio
        and the device already hold (the output latency) is cut too: the stream is aborted and
        restarted in a worker thread, so the speaker is silent within one callback period."""
        was_playing = self._playing or (self._ring is not None and self._ring.available() > 0)
        self._odd = b""
        self._playing = False
        if self._resampler is not None:
            self._resampler.reset()
        if self._ring is not None:
            self._ring.flush()
        self._cancel_finish()
        if (
            was_playing
            and self._stream is not None
            and (self._cutting is None or self._cutting.done())
        ):
            self._cutting = self._loop.run_in_executor(None, self._cut)

    def _cut(self) -> None:
        """Worker thread: abort the stream (drops what the device holds) and start it again."""
        with self._lock:
            stream = self._stream
            if stream is None:
                return
            try:
                stream.abort(ignore_errors=True)
                stream.start()
                self.cuts += 1
            except Exception as exc:  # noqa: BLE001 - a stream that will not restart stalls:
                # the shell's watch sees no callbacks and reopens the device; said once
                self.cut_failures += 1
                if self.cut_failures == 1:
                    log.warning(
                        "speaker: the output stream did not restart after a flush (%s); "
                        "it is reopened if it stays silent",
                        exc,
                    )
                else:
                    log.debug("speaker: the output stream did not restart: %s", exc)

    def finish(self) -> None:
        """End of turn: call ``on_drained()`` once when everything queued so far has been heard."""
        if self._resampler is not None and self._ring is not None:
            self._ring.write(self._resampler.drain())
        self._odd = b""
        self._playing = False
        self._cancel_finish()
        self._finish_gen += 1
        gen = self._finish_gen
        self._pending_finish = gen
        if self._ring is not None and self._ring.available():
            self._idle.resume()  # a sound shorter than the start's buffer: it plays now
        stream = self._stream  # once: a reopen in a worker thread may change it meanwhile
        if self._ring is None or stream is None or not stream.active:
            self._loop.call_soon(self._drained, gen)
            return
        self._finish_at = self._ring.written
        self._finish_req = gen  # publish last: the callback reads _finish_req first

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Let queued audio play out (at most ``timeout`` seconds; blocks the caller), then close.

        A pending finish is dropped (``on_drained`` is not called after stop)."""
        stream, ring = self._stream, self._ring
        self._cancel_finish()
        if stream is None:
            return
        if self._resampler is not None and ring is not None:
            ring.write(self._resampler.drain())
        deadline = time.monotonic() + max(0.0, timeout)
        if ring is not None and ring.available() > 0 and stream.active:
            while ring.available() > 0 and time.monotonic() < deadline:
                time.sleep(0.005)
            # The last samples are in PortAudio's / the device's buffer: let them reach the DAC.
            time.sleep(max(0.0, min(self.latency + 0.02, deadline - time.monotonic())))
        with self._lock:
            self._stream = None
            self._playing = False
            self.paused = False
            try:
                stream.abort(ignore_errors=True)
            finally:
                stream.close(ignore_errors=True)
        if ring is not None:
            ring.flush()
        self.dac_stamp = None

    # -- loop thread ---------------------------------------------------------------------------
    def _cancel_finish(self) -> None:
        self._pending_finish = None
        if self._drain_handle is not None:
            self._drain_handle.cancel()
            self._drain_handle = None

    def _finish_reached(self, gen: int, delay: float) -> None:
        if gen != self._pending_finish:
            return
        self._drain_handle = self._loop.call_later(max(0.0, delay), self._drained, gen)

    def _drained(self, gen: int) -> None:
        if gen != self._pending_finish:
            return
        self._pending_finish = None
        self._drain_handle = None
        if self._ring is not None:
            self._ring.release()  # the answer's pages back to the system, until the next one
        self._idle.soon()
        self._on_drained()

    # -- PortAudio thread ----------------------------------------------------------------------
    def _callback(self, outdata, frames, time_info, status) -> None:
        self._last_callback = time.monotonic()
        if status:
            self.xruns += 1
        if frames > self.max_block:
            self.max_block = frames
        ring = self._ring
        out = outdata[:, 0]
        if ring is None:  # not started: silence
            out[:] = 0
            return
        before = ring.read
        n = ring.read_into(out)
        if n < frames:
            out[n:] = 0
            if not self._playing:
                self._dry = False
            elif not self._dry:  # count each dry spell in the middle of a turn once
                self._dry = True
                self.underruns += 1
        else:
            self._dry = False
        self.played_samples += n
        # what the speaker will play, for the echo canceller (no allocation: two slice copies)
        hist = self.history
        if hist is not None:
            dac = time_info.outputBufferDacTime
            if not dac:
                dac = time_info.currentTime + self.latency
            at = hist.written
            hist.push(out)  # what the speaker will play, for the echo canceller (no allocation)
            self.dac_stamp = (at, dac)
        req = self._finish_req
        if req != self._finish_done and ring.read >= self._finish_at:
            self._finish_done = req
            # Offset of the turn's last sample within this block (0 if handed over earlier).
            last = min(max(self._finish_at - before, 0), frames)
            delay = time_info.outputBufferDacTime - time_info.currentTime
            if not 0.0 <= delay < 2.0 or time_info.outputBufferDacTime == 0.0:
                delay = self.latency
            delay += last / self.device_rate
            try:
                self._loop.call_soon_threadsafe(self._finish_reached, req, delay)
            except RuntimeError:  # loop closed
                pass

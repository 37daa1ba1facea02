"""Microphone capture: a PortAudio input stream delivering s16le mono blocks to the asyncio loop.

The PortAudio callback copies each block into a preallocated ring (``ring_s`` seconds of slots)
and nothing else: no buffer allocated, no lock. The loop is woken for audio only while it is
``wanted`` (a turn, the answer playing, its tail): then the callback schedules one drain if none is
pending, and the drain hands over every block written since, so a late loop means a bigger batch,
not lost audio. A block is lost only when the ring's seconds are full, counted in ``overflows``.
While the audio is not wanted the ring is simply overwritten (an idle device does no work for it),
and when it is wanted again the drain starts from the newest blocks, telling ``on_gap`` how many
samples it skipped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from talkie.audio.devices import AudioError, DeviceInfo, find_device, import_sounddevice

if TYPE_CHECKING:
    from talkie.audio.resample import Resampler


#: How far back the audio starts when it is wanted again.
WAKE_BACK_S = 0.06


class Capture:
    """Records mono 16-bit audio from ``device``; calls ``on_audio(pcm_bytes)`` in the loop thread.

    Each call carries ``block_ms`` of s16le mono audio at ``rate`` Hz.  If the device cannot run at
    ``rate`` it is opened at its default rate and resampled (soxr, in the loop thread).  ``gain_db``
    is applied in the loop thread with clipping.

    ``block_time`` tells, while ``on_audio`` runs, when the block's first sample was recorded.

    Counters: ``overflows`` (blocks lost because the loop left ``ring_s`` seconds of them
    waiting), ``batches`` (drains that handed blocks over), ``xruns`` (callbacks that reported a
    PortAudio status flag), ``blocks`` (blocks delivered). ``last_callback`` is the
    ``time.monotonic()`` of the latest PortAudio callback (0.0 before the first).
    ``device_rate`` is the rate the device actually runs at.
    """

    def __init__(
        self,
        device: str | int,
        *,
        loop: asyncio.AbstractEventLoop,
        on_audio: Callable[[bytes], None],
        rate: int = 16000,
        block_ms: int = 20,
        gain_db: float = 0.0,
        ring_s: float = 5.0,
        on_gap: Callable[[int], None] | None = None,
        buffer_blocks: int = 1,
    ) -> None:
        if rate <= 0 or block_ms <= 0 or ring_s <= 0 or buffer_blocks <= 0:
            raise ValueError("rate, block_ms, ring_s and buffer_blocks must be > 0")
        self.device = device
        self.rate = int(rate)
        self.block_ms = int(block_ms)
        self.block_samples = self.rate * self.block_ms // 1000
        self.gain_db = float(gain_db)
        self.ring_s = float(ring_s)
        #: PortAudio's buffer, in blocks: each callback brings that many (split into the ring's
        #: slots). More blocks, fewer wake-ups of the audio thread; later audio by as many blocks.
        self.buffer_blocks = int(buffer_blocks)
        #: Whether the loop wants the audio now (set by the shell); else the ring is overwritten.
        self.wanted = True
        self.batches = 0  # drains that handed over blocks (a late loop: fewer, bigger ones)
        self.device_info: DeviceInfo | None = None
        self.device_rate = self.rate
        self.overflows = 0
        self.xruns = 0
        self.blocks = 0
        self.last_callback = 0.0
        #: While ``on_audio`` runs: when the block's first sample was recorded (the stream's clock,
        #: which playback's ``dac_stamp`` shares).
        self.block_time = 0.0
        self._latency = 0.0
        self._loop = loop
        self._on_audio = on_audio
        self._gain = 10.0 ** (self.gain_db / 20.0)
        self._stream = None
        self._resampler: Resampler | None = None
        #: int16 samples waiting to complete a block (resampling only)
        self._carry: Any = np.zeros(0, dtype=np.int16)
        self._on_gap = on_gap
        # the ring: block slots of raw s16le bytes, written by the PortAudio thread only (then
        # ``_posted`` moves on); plain bytes and lists, not numpy: the callback runs 100 times a
        # second on a cold cache, where numpy's calls cost more than the copy itself
        self._ring = memoryview(bytearray(2))
        self._slot_bytes = 2
        self._nslots = 1
        self._frames: list[int] = [0]
        self._adc: list[float] = [0.0]
        self._posted = 0  # blocks written (PortAudio thread only)
        self._handled = 0  # blocks handed over or skipped (loop thread only)
        self._waking = False  # a drain is scheduled (set by the callback, cleared by the drain)
        self._start: list[int] = [0]  # per slot: its first sample's number
        self._arrived: list[float] = [0.0]  # per slot: when its callback ran (time.monotonic())
        self._samples = 0  # device samples recorded (PortAudio thread only)
        self._expect: int | None = None  # the number of the sample the loop expects next
        self._running = False
        self._gen = 0  # bumped by stop(): blocks posted by an earlier stream are dropped

    def configure(
        self,
        *,
        device: str | int | None = None,
        block_ms: int | None = None,
        gain_db: float | None = None,
    ) -> None:
        """Change settings: the gain at once, the device and block size from the next start()."""
        if gain_db is not None:
            self.gain_db = float(gain_db)
            self._gain = 10.0 ** (self.gain_db / 20.0)
        if device is not None:
            self.device = device
        if block_ms is not None:
            self.block_ms = int(block_ms)
            self.block_samples = self.rate * self.block_ms // 1000

    def start(self) -> None:
        """Open and start the input stream (raises AudioError if the device cannot be opened)."""
        if self._stream is not None:
            return
        sd = import_sounddevice()
        info = find_device(self.device, "input")
        self.device_info = info
        device_rate = self.rate
        try:
            sd.check_input_settings(info.index, channels=1, dtype="int16", samplerate=self.rate)
        except Exception:  # noqa: BLE001 - not at this rate: PortAudio says so in many ways
            device_rate = int(round(info.default_rate))
            if device_rate <= 0:
                raise AudioError(
                    f"input device {info.name!r} cannot record at {self.rate} Hz"
                ) from None
        self.device_rate = device_rate
        self._resampler = None
        if device_rate != self.rate:
            from talkie.audio.resample import Resampler

            self._resampler = Resampler(device_rate, self.rate)
            self._carry = np.zeros(0, dtype=np.int16)
        blocksize = self._allocate(device_rate)
        try:
            stream = sd.RawInputStream(
                device=info.index,
                samplerate=device_rate,
                channels=1,
                dtype="int16",
                blocksize=blocksize * self.buffer_blocks,
                callback=self._callback,
            )
        except Exception as exc:
            raise AudioError(
                f"cannot open input device {info.name!r} at {device_rate} Hz: {exc}"
            ) from exc
        self._stream = stream
        self._latency = float(stream.latency)
        self._running = True
        try:
            stream.start()
        except Exception as exc:
            self._running = False
            self._stream = None
            stream.close(ignore_errors=True)
            raise AudioError(f"cannot start input device {info.name!r}: {exc}") from exc

    def _allocate(self, device_rate: int) -> int:
        """The ring for a stream at ``device_rate``: ``ring_s`` of block slots. Returns the
        block size (frames)."""
        self.device_rate = device_rate
        blocksize = max(1, device_rate * self.block_ms // 1000)
        slots = max(2, int(round(self.ring_s * 1000 / self.block_ms)))
        self._ring = memoryview(bytearray(slots * blocksize * 2))
        self._slot_bytes = blocksize * 2
        self._nslots = slots
        self._frames = [0] * slots
        self._adc = [0.0] * slots
        self._start = [0] * slots
        self._arrived = [0.0] * slots
        self._posted = self._handled = self._samples = 0
        self._expect = None
        self._waking = False
        return blocksize

    def stop(self) -> None:
        """Stop and close the stream; blocks still queued for the loop are discarded."""
        self._running = False
        self._gen += 1
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort(ignore_errors=True)
            finally:
                stream.close(ignore_errors=True)
        if self._resampler is not None:
            self._resampler.reset()
            self._carry = self._carry[:0]

    @property
    def in_flight_s(self) -> float:
        """How much audio, already recorded, is still on its way to the loop while the stream
        runs: the input latency PortAudio reports, and the block being delivered (0 when not
        running). The device's timestamps cannot say it: a sound server hides its buffering."""
        if self._stream is None or not self._running:
            return 0.0
        return self._latency + self.buffer_blocks * self.block_ms / 1000

    @property
    def active(self) -> bool:
        """True while the stream is open and running."""
        return self._stream is not None and bool(self._stream.active)

    # -- PortAudio thread ----------------------------------------------------------------------
    def _callback(self, indata, frames, time_info, status) -> None:
        self.last_callback = now = time.monotonic()
        if status:
            self.xruns += 1
        wanted = self.wanted
        adc = time_info.inputBufferAdcTime if time_info is not None else 0.0
        if not adc:  # the host API does not say: estimate it from the stream's latency
            adc = (
                (time_info.currentTime if time_info is not None else time.monotonic())
                - self._latency
                - frames / self.device_rate
            )
        ring, nslots, slot = self._ring, self._nslots, self._slot_bytes
        size = slot // 2
        whole = frames <= size  # the usual case: the buffer is one block
        source = indata if whole else memoryview(indata)
        for first in range(0, frames, size):  # one slot per block of the buffer
            n = min(frames - first, size)
            if wanted and self._posted - self._handled >= nslots:
                self.overflows += 1  # the loop is seconds late: this block is lost
                self._samples += n  # (counted: the loop is told of the gap)
                continue
            k = self._posted % nslots
            at = k * slot
            ring[at : at + 2 * n] = source if whole else source[2 * first : 2 * (first + n)]
            self._frames[k] = n
            self._adc[k] = adc + first / self.device_rate
            self._start[k] = self._samples
            self._arrived[k] = now
            self._samples += n
            self._posted += 1  # published: the slot is complete
        if wanted and not self._waking:
            self._waking = True
            try:
                self._loop.call_soon_threadsafe(self._drain, self._gen)
            except RuntimeError:  # loop closed: nothing will ever handle it
                pass

    # -- loop thread ---------------------------------------------------------------------------
    def want(self, wanted: bool, since: float | None = None) -> None:
        """Whether the loop wants the audio from now on (the shell says, after each step).

        Wanted again, the audio starts ``WAKE_BACK_S`` back: what woke it (a press, the answer
        starting) reached the loop a little after the sound it goes with (a press is heard by a
        thread of its own, and the user's first word may come with it). ``since``: when what
        woke it happened (``time.monotonic()``; its event may have waited for a busy loop, e.g.
        while the SDK loads): then from the blocks that arrived ``WAKE_BACK_S`` before that on,
        as far as half the ring reaches (the other half takes the blocks that come meanwhile)."""
        if wanted and not self.wanted:
            back = -(-int(WAKE_BACK_S * 1000) // self.block_ms)
            first = self._posted - back
            if since is not None:
                oldest = self._posted - self._nslots // 2
                while first > oldest and self._arrived[(first - 1) % self._nslots] >= (
                    since - WAKE_BACK_S
                ):
                    first -= 1
            self._handled = max(self._handled, first)
        self.wanted = wanted

    def _drain(self, gen: int) -> None:
        self._waking = False
        if not self._running or gen != self._gen or not self.wanted:
            return
        ring, nslots, slot = self._ring, self._nslots, self._slot_bytes
        posted = self._posted  # want() left no overwritten slot unread: at most back, or full
        if self._handled < posted:
            self.batches += 1
        while self._handled < posted:
            k = self._handled % nslots
            self._handled += 1
            start, frames = self._start[k], self._frames[k]
            if self._expect is not None and start > self._expect:
                self._gap(start - self._expect)  # skipped while unwanted, or lost
            self._expect = start + frames
            self._deliver(gen, bytes(ring[k * slot : k * slot + 2 * frames]), self._adc[k])
            if not self._running or gen != self._gen or not self.wanted:  # on_audio may stop us
                return

    def _gap(self, device_samples: int) -> None:
        """``device_samples`` were skipped: the resampler starts afresh, the listener is told in
        samples at ``rate``."""
        if self._resampler is not None:
            self._resampler.reset()
            self._carry = self._carry[:0]
        if self._on_gap is not None:
            self._on_gap(int(round(device_samples * self.rate / self.device_rate)))

    def _deliver(self, gen: int, data: bytes, adc: float = 0.0) -> None:
        if not self._running or gen != self._gen:
            return
        self.block_time = adc
        if self._gain == 1.0 and self._resampler is None:
            self.blocks += 1
            self._on_audio(data)
            return

        samples = np.frombuffer(data, dtype=np.int16)
        if self._gain != 1.0:
            samples = apply_gain(samples, self._gain)
        if self._resampler is None:
            self.blocks += 1
            self._on_audio(samples.tobytes())
            return
        out = self._resampler.process(samples)
        buf = np.concatenate((self._carry, out)) if len(self._carry) else out
        n = self.block_samples
        full = len(buf) // n * n
        self._carry = buf[full:].copy()
        # the first sample of buf came before this device block by what was carried over
        first = adc - (len(buf) - len(out)) / self.rate
        for i in range(0, full, n):
            if not self._running or gen != self._gen:  # on_audio may stop us
                return
            self.block_time = first + i / self.rate
            self.blocks += 1
            self._on_audio(buf[i : i + n].tobytes())


def apply_gain(samples, factor: float):
    """int16 samples times ``factor``, rounded and clipped to the int16 range (never wraps)."""

    scaled = samples.astype(np.float32)
    scaled *= factor
    np.rint(scaled, out=scaled)
    np.clip(scaled, -32768.0, 32767.0, out=scaled)
    return scaled.astype(np.int16)

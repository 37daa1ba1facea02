"""The microphone's path in the loop thread: echo control, the speech gate, the pre-roll, chunking.

::

    capture block (10 ms) -> [echo canceller, reference = what the speaker played]
                          -> pre-roll ring (last ``preroll_ms``)
                          -> chunks of ``chunk_ms`` -> on_chunk (the uplink outbox)
                          -> speech gate -> on_speech(True/False)   (SpeechStarted/SpeechEnded)

``echo``: ``"aec"`` cancels the speaker's echo while the speaker plays (what is sent upstream then
is the cleaned signal too; the rest of the time the microphone passes untouched); ``"half_duplex"``
leaves the audio alone and does not consult the gate while the speaker plays (``speaker_busy``, and
300 ms after: only the button barges in); ``"off"`` leaves the audio alone and always consults the
gate (headphones). With ``barge_in`` off and no echo canceller, blocks pass through untouched.

Pure computation plus the injected collaborators (canceller, gate, reference): no I/O, no asyncio.
``frames`` counts the 10 ms frames processed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from talkie.audio.ring import Ring
from talkie.audio.vad import FAR_DB, ONSET_MAX, START, level_db

#: How fast the reference's envelope falls after its sound (dB a frame): no faster than the
#: reverberation of a room with an RT60 of 0.8 s (60 dB in 800 ms), so that the residual the gate
#: predicts in the tail of a word is not below what such a room still holds.
REVERB_DB_PER_FRAME = 0.75
#: After the speaker's last sample, its sound lasts this many frames more (output latency, room).
HANGOVER_FRAMES = 30


class MicChain:
    """One microphone's processing; ``push`` each capture block (s16le mono 16 kHz)."""

    def __init__(
        self,
        *,
        on_chunk: Callable[[bytes], None],
        on_speech: Callable[[bool], None] = lambda started: None,
        echo: str = "off",
        barge_in: bool = False,
        gate: Any = None,
        canceller: Any = None,
        reference: Any = None,
        coherence: Any = None,
        chunk_ms: int = 20,
        preroll_ms: int = 300,
        rate: int = 16000,
        speaker_busy: Callable[[], bool] = lambda: False,
    ) -> None:
        if echo == "aec" and (canceller is None or reference is None):
            raise ValueError('echo = "aec" needs a canceller and a reference')
        if barge_in and gate is None:
            raise ValueError("barge-in needs a speech gate")
        self.on_chunk = on_chunk
        self.on_speech = on_speech
        self.speaker_busy = speaker_busy
        self._busy_frames = HANGOVER_FRAMES
        self.echo = echo
        self.barge_in = barge_in
        self.gate = gate
        self.canceller = canceller
        self.reference = reference
        #: Of what the canceller left with the reference (``EchoCoherence``; None: not measured).
        self.coherence = coherence
        self.rate = rate
        self.frame = rate * 10 // 1000
        self.chunk = np.zeros(rate * chunk_ms // 1000, dtype=np.int16)
        self._filled = 0
        self.preroll_samples = rate * preroll_ms // 1000
        # the newest cleaned audio: the pre-roll, and before it as far as a voice's onset may lie
        self._preroll = Ring(max(1, self.preroll_samples + ONSET_MAX * self.frame))
        #: Where in the ring's stream the voice that last started began (None: not known).
        self._onset_at: int | None = None
        self._carry = np.zeros(self.frame, dtype=np.int16)
        self._carried = 0
        self._ref_db = -120.0
        self._cancelling = False
        self.frames = 0

    @property
    def processing(self) -> bool:
        """Whether blocks are looked at (else they pass straight through)."""
        return self.barge_in or self.echo == "aec"

    def push(self, pcm: bytes, adc_time: float | None = None) -> None:
        """One capture block, recorded from ``adc_time`` (the stream's clock) on."""
        if not self.processing:
            self.on_chunk(pcm)
            return
        samples = np.frombuffer(pcm, dtype=np.int16)
        t = 0.0 if adc_time is None else adc_time
        pos = 0
        if self._carried:  # complete the frame left over from the last block
            take = min(self.frame - self._carried, len(samples))
            self._carry[self._carried : self._carried + take] = samples[:take]
            self._carried += take
            pos = take
            if self._carried < self.frame:
                return
            self._carried = 0
            self._frame(self._carry, t - (self.frame - take) / self.rate)
        while pos + self.frame <= len(samples):
            self._frame(samples[pos : pos + self.frame], t + pos / self.rate)
            pos += self.frame
        rest = len(samples) - pos
        if rest:
            self._carry[:rest] = samples[pos:]
            self._carried = rest

    def gap(self, samples: int) -> None:
        """``samples`` of the microphone were not pushed (the audio was not wanted meanwhile):
        the partial frame is dropped, the gate starts its decision afresh, and the echo
        reference counts them as read."""
        self._carried = 0
        self._onset_at = None
        if self.gate is not None:
            self.gate.reset()
        if self.reference is not None:
            self.reference.skip(samples)

    def flush(self) -> None:
        """Send the chunk gathered so far, short as it is (the turn ends: its last ms count)."""
        if self._filled:
            filled, self._filled = self._filled, 0
            self.on_chunk(self.chunk[:filled].tobytes())

    def preroll(self) -> list[bytes]:
        """The (cleaned) audio from ``preroll_ms`` before the voice that started began (its onset:
        the gate's ``onset_frames``) to now, as chunks; the audio from here on starts a fresh
        chunk, so nothing is sent twice. Without a voice start, the last ``preroll_ms``."""
        n = self.preroll_span
        self._onset_at = None
        self._filled = 0
        if n == 0:
            return []
        tail = self._preroll.latest(n)
        size = len(self.chunk)
        return [tail[i : i + size].tobytes() for i in range(0, n, size)]

    @property
    def preroll_span(self) -> int:
        """How many samples :meth:`preroll` would send now."""
        written = self._preroll.written
        voice = 0 if self._onset_at is None else max(0, written - self._onset_at)
        return min(self.preroll_samples + voice, written, self._preroll.capacity)

    # ---- internals

    def _frame(self, mic: np.ndarray, adc_time: float) -> None:
        self.frames += 1
        out: np.ndarray | None = mic
        ref_db = ref_now_db = -120.0
        coherent: Callable[[], float] | None = None
        if self.reference is not None:
            ref = self.reference.take(self.frame, adc_time)
            self.reference.microphone(mic)
            # the reference's envelope: up at once, down as slowly as a reverberant room's sound
            ref_now_db = level_db(ref)
            self._ref_db = max(ref_now_db, self._ref_db - REVERB_DB_PER_FRAME)
            ref_db = self._ref_db
            if self.echo == "aec":
                out = self._cancel(mic, ref, ref_db > FAR_DB)
                coherent = self._coherent(ref)
        if out is not None:
            self._keep(out)
        if not self.barge_in:
            return
        self._busy_frames = 0 if self.speaker_busy() else self._busy_frames + 1
        playing = ref_db > FAR_DB or self._busy_frames < HANGOVER_FRAMES
        deaf = self.echo == "half_duplex" or (self.echo == "aec" and not self.reference.aligned)
        if deaf and playing:
            # the microphone is not consulted while the speaker plays (half-duplex; or the echo
            # delay is not measured yet, in the first seconds of the first answer)
            self.gate.reset()
            return
        aec = self.echo == "aec"
        if aec and out is None:
            # the canceller's first frame of an answer: what it gave is the frame before, and
            # this one (echo and all) is not the user's voice to judge
            return
        decision = self.gate.feed(
            mic if out is None else out,
            ref_db if aec else -120.0,
            level_db(mic) if aec and ref_db > FAR_DB else -120.0,
            aec and playing,
            ref_now_db if aec else None,
            coherent,
        )
        if decision == START:
            self._onset_at = self._preroll.written - self.gate.onset_frames * self.frame
        elif decision:  # that voice ended unsent: a later press gets the plain pre-roll
            self._onset_at = None
        if decision:
            self.on_speech(decision == START)

    def _coherent(self, ref: np.ndarray) -> Callable[[], float] | None:
        """What the canceller just left goes into the coherence's history; returns how to
        measure it (None while the canceller is off: the history is forgotten then)."""
        if self.coherence is None:
            return None
        linear = getattr(self.canceller, "linear", None)
        if not self._cancelling or linear is None:
            self.coherence.reset()
            return None
        self.coherence.push(ref, linear)
        return self.coherence.measure

    def _cancel(self, mic: np.ndarray, ref: np.ndarray, far: bool) -> np.ndarray | None:
        """The echo canceller runs while the speaker plays (and its echo lasts); the rest of the
        time the microphone passes untouched. Its output lags its input by one frame: switching
        it on skips that frame (already sent as it was), switching it off sends the frame it holds
        as well as this one, so the stream stays whole, every sample once."""
        if far:
            cleaned = self.canceller.process(mic, ref)
            if not self._cancelling:
                self._cancelling = True
                return None
            return cleaned
        if self._cancelling:
            self._cancelling = False
            self._keep(self.canceller.process(mic, ref))
        return mic

    def _keep(self, out: np.ndarray) -> None:
        """Into the pre-roll ring and the current chunk (sent when full)."""
        self._preroll.push(out)
        n = len(out)
        size = len(self.chunk)
        pos = 0
        while pos < n:
            take = min(size - self._filled, n - pos)
            self.chunk[self._filled : self._filled + take] = out[pos : pos + take]
            self._filled += take
            pos += take
            if self._filled == size:
                self._filled = 0
                self.on_chunk(self.chunk.tobytes())

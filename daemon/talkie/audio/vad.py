"""When is the user speaking? webrtcvad on 10 ms frames, gated and smoothed.

webrtcvad alone calls a fan, a door or the device's own speaker "speech". :class:`SpeechGate`
counts a frame as the user's voice only when all of these hold:

* webrtcvad (``aggressiveness`` 0-3) says speech, on the echo-cancelled signal;
* it is louder than ``min_level_db`` dBFS and ``snr_db`` above the tracked noise floor;
* while the speaker plays (``far_active``), the **double-talk guard**: echo cancellation took at most
  ``guard_db`` off this frame (what is left is not just residual echo), and the frame is ``snr_db``
  above the residual echo tracked over the frames that were not the user.

Hysteresis: speech **starts** when ``start_frames`` of the last ``window_frames`` frames are voiced
and **ends** after ``end_ms`` without a voiced frame. Pure computation on arrays (no I/O); one
``webrtcvad.Vad`` per gate.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

FRAME_MS = 10
START, END = 1, -1


def level_db(frame: np.ndarray) -> float:
    """RMS of an int16 frame in dBFS (-120 for digital silence)."""
    x = frame.astype(np.float32)
    power = float(np.dot(x, x)) / max(1, len(x))
    return 10.0 * math.log10(power / (32768.0 * 32768.0)) if power > 0.0 else -120.0


class SpeechGate:
    """Feed it 10 ms frames; it says when the user's speech starts and ends."""

    def __init__(self, rate: int = 16000, *, aggressiveness: int = 3, start_frames: int = 3,
                 window_frames: int = 4, end_ms: int = 700, min_level_db: float = -55.0,
                 snr_db: float = 9.0, guard_db: float = 12.0) -> None:
        import webrtcvad

        if not 1 <= start_frames <= window_frames:
            raise ValueError("need 1 <= start_frames <= window_frames")
        self.rate = int(rate)
        self.frame = self.rate * FRAME_MS // 1000
        self._vad = webrtcvad.Vad(int(aggressiveness))
        self.start_frames = int(start_frames)
        self.end_frames = max(1, int(end_ms) // FRAME_MS)
        self.min_level_db = float(min_level_db)
        self.snr_db = float(snr_db)
        self.guard_db = float(guard_db)
        self._window: deque[bool] = deque(maxlen=int(window_frames))
        self.speaking = False
        self.noise_db = -70.0
        self.residual_db = -120.0
        self._silent_frames = 0
        #: Frames fed so far, and voiced frames among them (for the counters in the journal).
        self.frames = 0
        self.voiced = 0
        #: On START: how many frames ago the first voiced frame of the deciding window began.
        self.onset_frames = 0

    def reset(self) -> None:
        """Forget the current decision (not the noise floor or residual echo learnt)."""
        self._window.clear()
        self.speaking = False
        self._silent_frames = 0

    def voiced_frame(self, out: np.ndarray, mic_db: float, far_active: bool) -> bool:
        """Is this (echo-cancelled) frame the user's voice? Updates the trackers."""
        out_db = level_db(out)
        loud = out_db >= self.min_level_db and out_db >= self.noise_db + self.snr_db
        guard = True
        if far_active:
            guard = (mic_db - out_db <= self.guard_db
                     and out_db >= self.residual_db + self.snr_db)
        speech = loud and guard and self._vad.is_speech(out.tobytes(), self.rate)
        if not speech:
            if far_active:  # residual echo: rises at once, falls by 0.5 dB a frame (~1.5 s to -75)
                self.residual_db = max(out_db, self.residual_db - 0.5)
            else:
                self.residual_db = max(-120.0, self.residual_db - 0.5)
            # noise floor: falls at once, rises slowly (0.05 dB a frame) so speech does not lift it
            self.noise_db = out_db if out_db < self.noise_db else min(out_db, self.noise_db + 0.05)
        return speech

    def feed(self, out: np.ndarray, mic_db: float = -120.0, far_active: bool = False) -> int:
        """One 10 ms frame; returns START, END or 0."""
        self.frames += 1
        voiced = self.voiced_frame(out, mic_db, far_active)
        self.voiced += voiced
        self._window.append(voiced)
        if not self.speaking:
            if sum(self._window) >= self.start_frames:
                self.speaking = True
                self._silent_frames = 0
                first = next(i for i, v in enumerate(self._window) if v)
                self.onset_frames = len(self._window) - first
                self._window.clear()
                return START
            return 0
        self._silent_frames = 0 if voiced else self._silent_frames + 1
        if self._silent_frames >= self.end_frames:
            self.speaking = False
            self._window.clear()
            return END
        return 0

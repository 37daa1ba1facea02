"""The room around the device, for the real audio path: what the speaker plays comes back into the
microphone.

:class:`EchoRoom` records PulseAudio's speaker monitor (``spk.monitor``, resampled to 16 kHz by
PulseAudio), runs it through a room impulse response (:func:`corpus.room_response`: delay, coupling
gain, reverb tail) block by block, and plays the result into the microphone sink (``mic``), where it
mixes with anything else played there (the user). Two helper processes (parec, pacat) and one thread.
"""

from __future__ import annotations

import subprocess
import threading

import numpy as np

from tests.support import corpus as c

BLOCK = 160  # 10 ms at 16 kHz


#: The speaker is silent once this many 10 ms blocks of its monitor stay below -60 dBFS (a
#: playback underrun is shorter; a cut answer stays silent while the user speaks).
SILENT_BLOCKS = 20
SILENT_RMS = 32768 * 10 ** (-60 / 20)


class EchoRoom:
    def __init__(self, pulse, *, delay_ms: float = 20.0, gain_db: float = -6.0, seed: int = 0) -> None:
        self.pulse = pulse
        self.h = c.room_response(delay_ms, gain_db, seed=seed).astype(np.float64)
        self._tail = np.zeros(len(self.h) + BLOCK, dtype=np.float64)
        self.blocks = 0
        self.peak = 0
        self._stop = threading.Event()
        self._rec = self._play = self._thread = None
        self._lock = threading.Lock()
        self._user: np.ndarray | None = None  # a voice to mix into the microphone, from a block on
        self._user_pos = 0
        #: The block in which the user's first sample went into the microphone, and the first of
        #: ``SILENT_BLOCKS`` blocks of silence the speaker's monitor gave after it (this thread's
        #: own stream: their distance is the end-to-end latency, in samples).
        self.said_at: int | None = None
        self.silent_at: int | None = None

    def __enter__(self) -> "EchoRoom":
        raw = ["--rate=16000", "--format=s16le", "--channels=1", "--raw", "--latency-msec=10"]
        self._rec = subprocess.Popen(["parec", "--device=spk.monitor", *raw], env=self.pulse.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._play = subprocess.Popen(["pacat", "--playback", "--device=mic", *raw],
                                      env=self.pulse.env, stdin=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL)
        self._thread = threading.Thread(target=self._run, name="echo-room", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for proc in (self._rec, self._play):
            proc.terminate()
        for proc in (self._rec, self._play):
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._thread.join(5)

    def say(self, user: np.ndarray) -> None:
        """Mix ``user`` (int16, 16 kHz) into the microphone from the next block on."""
        with self._lock:
            self._user, self._user_pos = user.astype(np.float64), 0
            self.said_at = self.silent_at = None
            self.over_answer = False
            self._quiet = 0

    def _run(self) -> None:
        n = len(self.h)
        while not self._stop.is_set():
            data = self._rec.stdout.read(BLOCK * 2)
            if not data or len(data) < BLOCK * 2:
                return
            x = np.frombuffer(data, dtype=np.int16).astype(np.float64)
            self.peak = max(self.peak, int(np.max(np.abs(x))))
            self._tail[:n + BLOCK - 1] += np.convolve(x, self.h)
            mixed = self._tail[:BLOCK].copy()
            self._mix_user(mixed, x)
            out = np.clip(np.rint(mixed), -32768, 32767).astype(np.int16)
            self._tail[:-BLOCK] = self._tail[BLOCK:]
            self._tail[-BLOCK:] = 0.0
            try:
                self._play.stdin.write(out.tobytes())
                self._play.stdin.flush()
            except (BrokenPipeError, ValueError):
                return
            self.blocks += 1

    def _mix_user(self, mixed: np.ndarray, speaker: np.ndarray) -> None:
        with self._lock:
            user = self._user
            if user is None:
                return
            if self.said_at is None:
                self.said_at = self.blocks
                # the answer was playing as the user began (not a pause, not already over)
                self.over_answer = float(np.sqrt(np.mean(speaker ** 2))) >= SILENT_RMS
            elif self.silent_at is None:  # the speaker's sound, the blocks after the user began
                quiet = float(np.sqrt(np.mean(speaker ** 2))) < SILENT_RMS
                self._quiet = self._quiet + 1 if quiet else 0
                if self._quiet == SILENT_BLOCKS:
                    self.silent_at = self.blocks - SILENT_BLOCKS + 1
            pos = self._user_pos
            take = min(BLOCK, len(user) - pos)
            if take > 0:
                mixed[:take] += user[pos:pos + take]
                self._user_pos = pos + take

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


class EchoRoom:
    def __init__(self, pulse, *, delay_ms: float = 20.0, gain_db: float = -6.0, seed: int = 0) -> None:
        self.pulse = pulse
        self.h = c.room_response(delay_ms, gain_db, seed=seed).astype(np.float64)
        self._tail = np.zeros(len(self.h) + BLOCK, dtype=np.float64)
        self.blocks = 0
        self.peak = 0
        self._stop = threading.Event()
        self._rec = self._play = self._thread = None

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

    def _run(self) -> None:
        n = len(self.h)
        while not self._stop.is_set():
            data = self._rec.stdout.read(BLOCK * 2)
            if not data or len(data) < BLOCK * 2:
                return
            x = np.frombuffer(data, dtype=np.int16).astype(np.float64)
            self.peak = max(self.peak, int(np.max(np.abs(x))))
            self._tail[:n + BLOCK - 1] += np.convolve(x, self.h)
            out = np.clip(np.rint(self._tail[:BLOCK]), -32768, 32767).astype(np.int16)
            self._tail[:-BLOCK] = self._tail[BLOCK:]
            self._tail[-BLOCK:] = 0.0
            try:
                self._play.stdin.write(out.tobytes())
                self._play.stdin.flush()
            except (BrokenPipeError, ValueError):
                return
            self.blocks += 1

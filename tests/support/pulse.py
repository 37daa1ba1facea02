"""PulseAudio test harness: real, paced audio devices for PortAudio on a machine with no sound card.

A private PulseAudio daemon (own HOME / XDG_RUNTIME_DIR / socket under a fresh temp dir) runs two
null sinks: ``mic`` (16 kHz mono) and ``spk`` (24 kHz mono).  Two ALSA PCMs are made visible to
PortAudio in this process (and, through :attr:`PulseHarness.env`, to child processes):

* ``talkie_mic`` -- capture from ``mic.monitor``: whatever :meth:`PulseHarness.play_into_mic`
  plays into ``mic`` is what a Capture on ``talkie_mic`` records.
* ``talkie_spk`` -- playback into ``spk``: :meth:`PulseHarness.record_speaker` records it from
  ``spk.monitor``.

PulseAudio's default sink/source are ``spk`` / ``mic.monitor``, so ALSA's ``default`` PCM (and
PortAudio's default devices) land on the same pair.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import glob
import ctypes.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

MIC_DEVICE = "talkie_mic"
SPEAKER_DEVICE = "talkie_spk"
MIC_RATE = 16000
SPEAKER_RATE = 24000
TOOLS = ("pulseaudio", "pactl", "paplay", "parecord")
ALSA_PULSE_PLUGIN = "libasound_module_pcm_pulse.so"
DIR_PREFIX = "talkie-pa-"


class PulseUnavailable(Exception):
    """The harness cannot run here (a tool or library is missing); the reason is the message."""


def missing_requirements() -> list[str]:
    """Names of what is missing for the harness (empty list = everything is installed)."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    patterns = (f"/usr/lib/*/alsa-lib/{ALSA_PULSE_PLUGIN}", f"/usr/lib*/alsa-lib/{ALSA_PULSE_PLUGIN}")
    if not any(glob.glob(p) for p in patterns):
        missing.append(f"ALSA pulse plugin ({ALSA_PULSE_PLUGIN}, package libasound2-plugins)")
    if ctypes.util.find_library("portaudio") is None:
        missing.append("PortAudio (libportaudio2)")
    return missing


def read_wav(path: str | os.PathLike) -> tuple[int, np.ndarray]:
    """(rate, mono int16 samples) of a 16-bit WAV file (first channel if several)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit samples")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return w.getframerate(), data.reshape(-1, w.getnchannels())[:, 0].astype(np.int16)


def write_wav(path: str | os.PathLike, samples: np.ndarray, rate: int) -> Path:
    """Write mono int16 ``samples`` as a WAV file; returns the path."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    return Path(path)


def align(reference: np.ndarray, recording: np.ndarray) -> tuple[int, float]:
    """Best alignment of ``reference`` inside ``recording``: (lag, normalised correlation).

    ``recording[lag + i]`` lines up with ``reference[i]`` (lag may be negative when the recording
    misses the reference's start).  The correlation (-1..1) is computed over the overlap.
    """
    ref = np.asarray(reference, dtype=np.float64)
    rec = np.asarray(recording, dtype=np.float64)
    if not len(ref) or not len(rec):
        return 0, 0.0
    n = 1 << int(np.ceil(np.log2(len(ref) + len(rec))))
    xc = np.fft.irfft(np.fft.rfft(rec, n) * np.conj(np.fft.rfft(ref, n)), n)
    # lags 0..len(rec)-1 then -(len(ref)-1)..-1
    lags = np.concatenate((np.arange(len(rec)), np.arange(-(len(ref) - 1), 0)))
    values = np.concatenate((xc[:len(rec)], xc[n - (len(ref) - 1):] if len(ref) > 1 else xc[:0]))
    lag = int(lags[int(np.argmax(values))])
    return lag, correlation_at(ref, rec, lag)


def correlation_at(reference: np.ndarray, recording: np.ndarray, lag: int) -> float:
    """Normalised correlation of ``reference`` with ``recording[lag:]`` over their overlap."""
    ref = np.asarray(reference, dtype=np.float64)
    rec = np.asarray(recording, dtype=np.float64)
    start = max(0, -lag)
    stop = min(len(ref), len(rec) - lag)
    if stop <= start:
        return 0.0
    a = ref[start:stop]
    b = rec[start + lag:stop + lag]
    denom = float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
    return float(np.dot(a, b) / denom) if denom else 0.0


class Recording:
    """``parecord`` of a PulseAudio source into a raw s16le mono file; a context manager.

    :meth:`start` returns once audio is flowing, so anything played afterwards is recorded.
    """

    def __init__(self, harness: "PulseHarness", source: str, path: Path, rate: int) -> None:
        self.source = source
        self.path = Path(path)
        self.rate = rate
        self._harness = harness
        self._proc: subprocess.Popen | None = None
        self._file = None

    def start(self, timeout: float = 10.0) -> "Recording":
        self._file = open(self.path, "wb")
        with open(self.path.with_suffix(".log"), "wb") as log:
            self._proc = subprocess.Popen(
                ["parecord", "-d", self.source, "--raw", "--format=s16le", f"--rate={self.rate}",
                 "--channels=1", "--latency-msec=10", "--process-time-msec=5"],
                stdout=self._file, stderr=log, env=self._harness.env, preexec_fn=_die_with_parent,
            )
        self.wait_samples(1, timeout)
        return self

    def samples(self) -> np.ndarray:
        """Everything recorded so far (int16)."""
        data = self.path.read_bytes()
        return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.int16)

    def count(self) -> int:
        """Samples recorded so far."""
        return self.path.stat().st_size // 2

    def wait_samples(self, n: int, timeout: float = 10.0) -> None:
        """Wait (bounded) until at least ``n`` samples have been recorded."""
        deadline = time.monotonic() + timeout
        while not self._reached(n, deadline, timeout):
            time.sleep(0.005)

    async def wait_samples_async(self, n: int, timeout: float = 10.0) -> None:
        """Like :meth:`wait_samples`, yielding to the event loop while waiting."""
        deadline = time.monotonic() + timeout
        while not self._reached(n, deadline, timeout):
            await asyncio.sleep(0.005)

    def _reached(self, n: int, deadline: float, timeout: float) -> bool:
        if self.count() >= n:
            return True
        if self._proc is not None and self._proc.poll() is not None:
            err = self.path.with_suffix(".log").read_text(errors="replace")
            raise RuntimeError(f"parecord -d {self.source} exited with {self._proc.returncode}: {err}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"recording {self.source}: {self.count()} of {n} samples after {timeout} s")
        return False

    def stop(self) -> np.ndarray:
        """Stop recording; returns everything recorded."""
        if self._proc is not None:
            _terminate(self._proc)
            self._proc = None
        if self._file is not None:
            self._file.close()
            self._file = None
        return self.samples()

    def __enter__(self) -> "Recording":
        return self if self._proc is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class PulseHarness:
    """A private PulseAudio daemon with null-sink microphone and speaker (see the module doc).

    Device names for talkie's config: :attr:`mic_device` (``"talkie_mic"``) and
    :attr:`speaker_device` (``"talkie_spk"``).  :attr:`env` holds the variables child processes
    (e.g. the daemon under test) need to see the same devices.
    """

    mic_device = MIC_DEVICE
    speaker_device = SPEAKER_DEVICE
    mic_rate = MIC_RATE
    speaker_rate = SPEAKER_RATE

    def __init__(self) -> None:
        self.dir: Path | None = None
        self.env: dict[str, str] = {}
        self._proc: subprocess.Popen | None = None
        self._saved_env: dict[str, str | None] = {}
        self._counter = 0

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "PulseHarness":
        missing = missing_requirements()
        if missing:
            raise PulseUnavailable("PulseAudio harness needs: " + ", ".join(missing))
        _sweep_stale_dirs()
        self.dir = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
        home, run = self.dir / "home", self.dir / "run"
        for d in (home, run, run / "pulse"):
            d.mkdir(mode=0o700, parents=True)
        socket = run / "native"
        conf = self.dir / "asound.conf"
        server = f"unix:{socket}"
        conf.write_text(
            f'pcm.{MIC_DEVICE} {{ type pulse; device "mic.monitor"; server "{server}" }}\n'
            f'pcm.{SPEAKER_DEVICE} {{ type pulse; device "spk"; server "{server}" }}\n'
        )
        alsa_conf = os.environ.get("ALSA_CONFIG_PATH") or "/usr/share/alsa/alsa.conf"
        self.env = dict(os.environ)
        self.env.update(
            HOME=str(home), XDG_RUNTIME_DIR=str(run), PULSE_RUNTIME_PATH=str(run / "pulse"),
            PULSE_STATE_PATH=str(home / "state"), PULSE_SERVER=server,
            PULSE_COOKIE=str(home / "cookie"), ALSA_CONFIG_PATH=f"{alsa_conf}:{conf}",
        )
        self.env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        log = open(self.dir / "pulseaudio.log", "wb")
        self._proc = subprocess.Popen(
            ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--realtime=no",
             "--high-priority=no", "--use-pid-file=no",
             "-L", f"module-native-protocol-unix auth-anonymous=1 socket={socket}",
             "-L", f"module-null-sink sink_name=mic rate={MIC_RATE} channels=1 norewinds=1",
             "-L", f"module-null-sink sink_name=spk rate={SPEAKER_RATE} channels=1 norewinds=1"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env,
            start_new_session=True, preexec_fn=_die_with_parent,
        )
        log.close()
        (self.dir / "daemon.pid").write_text(str(self._proc.pid))
        try:
            self._wait_ready()
            self.pactl("set-default-sink", "spk")
            self.pactl("set-default-source", "mic.monitor")
        except BaseException:
            self.close()
            raise
        self._export_to_this_process()
        return self

    def close(self) -> None:
        """Kill the daemon, restore this process's environment and remove the temp dir."""
        if self._proc is not None:
            _terminate(self._proc)
            self._proc = None
        if self._saved_env:
            saved, self._saved_env = self._saved_env, {}
            _set_env(saved)
            # Re-enumerate with the original ALSA config.  ALSA's pulse hook then probes for a
            # default server: keep libpulse's runtime dir private meanwhile, or it makes
            # ~/.config/pulse/*-runtime -> /tmp/pulse-* in the real HOME.
            runtime = {k: os.environ.get(k) for k in ("PULSE_RUNTIME_PATH", "XDG_RUNTIME_DIR")}
            _set_env({k: v if v else self.env[k] for k, v in runtime.items()})
            try:
                _reload_alsa_and_portaudio()
            finally:
                _set_env(runtime)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> "PulseHarness":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- helpers for tests ---------------------------------------------------------------------
    def pactl(self, *args: str) -> str:
        """Run ``pactl`` against this daemon; returns its stdout (raises on failure)."""
        res = subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True, timeout=10)
        if res.returncode != 0:
            raise RuntimeError(f"pactl {' '.join(args)} failed: {res.stderr.strip()}")
        return res.stdout

    def play_into_mic(self, wav_path: str | os.PathLike, *, wait: bool = True,
                      timeout: float = 60.0) -> subprocess.Popen:
        """Play a WAV file into the ``mic`` sink (what ``talkie_mic`` captures), in real time.

        ``wait=True`` returns when paplay has drained; ``wait=False`` returns the running process
        (``.wait()`` it, or ``await harness.wait_async(proc)`` inside an event loop)."""
        proc = subprocess.Popen(["paplay", "-d", "mic", str(wav_path)], env=self.env, preexec_fn=_die_with_parent,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if wait:
            self.wait_process(proc, timeout)
        return proc

    async def aplay_into_mic(self, wav_path: str | os.PathLike, *, timeout: float = 60.0) -> None:
        """Play a WAV file into the ``mic`` sink without blocking the event loop."""
        await self.wait_async(self.play_into_mic(wav_path, wait=False), timeout)

    def wait_process(self, proc: subprocess.Popen, timeout: float = 60.0) -> None:
        """Wait (bounded) for a helper process; raises if it failed."""
        try:
            proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        _check_exit(proc)

    async def wait_async(self, proc: subprocess.Popen, timeout: float = 60.0) -> None:
        """Wait (bounded) for a helper process without blocking the event loop."""
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise TimeoutError(f"{proc.args} still running after {timeout} s")
            await asyncio.sleep(0.01)
        _check_exit(proc)

    def record_speaker(self, path: str | os.PathLike | None = None, *,
                       rate: int = SPEAKER_RATE) -> Recording:
        """A :class:`Recording` of ``spk.monitor`` (what ``talkie_spk`` plays); use as ``with``."""
        return Recording(self, "spk.monitor", Path(path) if path else self._scratch("spk"), rate)

    def record_mic(self, path: str | os.PathLike | None = None, *, rate: int = MIC_RATE) -> Recording:
        """A :class:`Recording` of ``mic.monitor`` (what is being played into the microphone)."""
        return Recording(self, "mic.monitor", Path(path) if path else self._scratch("mic"), rate)

    # -- internals -----------------------------------------------------------------------------
    def _scratch(self, stem: str) -> Path:
        self._counter += 1
        return self.dir / f"{stem}-{self._counter}.raw"

    def _wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while subprocess.run(["pactl", "info"], env=self.env, capture_output=True, timeout=10).returncode:
            if self._proc.poll() is not None or time.monotonic() > deadline:
                log = (self.dir / "pulseaudio.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"pulseaudio did not start (exit {self._proc.poll()}): {log}")
            time.sleep(0.05)

    def _export_to_this_process(self) -> None:
        keys = ["PULSE_SERVER", "PULSE_COOKIE", "PULSE_RUNTIME_PATH", "ALSA_CONFIG_PATH"]
        if not os.environ.get("XDG_RUNTIME_DIR"):
            # libpulse (in the ALSA plugin) otherwise makes ~/.config/pulse/*-runtime -> /tmp/pulse-*
            keys.append("XDG_RUNTIME_DIR")
        for key in keys:
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = self.env[key]
        _reload_alsa_and_portaudio()


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the test process dies (no stray daemons)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM


def _sweep_stale_dirs() -> None:
    """Remove harness dirs left by test processes that were killed before their teardown."""
    for d in Path(tempfile.gettempdir()).glob(DIR_PREFIX + "*"):
        try:
            pid = int((d / "daemon.pid").read_text())
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (OSError, ValueError):
            continue


def _set_env(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _terminate(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """Stop a helper process: politely, then for sure."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _check_exit(proc: subprocess.Popen) -> None:
    if proc.returncode != 0:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise RuntimeError(f"{proc.args} exited with {proc.returncode}: {err.strip()}")


def _reload_alsa_and_portaudio() -> None:
    """Make ALSA re-read its configuration and PortAudio re-enumerate devices.

    PortAudio (initialised when sounddevice is imported) caches the device list, and ALSA caches
    its parsed configuration; both must be refreshed after the environment changed.  Must not be
    called while a stream is open.
    """
    sd = sys.modules.get("sounddevice")
    if sd is not None:
        sd._terminate()
    lib = ctypes.util.find_library("asound")
    if lib:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(lib).snd_config_update_free_global()
    if sd is not None:
        sd._initialize()

"""The audio half of ``talkie check``: record from the microphone, play a tone on the speaker.

Both go through the daemon's own adapters (:class:`~talkie.audio.capture.Capture`,
:class:`~talkie.audio.playback.Playback`), so device selection, rates and resampling are exactly
what the daemon will use.  They must run inside an asyncio loop.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

MIC_RATE = 16000
SPEAKER_RATE = 24000
SILENCE_DBFS = -70.0  # a peak below this: nothing reaches talkie
QUIET_DBFS = -40.0  # a peak below this: works, but hardly anything was heard
CLIP_LIMIT = 3  # more full-scale samples than this: clipping
TONE_HZ = 440.0
TONE_S = 1.0
TONE_LEVEL = 0.3  # about -10 dBFS
STALL_GRACE_S = 3.0  # how much longer than asked the recording may take


@dataclass(frozen=True)
class Level:
    """What a recording sounds like: its length, peak and RMS level (dBFS), full-scale samples."""

    seconds: float
    peak_dbfs: float
    rms_dbfs: float
    clipped: int


def dbfs(amplitude: float) -> float:
    """An int16 amplitude in dB relative to full scale (-inf for 0)."""
    return 20.0 * math.log10(amplitude / 32768.0) if amplitude > 0 else -math.inf


def measure(samples: Any, rate: int = MIC_RATE) -> Level:
    """Peak and RMS level and clipping of int16 ``samples`` (numpy array)."""
    import numpy as np

    x = np.asarray(samples, dtype=np.int16)
    if not len(x):
        return Level(0.0, -math.inf, -math.inf, 0)
    wide = x.astype(np.float64)
    peak = float(np.max(np.abs(wide)))
    rms = float(np.sqrt(np.mean(wide * wide)))
    clipped = int(np.count_nonzero((x == 32767) | (x == -32768)))
    return Level(len(x) / rate, dbfs(peak), dbfs(rms), clipped)


def tone(
    seconds: float = TONE_S,
    rate: int = SPEAKER_RATE,
    freq: float = TONE_HZ,
    level: float = TONE_LEVEL,
) -> bytes:
    """A sine tone with 10 ms fades (no clicks), as s16le mono PCM."""
    import numpy as np

    n = int(seconds * rate)
    wave = level * np.sin(2 * np.pi * freq * np.arange(n) / rate)
    fade = min(n // 2, rate // 100)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        wave[:fade] *= ramp
        wave[n - fade :] *= ramp[::-1]
    return np.round(wave * 32767).astype("<i2").tobytes()


def _none_hint(exc: Exception, part: str, tool: str) -> str:
    """When PortAudio sees no device of that kind at all, say what to look at."""
    if "(none)" not in str(exc):
        return ""
    return f" (no audio device found at all: is the USB {part} plugged in? check `{tool} -l`)"


def device_label(info: Any) -> str:
    """'"USB Audio" (index 2)' for a resolved DeviceInfo."""
    where = "default device" if info.index is None else f"index {info.index}"
    return f'"{info.name}" ({where})'


async def check_microphone(report: Any, audio: Any, seconds: float) -> None:
    """Open the configured microphone, record ``seconds`` and report its level and clipping."""
    import numpy as np

    from talkie.audio.capture import Capture
    from talkie.audio.devices import AudioError

    loop = asyncio.get_running_loop()
    need = max(1, int(seconds * MIC_RATE)) * 2  # bytes
    chunks: list[bytes] = []
    got = [0]
    enough = asyncio.Event()

    def on_audio(pcm: bytes) -> None:
        chunks.append(pcm)
        got[0] += len(pcm)
        if got[0] >= need:
            enough.set()

    capture = Capture(
        audio.input_device,
        loop=loop,
        on_audio=on_audio,
        rate=MIC_RATE,
        block_ms=audio.chunk_ms,
        gain_db=audio.input_gain_db,
    )
    try:
        capture.start()
    except AudioError as exc:
        report.fail(f"microphone: {exc}{_none_hint(exc, 'microphone', 'arecord')}")
        report.skip("recording: no microphone")
        return
    try:
        rate = f"{capture.device_rate} Hz"
        if capture.device_rate != MIC_RATE:
            rate += f" (resampled to {MIC_RATE} Hz)"
        report.ok(f"microphone: {device_label(capture.device_info)} at {rate}")
        report.prompt(f"recording {seconds:g} s: say something...")
        try:
            async with asyncio.timeout(seconds + STALL_GRACE_S):
                await enough.wait()
        except TimeoutError:
            pass
    finally:
        capture.stop()
    samples = np.frombuffer(b"".join(chunks)[:need], dtype="<i2")
    report_level(report, measure(samples), seconds, capture.xruns + capture.overflows)


def report_level(report: Any, level: Level, seconds: float, glitches: int = 0) -> None:
    """The "recorded" line: OK with the levels, or FAIL with what to do."""
    what = f"recorded {seconds:g} s"
    if level.seconds == 0:
        report.fail(
            f"{what}: no audio arrived from the microphone in {seconds + STALL_GRACE_S:g} s:"
            " is another program using it? check `arecord -l` and [audio] input_device"
        )
        return
    if level.seconds < seconds * 0.95:
        report.fail(
            f"recorded only {level.seconds:.1f} of {seconds:g} s: the microphone stalls"
            f" ({glitches} glitches): check its USB cable and power supply"
        )
        return
    if level.peak_dbfs < SILENCE_DBFS:
        report.fail(
            f"{what}: silence (below {SILENCE_DBFS:g} dBFS): is the microphone muted?"
            " check `alsamixer` / [audio] input_gain_db"
        )
        return
    levels = f"level {level.peak_dbfs:.0f} dBFS peak, {level.rms_dbfs:.0f} dBFS average"
    if level.clipped > CLIP_LIMIT:
        report.fail(
            f"{what}: {levels}, clipping ({level.clipped} samples at full scale): lower"
            " the microphone's gain in `alsamixer` or [audio] input_gain_db"
        )
        return
    clipping = "no clipping" if not level.clipped else f"{level.clipped} samples at full scale"
    quiet = (
        ", quiet (speak up, or raise [audio] input_gain_db)" if level.peak_dbfs < QUIET_DBFS else ""
    )
    report.ok(f"{what}: {levels}, {clipping}{quiet}")


async def check_speaker(report: Any, audio: Any) -> None:
    """Play a 1 s 440 Hz tone on the configured speaker and wait until it has been heard."""
    from talkie.audio.devices import AudioError
    from talkie.audio.playback import Playback

    drained = asyncio.Event()
    playback = Playback(
        audio.output_device,
        loop=asyncio.get_running_loop(),
        on_drained=drained.set,
        rate=SPEAKER_RATE,
        volume=audio.volume,
    )
    try:
        playback.start()
    except AudioError as exc:
        report.fail(f"speaker: {exc}{_none_hint(exc, 'speaker', 'aplay')}")
        return
    try:
        playback.play(tone())
        playback.finish()
        try:
            async with asyncio.timeout(TONE_S + STALL_GRACE_S):
                await drained.wait()
        except TimeoutError:
            report.fail(
                f"speaker: {device_label(playback.device_info)}: the tone did not play"
                f" out within {TONE_S + STALL_GRACE_S:g} s: is another program using it?"
                " check `aplay -l` and [audio] output_device"
            )
            return
    finally:
        playback.stop()
    mute = " (but [audio] volume = 0: you will hear nothing)" if audio.volume <= 0 else ""
    report.ok(
        f"speaker: {device_label(playback.device_info)}; played a {TONE_S:g} s"
        f" {TONE_HZ:g} Hz tone (listen for it){mute}"
    )

"""No word lost under load: turns through the real path while stress-ng keeps every core busy.

    .venv/bin/python tests/bench/load.py [--turns 10] [--speech-s 5]

The daemon runs in this process (talkie.shell.app.App, built from a config file) with the real
google-genai SDK against the Live double, real PortAudio through PulseAudio null sinks (espeak-ng
speech played into the microphone), and the button on gpiozero's MockFactory, while `stress-ng
--cpu <cores>` (a Debian package) keeps all cores busy. Each turn: press, ``--speech-s`` of
speech, release, the double's answer played to its end.

Figures (last line, JSON):

* ``mic_samples_lost``: per turn, the speech played against what reached the double, aligned as
  one piece; the samples of the phrase in 50 ms windows that do not match it (correlation < 0.9)
  count as lost, summed over the turns (goal 0);
* ``capture_overflows``, ``capture_batches`` / ``capture_blocks`` (a late loop takes bigger
  batches), ``playback_underruns``;
* ``press_to_first_audio_ms_p95``: from the press to the turn's first audio chunk arriving at the
  double; ``release_to_answer_ms_p95``: from the release to the answer playing (the LED turning
  to speaking);
* the same without load (``unloaded_*``), in the same run, as the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "daemon")]

import numpy as np  # noqa: E402

from support.pulse import PulseHarness, align, read_wav  # noqa: E402
from tests.support.daemon import BUTTON, started_app  # noqa: E402
from tests.support.live_double import AutoReply, LiveDouble  # noqa: E402

KEY = "AIzaSy-loadbench-0123456789abcdef"
RATE = 16000
WINDOW = 800  # 50 ms at 16 kHz


def speech(path: Path, seconds: float) -> Path:
    """About ``seconds`` of espeak-ng speech, 16 kHz mono."""
    words = ("the quick brown fox jumps over the lazy dog while the radio plays a tune and "
             "somebody asks what the weather will be like tomorrow morning ") * 4
    wav = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-w", str(wav), "-s", "170", words], check=True)
    subprocess.run(["sox", str(wav), "-r", "16000", "-c", "1", "-b", "16", str(path), "trim", "0",
                    str(seconds)], check=True)
    return path


def lost_samples(played: np.ndarray, sent: np.ndarray, where: list[int] | None = None) -> int:
    """Samples of ``played`` missing from ``sent`` (or garbled): 50 ms windows that do not match
    (their starts, in ms into the phrase, appended to ``where``)."""
    where = [] if where is None else where
    if len(sent) < WINDOW:
        where.append(0)
        return len(played)
    lag, _ = align(played, sent)
    lost = 0
    for i in range(0, len(played) - WINDOW + 1, WINDOW):
        a = played[i:i + WINDOW].astype(np.float64)
        j = lag + i
        if np.dot(a, a) < 1e3 * WINDOW:  # a pause in the phrase: nothing to tell by
            continue
        if j < 0 or j + WINDOW > len(sent):
            lost += WINDOW
            where.append(i * 1000 // RATE)
            continue
        b = sent[j:j + WINDOW].astype(np.float64)
        denom = float(np.sqrt(np.dot(a, a) * np.dot(b, b))) or 1.0
        if float(np.dot(a, b)) / denom < 0.9:
            lost += WINDOW
            where.append(i * 1000 // RATE)
    return lost


async def turns(tmp: Path, double, pulse, wav: Path, n: int) -> dict:
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    from talkie.core.machine import Phase

    factory = MockFactory(pin_class=MockPWMPin)
    app, task, shows = await started_app(tmp, double, pulse, KEY, factory)
    button = factory.pin(BUTTON)
    presses, releases, answered = [], [], []
    for _ in range(n):
        since = len(shows.shown)
        presses.append(time.monotonic())
        button.drive_low()
        await pulse.aplay_into_mic(wav)
        releases.append(time.monotonic())
        button.drive_high()
        await shows.until(lambda p: Phase.SPEAKING in p[since:], 60)  # noqa: B023
        answered.append(time.monotonic())
        await shows.until(lambda p: p[-1] is Phase.IDLE, 60)
    capture, playback = app.audio.capture, app.audio.playback
    figures = {"capture_overflows": capture.overflows, "capture_batches": capture.batches,
               "capture_blocks": capture.blocks, "playback_underruns": playback.underruns}
    app.stop()
    await asyncio.wait_for(task, 10)
    return {"presses": presses, "releases": releases, "answered": answered, **figures}


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95)) if values else 0.0


def run(args, loaded: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp, PulseHarness() as pulse:
        work = Path(tmp)
        wav = speech(work / "speech.wav", args.speech_s)
        _, played = read_wav(wav)
        stress = None
        if loaded:
            stress = subprocess.Popen(["stress-ng", "--cpu", str(os.cpu_count() or 2), "--quiet"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        try:
            with LiveDouble(api_keys=(KEY,), auto_reply=AutoReply(seconds=1.0)) as double:
                got = asyncio.run(turns(work, double, pulse, wav, args.turns))
                messages = list(double.messages)
        finally:
            if stress is not None:
                stress.terminate()
                stress.wait(timeout=10)
    per_turn, current, firsts = [], None, []
    for m in messages:
        if m.kind == "activity_start":
            current = []
        elif m.kind == "audio" and current is not None:
            if not current:
                firsts.append(m.t)
            current.append(m.blob)
        elif m.kind == "activity_end" and current is not None:
            per_turn.append(np.frombuffer(b"".join(current), dtype=np.int16))
            current = None
    where: list[int] = []
    lost = sum(lost_samples(played, sent, where) for sent in per_turn)
    lost += len(played) * max(0, args.turns - len(per_turn))
    return {
        "mic_samples_lost": int(lost),
        # where in the phrase (ms) the lost 50 ms windows began, of every turn: the first or the
        # last windows are the press or the release, the others the loop
        "mic_lost_windows_ms": where,
        "turns_sent": len(per_turn),
        "capture_overflows": got["capture_overflows"],
        "capture_batches": got["capture_batches"],
        "capture_blocks": got["capture_blocks"],
        "playback_underruns": got["playback_underruns"],
        "press_to_first_audio_ms_p95": round(
            p95([(f - p) * 1000 for f, p in zip(firsts, got["presses"])]), 1),
        "release_to_answer_ms_p95": round(
            p95([(a - r) * 1000 for a, r in zip(got["answered"], got["releases"])]), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--speech-s", type=float, default=5.0)
    args = parser.parse_args()
    if shutil.which("stress-ng") is None:
        raise SystemExit("load.py needs stress-ng (apt install stress-ng)")
    result = run(args, loaded=True)
    base = run(args, loaded=False)
    for key in ("mic_samples_lost", "press_to_first_audio_ms_p95", "release_to_answer_ms_p95",
                "playback_underruns"):
        result[f"unloaded_{key}"] = base[key]
    result["turns"] = args.turns
    result["goals"] = {"mic_samples_lost": 0}
    print(json.dumps(result))


if __name__ == "__main__":
    main()

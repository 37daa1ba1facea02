"""What a turn costs: the daemon's CPU while it listens and speaks (echo control on), against a plain
client's loop doing the same turn in the same run.

    .venv/bin/python tests/bench/turn_cpu.py [--turns 3] [--listen-s 3] [--answer-s 3]

Both run as processes of their own on the PulseAudio test rig's devices against the Live double,
through the real google-genai SDK, a session already open (a first turn opens it and is not
counted). A turn: ``--listen-s`` of the microphone streamed up, then the double's
``--answer-s`` answer played. CPU time (user + system, /proc/PID/stat) per real-time second of
the turns:

* **talkie**: `talkie run`, the turn driven by `talkie ctl press` / `release` (the 10 ms
  capture ring, the echo canceller, the speech gate watching for a barge-in, the pre-roll, the
  uplink outbox, the jitter-buffered speaker);
* **plain**: what a seed client does: read the microphone at the device's 48 kHz in 20 ms
  blocks, resample each block to 16 kHz by FFT (``scipy.signal.resample``'s method, in numpy),
  send it with ``send_realtime_input``, and write the answer's audio to an output stream as it
  comes. No echo control, no barge-in, no reconnection.

The last line is one JSON object: ``talkie_turn_cpu_pct``, ``plain_turn_cpu_pct``, ``ratio``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "daemon")]

from support.pulse import PulseHarness  # noqa: E402
from tests.bench.idle import cpu_s, running_daemon, turn  # noqa: E402
from tests.support.live_double import AutoReply, LiveDouble  # noqa: E402

PLAIN = r'''
import asyncio, ssl, sys, time
import numpy as np
import sounddevice as sd
from google import genai
from google.genai import types

endpoint, ca, mic, speaker = sys.argv[1:5]
turns, listen_s = int(sys.argv[5]), float(sys.argv[6])


def fft_resample(x, n):
    """scipy.signal.resample's method: the spectrum cut (or padded) to n samples."""
    spec = np.fft.rfft(x.astype(np.float64))
    out = np.fft.irfft(spec[: n // 2 + 1], n) * (n / len(x))
    return np.clip(out, -32768, 32767).astype(np.int16)


async def turn(session, stream, out):
    await session.send_realtime_input(activity_start=types.ActivityStart())
    end = time.monotonic() + listen_s
    while time.monotonic() < end:
        data, _ = await asyncio.to_thread(stream.read, 960)
        pcm = fft_resample(data[:, 0], 320)
        await session.send_realtime_input(
            audio=types.Blob(data=pcm.tobytes(), mime_type="audio/pcm;rate=16000"))
    await session.send_realtime_input(activity_end=types.ActivityEnd())
    async for msg in session.receive():
        content = msg.server_content
        if content and content.model_turn:
            for part in content.model_turn.parts or []:
                if part.inline_data and part.inline_data.data:
                    audio = np.frombuffer(part.inline_data.data, np.int16)
                    await asyncio.to_thread(out.write, audio)
        if content and content.turn_complete:
            break


async def main():
    client = genai.Client(api_key="test-key", http_options=types.HttpOptions(
        api_version="v1beta", base_url=endpoint,
        async_client_args={"ssl": ssl.create_default_context(cafile=ca)}))
    config = types.LiveConnectConfig(
        response_modalities=["AUDIO"],
        realtime_input_config=types.RealtimeInputConfig(
            automatic_activity_detection=types.AutomaticActivityDetection(disabled=True)))
    async with client.aio.live.connect(model="gemini-live-2.5-flash-preview",
                                       config=config) as session:
        stream = sd.InputStream(device=mic, samplerate=48000, channels=1, dtype="int16",
                                blocksize=960)
        out = sd.OutputStream(device=speaker, samplerate=24000, channels=1, dtype="int16")
        stream.start()
        out.start()
        await turn(session, stream, out)  # opens what there is to open: not counted
        print("go", flush=True)
        sys.stdin.readline()
        for _ in range(turns):
            await turn(session, stream, out)
        await asyncio.to_thread(time.sleep, 0.2)
        print("done", flush=True)
        sys.stdin.readline()

asyncio.run(main())
'''


def plain(double, pulse, args) -> float:
    proc = subprocess.Popen(
        [sys.executable, "-c", PLAIN, double.endpoint, double.ca_file, pulse.mic_device,
         pulse.speaker_device, str(args.turns), str(args.listen_s)],
        env=pulse.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None and proc.stderr is not None
        if proc.stdout.readline().strip() != "go":
            proc.kill()
            raise SystemExit("the plain client failed: " + proc.stderr.read()[-2000:])
        c0, t0 = cpu_s(proc.pid), time.monotonic()
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "done"
        pct = 100 * (cpu_s(proc.pid) - c0) / (time.monotonic() - t0)
        proc.stdin.write("\n")
        proc.stdin.flush()
        return pct
    finally:
        proc.wait(timeout=20)


def talkie(double, pulse, args, work: Path) -> float:
    with running_daemon(double, pulse, work) as (proc, control):
        turn(control, args.listen_s)  # the session opens: not counted
        c0, t0 = cpu_s(proc.pid), time.monotonic()
        for _ in range(args.turns):
            turn(control, args.listen_s)
        return 100 * (cpu_s(proc.pid) - c0) / (time.monotonic() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--listen-s", type=float, default=3.0)
    parser.add_argument("--answer-s", type=float, default=3.0)
    args = parser.parse_args()
    double = LiveDouble(api_keys=None, auto_reply=AutoReply(seconds=args.answer_s, realtime=True))
    double.start_in_thread()
    try:
        with tempfile.TemporaryDirectory() as tmp, PulseHarness() as pulse:
            ours = talkie(double, pulse, args, Path(tmp))
            theirs = plain(double, pulse, args)
    finally:
        double.stop()
    print(json.dumps({"turns": args.turns, "listen_s": args.listen_s, "answer_s": args.answer_s,
                      "cores": os.cpu_count(), "talkie_turn_cpu_pct": round(ours, 2),
                      "plain_turn_cpu_pct": round(theirs, 2),
                      "ratio": round(ours / max(theirs, 0.01), 2)}))


if __name__ == "__main__":
    main()

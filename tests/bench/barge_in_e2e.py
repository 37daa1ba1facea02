"""Barge-in end to end: the user's first sample in the microphone to silence at the speaker,
through the real audio path.

    .venv/bin/python tests/bench/barge_in_e2e.py [--trials 12]

The daemon runs in-process with its real config, SDK (against the Live double over TLS), PortAudio
streams and PulseAudio null sinks; an echo room (tests/support/echo_room.py: 20 ms, -10 dB, a
reverb tail) feeds the speaker's monitor back into the microphone and mixes the user's voice in
at a block it notes. The answers carry a faint hum under the voice, so the speaker is silent only
once the answer has been cut. Each trial: the answer plays 1.5-3 s, the user (another voice,
-16 dBFS) speaks over it, and the latency is the number of 10 ms blocks, in the echo room's own
stream, from the block that carried the user's first sample into the microphone to the first of
20 silent blocks (below -60 dBFS: an underrun is shorter) of the speaker's monitor: PulseAudio's
buffers both ways, the capture block, the chain's decision, the flush and PortAudio's output
buffer included. A trial in which the speaker was silent as the user began is not counted
(``not_over_an_answer``). The user's turn gets an answer, which the next trial speaks over.

Beside it, ``tests/bench/barge_in_room.py`` gives the DSP chain's latency in harder rooms.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import numpy as np  # noqa: E402

from support.pulse import PulseHarness, write_wav  # noqa: E402
from tests.support import corpus as c  # noqa: E402
from tests.support.daemon import BUTTON, Shows, write_config  # noqa: E402
from tests.support.echo_room import BLOCK, EchoRoom  # noqa: E402
from tests.support.live_double import AutoReply, LiveDouble  # noqa: E402

KEY = "AIzaSy-bench-e2e-0123456789abcdef"


def answer_pcm(seconds: float) -> bytes:
    """The assistant's voice at 24 kHz with a hum 34 dB under it (never quite silent)."""
    import soxr

    talk = c.assistant_talk(seconds, seed=5)
    t = np.arange(len(talk)) / c.RATE
    talk = talk + 0.01 * np.sin(2 * np.pi * 180 * t).astype(np.float32)
    return c.to_s16(soxr.resample(talk, c.RATE, 24000).astype(np.float32)).tobytes()


async def run(args, pulse, tmp: Path, double) -> dict:
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    from talkie import config
    from talkie.config.credentials import load_api_key
    from talkie.core.machine import Phase
    from talkie.panel import open_panel
    from talkie.shell.app import App, Factories

    factory = MockFactory(pin_class=MockPWMPin)
    question = write_wav(tmp / "question.wav",
                         c.to_s16(c.scale_to(c.speech(c.USER_LINES[5], c.USER_VOICES[1]), -24)),
                         16000)
    settings = config.load(write_config(tmp, double, pulse, KEY))
    shows = Shows()
    app = App(settings, load_api_key(settings.live.api_key_file, env={}),
              factories=Factories(panel=lambda s, **kw: open_panel(s.panel, pin_factory=factory,
                                                                   **kw)),
              on_show=shows, control_path=str(tmp / "control"))
    task = asyncio.create_task(app.run())
    await asyncio.wait_for(app.ready.wait(), 10)
    rng = random.Random(args.seed)
    latencies, misses, not_over = [], 0, 0
    try:
        with EchoRoom(pulse, delay_ms=20, gain_db=-10, seed=1) as room:
            button = factory.pin(BUTTON)
            button.drive_low()
            await pulse.aplay_into_mic(question)
            button.drive_high()
            for k in range(args.trials):
                await shows.until(lambda p: p[-1] is Phase.SPEAKING, timeout=20)
                await asyncio.sleep(rng.uniform(1.5, 3.0))
                since = len(shows.phases)
                line = c.USER_LINES[k % len(c.USER_LINES)]
                user = c.to_s16(c.scale_to(c.speech(line, c.USER_VOICES[k % 3]), -16))
                room.say(user)
                try:
                    await shows.until(lambda p, since=since: Phase.LISTENING in p[since:],
                                      timeout=4)
                    async with asyncio.timeout(3):
                        while room.silent_at is None:
                            await asyncio.sleep(0.01)
                    if room.over_answer:
                        latencies.append((room.silent_at - room.said_at) * BLOCK * 1000 / c.RATE)
                    else:
                        not_over += 1  # the speaker was silent already: nothing to measure
                except TimeoutError:
                    misses += 1
                await asyncio.sleep(len(user) / c.RATE + 1.0)  # the user's turn ends, an answer
    finally:
        app.stop()
        await asyncio.wait_for(task, 10)
    lat = sorted(latencies)
    return {"trials": args.trials, "misses": misses, "not_over_an_answer": not_over,
            "e2e_latency_ms_p50": round(float(np.percentile(lat, 50)), 1) if lat else None,
            "e2e_latency_ms_p95": round(float(np.percentile(lat, 95)), 1) if lat else None,
            "e2e_latency_ms_max": round(max(lat), 1) if lat else None,
            "latencies_ms": [round(x, 1) for x in latencies]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    reply = AutoReply(pcm=answer_pcm(12.0), chunk_ms=40, delay_s=0.1)
    with tempfile.TemporaryDirectory() as tmp, PulseHarness() as pulse, \
            LiveDouble(api_keys=(KEY,), auto_reply=reply) as double:
        result = asyncio.run(asyncio.wait_for(run(args, pulse, Path(tmp), double),
                                              60 + 15 * args.trials))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Vision path: the VisionStreamer on the SyntheticSource at 768 px for ~10 s of real time, then
an idle period with the streamer stopped, against the raw cost of the pieces in the same run.

    .venv/bin/python tests/bench/vision.py [--seconds 10] [--fps 2.0] [--size 768]

The last line printed is one JSON object:
    {"fps_delivered": f, "fps_target": 2.0, "idle_frames": 0, "encode_ms_p95": e, "cpu_pct": c,
     "interval_ms_max_err": j, "drift_ms": d, "raw_encode_ms_p50": r, "encode_ratio_p95": e / r, ...}

fps_delivered is measured from the send timestamps (drift_ms: the last send against the first
plus (n - 1) periods); cpu_pct from time.process_time over the
streaming period (the whole process: loop, camera worker thread, test-card rendering);
idle_frames counts frames sent after stop(); the baselines are simplejpeg's encode of the same
frame and of a constant frame, and rendering the test card, measured in a tight loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "daemon")]

import numpy as np  # noqa: E402
import simplejpeg  # noqa: E402

from talkie.vision import SyntheticSource, VisionStreamer, read_number  # noqa: E402
from talkie.vision.source import render  # noqa: E402


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def timed_ms(fn, runs: int = 50) -> float:
    fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(samples)


async def stream(seconds: float, fps: float, side: int) -> dict:
    sends: list[float] = []
    jpegs: list[bytes] = []
    faults: list[str] = []

    def send(jpeg: bytes) -> bool:
        sends.append(time.monotonic())
        jpegs.append(jpeg)
        return True

    source = SyntheticSource(fps=30.0)
    streamer = VisionStreamer(source, send, fps=fps, size=(side, side), max_side=side,
                              quality=75, on_fault=faults.append)
    cpu0, wall0 = time.process_time(), time.monotonic()
    streamer.start()
    await asyncio.sleep(seconds)
    streamer.stop()
    await streamer.wait_stopped()
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - wall0
    sent_while_running = len(sends)

    idle_cpu0 = time.process_time()
    await asyncio.sleep(2.0)
    idle_cpu = time.process_time() - idle_cpu0

    intervals = [b - a for a, b in zip(sends, sends[1:])]
    numbers = [read_number(simplejpeg.decode_jpeg(j)) for j in jpegs]
    return {
        "fps_delivered": round((len(sends) - 1) / (sends[-1] - sends[0]), 3),
        "fps_target": fps,
        "frames": sent_while_running,
        "idle_frames": len(sends) - sent_while_running,
        "frames_in_order": numbers == sorted(set(numbers)),
        "interval_ms_max_err": round(max(abs(i - 1.0 / fps) for i in intervals) * 1000, 2),
        "drift_ms": round(((sends[-1] - sends[0]) - (len(sends) - 1) / fps) * 1000, 2),
        "encode_ms_p50": round(statistics.median(streamer.encode_ms), 3),
        "encode_ms_p95": round(p95(list(streamer.encode_ms)), 3),
        "jpeg_kb_mean": round(statistics.mean(len(j) for j in jpegs) / 1024, 1),
        "skipped_late": streamer.skipped_late,
        "faults": len(faults),
        "cpu_pct": round(100.0 * cpu / wall, 2),
        "cpu_pct_idle_after_stop": round(100.0 * idle_cpu / 2.0, 2),
        "camera_released": not source.is_open,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--size", type=int, default=768)
    args = parser.parse_args()

    frame = render(1234, (args.size, args.size))
    flat = np.full_like(frame, 128)
    baseline = {
        "raw_encode_ms_p50": timed_ms(lambda: simplejpeg.encode_jpeg(
            frame, quality=75, colorspace="RGB", colorsubsampling="420")),
        "raw_encode_flat_ms_p50": timed_ms(lambda: simplejpeg.encode_jpeg(
            flat, quality=75, colorspace="RGB", colorsubsampling="420")),
        "render_ms_p50": timed_ms(lambda: render(1234, (args.size, args.size))),
    }
    figures = asyncio.run(stream(args.seconds, args.fps, args.size))
    figures.update({k: round(v, 3) for k, v in baseline.items()})
    figures["encode_ratio_p95"] = round(figures["encode_ms_p95"] / baseline["raw_encode_ms_p50"], 2)
    # what the camera path costs per delivered frame, in CPU ms, against the bare encode
    cpu_ms_per_frame = figures["cpu_pct"] * 10.0 / figures["fps_delivered"]
    figures["cpu_ms_per_frame"] = round(cpu_ms_per_frame, 2)
    figures["cpu_ratio_vs_raw_encode"] = round(cpu_ms_per_frame / baseline["raw_encode_ms_p50"], 2)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

"""Start to READY: how long `talkie run` takes from exec to READY=1 on its notify socket, with real
audio devices (the PulseAudio test rig), against a bare interpreter's start-up in the same run.

    .venv/bin/python tests/bench/startup.py [--runs N]

The last line printed is one JSON object:
    {"runs": N, "ready_s_p50": a, "ready_s_p95": b, "python_s_p50": c, "ratio_p50": a / c,
     "rss_mb_max": r, ...}

rss_mb_max is the daemon's resident memory 2 s after READY (the Live SDK loaded in the background,
the microphone chain with its echo canceller and voice detector running), the largest of the runs.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from support.pulse import PulseHarness  # noqa: E402


#: After READY, how long to wait before reading the daemon's memory (the SDK loads meanwhile).
SETTLE_S = 2.0


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024


def time_to_ready(config: Path, env: dict[str, str], workdir: Path) -> tuple[float, float]:
    """Seconds from exec to READY=1, and the resident memory once the Live SDK is loaded too (the
    daemon loads it in the background after READY) with the microphone chain running."""
    path = workdir / "notify"
    path.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(30)
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "talkie", "run", "--config", str(config)],
                                env={**env, "NOTIFY_SOCKET": str(path)}, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while "READY=1" not in sock.recv(4096).decode():
                pass
            ready = time.perf_counter() - start
            time.sleep(SETTLE_S)
            return ready, rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def time_python(env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import asyncio"], env=env, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, PulseHarness() as pulse:
        workdir = Path(tmp)
        config = workdir / "talkie.toml"
        config.write_text(f'[audio]\ninput_device = "{pulse.mic_device}"\n'
                          f'output_device = "{pulse.speaker_device}"\n')
        env = {**pulse.env, "RUNTIME_DIRECTORY": tmp, "GPIOZERO_PIN_FACTORY": "none"}
        env = {k: v for k, v in env.items() if not k.startswith(("GEMINI_", "GOOGLE_"))}
        ready, python, rss = [], [], []
        for _ in range(args.runs):  # interleaved, so load on the machine hits both alike
            python.append(time_python(env))
            seconds, mb = time_to_ready(config, env, workdir)
            ready.append(seconds)
            rss.append(mb)
    result = {
        "runs": args.runs,
        "ready_s_p50": round(statistics.median(ready), 3),
        "ready_s_p95": round(p95(ready), 3),
        "python_s_p50": round(statistics.median(python), 3),
        "ratio_p50": round(statistics.median(ready) / statistics.median(python), 2),
        "target_ready_s": 0.5,
        "rss_mb_max": round(max(rss), 1),
        "target_rss_mb": 80,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""What an idle device costs: the daemon's CPU and memory while nobody talks, against a bare capture
of the same microphone in the same run.

    .venv/bin/python tests/bench/idle.py [--seconds 60] [--turns 10]

The daemon runs as `talkie run` does under systemd (its own process, READY on a notify socket) on
the PulseAudio test rig's devices, against the Live double (tests/support/live_double.py). Measured,
as CPU time of the whole process (user + system, /proc/PID/stat) per real-time second:

* **idle**: ``--seconds`` after READY (and the SDK's load, 2 s), no session open;
* **warm idle**: after ``--turns`` turns (`talkie ctl press`, a second of the room, `talkie ctl
  release`, the double's one-second answer played), ``--seconds`` with the session open and nobody
  talking;
* **baseline**: a bare capture of the same microphone (a sounddevice input stream with an empty
  callback, in the daemon's 10 ms blocks, in a Python process of its own) for ``--seconds``.

Memory: the daemon's resident set 2 s after READY and after the turns.

The daemon gets the interpreter settings the unit gives it (`systemd/talkie.service`'s
``Environment=PYTHON*`` lines: ``PYTHONOPTIMIZE=2``); ``--env NAME=VALUE`` adds or overrides one
(``--env PYTHONOPTIMIZE=0``: as before the unit set it).

Goals (issue: performance for a Pi Zero 2 W): idle and warm idle <= 1 % of a core here and
<= 2x the bare capture; RSS <= 80 MB after READY and after 10 turns. The last line is one JSON
object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "daemon")]

from support.pulse import PulseHarness  # noqa: E402
from tests.support.live_double import AutoReply, LiveDouble  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
SETTLE_S = 2.0

BARE = """
import sys, time
import sounddevice as sd
s = sd.RawInputStream(device=sys.argv[1], samplerate=16000, channels=1, dtype="int16",
                      blocksize=160, callback=lambda *a: None)
s.start()
print("started", flush=True)
time.sleep(float(sys.argv[2]))
"""


def cpu_s(pid: int, tid: int | None = None) -> float:
    """CPU time (user + system) the process (or its thread ``tid``) has used, in seconds."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    with open(path) as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024


def smaps_mb(pid: int) -> dict[str, float]:
    """The process's resident set by mapping (file name, or [heap], [anon]...), largest first."""
    sizes: dict[str, int] = {}
    name = ""
    with open(f"/proc/{pid}/smaps") as fh:
        for line in fh:
            head = line.split()
            if "-" in head[0] and not head[0].endswith(":"):
                name = os.path.basename(head[5]) if len(head) > 5 else "[anon]"
            elif head[0] == "Rss:":
                sizes[name] = sizes.get(name, 0) + int(head[1])
    ranked = sorted(sizes.items(), key=lambda kv: -kv[1])
    return {k: round(v / 1024, 2) for k, v in ranked if v >= 256}


def cpu_pct(pid: int, seconds: float, loop: list[float] | None = None) -> float:
    """The share of one core the process uses over the next ``seconds``; ``loop`` gets its main
    thread's (the event loop's) share appended."""
    c0, m0, t0 = cpu_s(pid), cpu_s(pid, pid), time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    if loop is not None:
        loop.append(100 * (cpu_s(pid, pid) - m0) / elapsed)
    return 100 * (cpu_s(pid) - c0) / elapsed


def ctl(control: Path, line: str) -> dict:
    from talkie.system.control_client import request

    return request(line, control, timeout=10)


def wait_phase(control: Path, phase: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ctl(control, "status").get("state") == phase:
            return
        time.sleep(0.05)
    raise TimeoutError(f"the daemon did not reach {phase!r}")


def unit_python_environment() -> dict[str, str]:
    """The interpreter's settings the unit gives the daemon (its Environment=PYTHON* lines)."""
    unit = REPO / "systemd" / "talkie.service"
    pairs = (line.removeprefix("Environment=").split("=", 1) for line in unit.read_text().splitlines()
             if line.startswith("Environment=PYTHON"))
    return dict(pairs)


@contextlib.contextmanager
def running_daemon(double, pulse: PulseHarness, work: Path, extra_env: dict[str, str] | None = None):
    """`talkie run` as its own process on the rig's devices against ``double``, until READY;
    yields (process, control socket path). ``extra_env`` is added to the daemon's environment
    only (a lever to measure, e.g. ``PYTHONOPTIMIZE=2``)."""
    key = work / "api-key"
    key.write_text("test-key\n")
    key.chmod(0o600)
    config = work / "talkie.toml"
    config.write_text(
        f'[live]\nendpoint = "{double.endpoint}"\nca_file = "{double.ca_file}"\n'
        f'api_key_file = "{key}"\n[audio]\ninput_device = "{pulse.mic_device}"\n'
        f'output_device = "{pulse.speaker_device}"\n[session]\nstate_dir = "{work}"\n')
    env = {**pulse.env, "RUNTIME_DIRECTORY": str(work), "GPIOZERO_PIN_FACTORY": "none"}
    env = {k: v for k, v in env.items() if not k.startswith(("GEMINI_", "GOOGLE_"))}
    env.update(unit_python_environment())
    env.update(extra_env or {})
    notify = work / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify))
        sock.settimeout(30)
        proc = subprocess.Popen([sys.executable, "-m", "talkie", "run", "--config", str(config)],
                                env={**env, "NOTIFY_SOCKET": str(notify)},
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            while "READY=1" not in sock.recv(4096).decode():
                pass
            yield proc, work / "control"
        finally:
            proc.terminate()
            proc.wait(timeout=15)


def turn(control: Path, listen_s: float) -> None:
    """One push-to-talk turn through `talkie ctl`, to the answer's end."""
    ctl(control, "press")
    wait_phase(control, "listening")
    time.sleep(listen_s)
    ctl(control, "release")
    wait_phase(control, "speaking", 30)
    wait_phase(control, "idle", 30)


def bare_capture(pulse: PulseHarness, seconds: float) -> float:
    proc = subprocess.Popen([sys.executable, "-c", BARE, pulse.mic_device, str(seconds + 5)],
                            env=pulse.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        time.sleep(1.0)
        return cpu_pct(proc.pid, seconds)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="set in the daemon's environment only (repeatable)")
    parser.add_argument("--smaps", action="store_true",
                        help="also print the daemon's resident memory by mapping after the turns")
    args = parser.parse_args()
    extra_env = dict(item.split("=", 1) for item in args.env)
    double = LiveDouble(api_keys=None, auto_reply=AutoReply(seconds=1.0)).start_in_thread()
    try:
        with tempfile.TemporaryDirectory() as tmp, PulseHarness() as pulse:
            with running_daemon(double, pulse, Path(tmp), extra_env) as (proc, control):
                time.sleep(SETTLE_S)
                ready_mb = rss_mb(proc.pid)
                loop: list[float] = []
                idle = cpu_pct(proc.pid, args.seconds, loop)
                for _ in range(args.turns):
                    turn(control, 1.0)
                time.sleep(1.0)
                turns_mb = rss_mb(proc.pid)
                warm = cpu_pct(proc.pid, args.seconds, loop)
                warm_mb = rss_mb(proc.pid)
                if args.smaps:
                    print(json.dumps(smaps_mb(proc.pid)))
            baseline = bare_capture(pulse, args.seconds)
    finally:
        double.stop()
    result = {
        "seconds": args.seconds,
        "turns": args.turns,
        "idle_cpu_pct": round(idle, 2),
        "warm_idle_cpu_pct": round(warm, 2),
        "baseline_cpu_pct": round(baseline, 2),
        # of which the event loop's thread (the rest: PortAudio's and the sound server's)
        "idle_loop_cpu_pct": round(loop[0], 2),
        "warm_idle_loop_cpu_pct": round(loop[1], 2),
        "idle_ratio": round(idle / max(baseline, 0.01), 2),
        "warm_idle_ratio": round(warm / max(baseline, 0.01), 2),
        "rss_mb_ready": round(ready_mb, 1),
        "rss_mb_after_turns": round(max(turns_mb, warm_mb), 1),
        "goals": {"idle_cpu_pct": 1.0, "idle_ratio": 2.0, "rss_mb": 80},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

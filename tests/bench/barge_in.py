"""Barge-in on the DSP chain: how fast the user's voice stops the answer, and whether the device's own
voice ever does.

    .venv/bin/python tests/bench/barge_in.py [--trials 40] [--echo-minutes 12] [--compare]

The chain is talkie's own (:class:`talkie.audio.uplink_chain.MicChain` with the speex echo canceller
and the speech gate at the shipped settings) in a simulated room (tests/support/bargein_sim.py): the
assistant's espeak-ng voices through a delay of 10-40 ms, a reverb tail and a coupling of -20 to 0 dB,
plus fan or babble noise, and in a trial the user (other voices, -30 to -22 dBFS) speaking over it.

* latency: from the user's first sample in the microphone signal to the first silent sample at the
  speaker, counted in samples (machine load cannot change it): the end of the 10 ms capture block in
  which the gate decided, plus one output period (a flush cuts what PortAudio holds; the integration
  test measures that cut on a real stream: the sound stops within the period).
* false_barge_ins: gate starts over ``--echo-minutes`` of the assistant's voice alone through the room
  (couplings 0, -3, -6, -10, -15, -20 dB; run faster than real time).
* erle_db: echo return loss enhancement of the canceller over those minutes (mean of the runs).
* cpu_pct: CPU time of the uplink chain per second of audio, in % of one core (the canceller runs
  throughout: the speaker plays all the time). The baseline in the same run is the chain with echo
  control off (the gate alone); ``cpu_ratio`` = chain / that baseline.

``--compare`` also runs the echo-only minutes with the WebRTC audio processing module (from the
``livekit`` wheel, if importable) in the canceller's place: its ERLE, CPU, false barge-ins, and the
memory its library costs beyond libspeexdsp's (each loaded in a fresh interpreter).

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "daemon"), str(REPO)]

import numpy as np  # noqa: E402

from tests.support import bargein_sim as sim  # noqa: E402

COUPLINGS = (0.0, -3.0, -6.0, -10.0, -15.0, -20.0)


def library_rss_mb(code: str) -> float:
    """Resident memory a fresh interpreter (with numpy) gains by running ``code`` (MB)."""
    import subprocess

    probe = ("import numpy\n"
             "def rss():\n"
             "    with open('/proc/self/status') as fh:\n"
             "        return next(int(l.split()[1]) for l in fh if l.startswith('VmRSS:'))\n"
             f"before = rss()\n{code}\nprint((rss() - before) / 1024)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def pct(values, q):
    return float(np.percentile(values, q)) if values else None


def trials(n: int) -> dict:
    lat, det, missed, early = [], [], 0, 0
    for k in range(n):
        r = sim.trial(k)
        if r["detected"] is None:
            missed += 1
        elif r["early"]:
            early += 1
        else:
            lat.append(r["latency_samples"] / 16)
            det.append(r["detect_samples"] / 16)
    return {"trials": n, "latency_ms_p50": round(pct(lat, 50), 1), "latency_ms_p95": round(pct(lat, 95), 1),
            "latency_ms_max": round(max(lat), 1), "detect_ms_p50": round(pct(det, 50), 1),
            "detect_ms_p95": round(pct(det, 95), 1), "missed": missed, "early": early}


class WebRtcEcho:
    """The WebRTC audio processing module (livekit's wheel) behind the canceller's interface."""

    def __init__(self, rate: int = 16000, frame: int = 160, **_) -> None:
        from livekit import rtc

        self.rtc, self.rate, self.frame = rtc, rate, frame
        self.apm = rtc.AudioProcessingModule(echo_cancellation=True)
        self.apm.set_stream_delay_ms(0)

    def process(self, mic, ref):
        r = self.rtc.AudioFrame(ref.tobytes(), self.rate, 1, self.frame)
        self.apm.process_reverse_stream(r)
        f = self.rtc.AudioFrame(mic.tobytes(), self.rate, 1, self.frame)
        self.apm.process_stream(f)
        return np.frombuffer(bytes(f.data), dtype=np.int16)


def echo_minutes(minutes: float, canceller=None) -> dict:
    runs = max(len(COUPLINGS), round(minutes))
    seconds = minutes * 60 / runs
    false, erles, cpu, audio_s = 0, [], 0.0, 0.0
    for k in range(runs):
        chain = sim.Chain(canceller=canceller)
        run = sim.echo_only(seconds, gain_db=COUPLINGS[k % len(COUPLINGS)], seed=100 + k,
                            chain=chain, noise="babble" if k % 4 == 3 else "fan")
        cpu += run["cpu_s"]
        audio_s += seconds
        false += run["false"]
        erles.append(run["erle_db"])
    return {"false_barge_ins": false, "echo_minutes": round(audio_s / 60, 2),
            "erle_db": round(float(np.mean(erles)), 1), "erle_db_min": round(float(min(erles)), 1),
            "cpu_pct": round(100 * cpu / audio_s, 3)}


def gate_only_cpu(seconds: float = 60.0) -> float:
    chain = sim.Chain(echo="off")
    return 100 * sim.echo_only(seconds, gain_db=-10.0, seed=7, chain=chain)["cpu_s"] / seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--echo-minutes", type=float, default=12.0)
    ap.add_argument("--compare", action="store_true")
    args = ap.parse_args()
    t0 = time.monotonic()
    out = trials(args.trials)
    print("trials:", json.dumps(out), flush=True)
    echo = echo_minutes(args.echo_minutes)
    print("echo:", json.dumps(echo), flush=True)
    out.update(echo)
    base = gate_only_cpu()
    out["cpu_pct_gate_only"] = round(base, 3)
    out["cpu_ratio"] = round(out["cpu_pct"] / base, 2) if base else None
    if args.compare:
        try:
            import livekit.rtc  # noqa: F401

            cost = library_rss_mb("from livekit import rtc; "
                                  "a = rtc.AudioProcessingModule(echo_cancellation=True)")
            cost -= library_rss_mb("import ctypes.util; "
                                   "ctypes.CDLL(ctypes.util.find_library('speexdsp'))")
            webrtc = echo_minutes(args.echo_minutes, canceller=WebRtcEcho)
            webrtc["rss_mb_more_than_speex"] = round(cost, 1)
            out["webrtc_apm"] = webrtc
        except ImportError as exc:
            out["webrtc_apm"] = f"not measured: {exc}"
    out["wall_s"] = round(time.monotonic() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

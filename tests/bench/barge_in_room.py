"""Barge-in in a real room: the daemon's chain against what real hardware does to it.

    .venv/bin/python tests/bench/barge_in_room.py [--trials 60] [--echo-minutes 30] [--jobs 2]
        [--seed 1] [--canceller speex|webrtc] [--reference daemon|oracle]

The world is tests/support/hard_room.py: image-method rooms (pyroomacoustics) of four sizes with
RT60 0.2-0.8 s, a speaker 3-30 cm from the microphone at a coupling of -20 to +6 dB and driven into
soft clipping, 48 kHz playback on a DAC clock 50-200 ppm off the microphone's, DAC and ADC
timestamps jittering by up to 0.5 ms, 0-30 ms of output delay the timestamps do not show; users
1-2 m away at -45 to -18 dBFS whose first sound is a fricative, a plosive, a vowel, a nasal or a
whisper; fan, babble or a TV across the room. The chain is the daemon's own, built as ``[audio]``
builds it (``talkie.shell.factories``), with the real EchoReference reading a 48 kHz history.

* **trials**: the assistant answers; 2.5-5 s in the user speaks over it. Each trial runs twice:
  in the first answer after a start (the canceller still learning the room: the headline
  figures) and in a later answer, after one of 8-14 s (``later_answer``: most barge-ins). A speech start while
  the answer plays and before the user's first sample at the microphone is a false barge-in
  (counted, not a latency; one before the answer, a TV say, is no barge-in, but the start it
  leaves the gate in can hide the user's); no start within 2 s of the user's first sample is a
  miss. Latency: from that first sample to the first silent sample at
  the speaker (the end of the deciding 10 ms block plus one output period), counted in samples.
  The turn a barge-in starts: how far before the user's first sample it begins (``turn_lead_ms``,
  the pre-roll from the voice's onset on), and how many begin after it (``turns_cut``: the first
  sound lost; ``turns_cut_fixed_preroll``: the same with a fixed 300 ms pre-roll, the baseline).
* **false barge-ins per hour**: ``--echo-minutes`` of the assistant speaking alone through the
  rooms (answers of 5-20 s with pauses of 1-4 s between), every speech start while an answer
  plays (its pauses included) counted, per hour of its speech.
* **first barge-in possible**: from the first answer's first sound to the echo delay being
  measured (before it only the button barges in).
* **baselines in the same run**: the same trials and minutes through the chain with
  ``echo = "off"`` (plain webrtcvad behind the level gates: no echo control at all) and
  ``echo = "half_duplex"`` (the microphone not consulted while the speaker plays).
* figures by condition: easy rooms (coupling <= 0 dB, no clipping) and hard ones, by onset class,
  by user level, by noise.

Goals (issue: barge-in in a real room): false barge-ins <= 1 per hour overall and 0 in easy rooms;
misses <= 5 % for users at -35 dBFS or louder; latency p50 <= 80 ms, p95 <= 150 ms, vowel onsets
p95 <= 60 ms; first barge-in possible <= 0.5 s; chain CPU <= 2 % of a core.

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "daemon"), str(REPO)]

import numpy as np  # noqa: E402

from tests.support import hard_room as hr  # noqa: E402

ECHOES = ("aec", "off", "half_duplex")
MISS_AFTER_S = 2.0
PREROLL_MS = 300  # [audio] preroll_ms's default


def pct(values, q):
    return float(np.percentile(values, q)) if len(values) else None


def _canceller(name: str):
    """A canceller in speex's place (``--canceller``), or None for the daemon's own."""
    if name == "speex":
        return None
    from tests.bench.barge_in import WebRtcEcho

    return WebRtcEcho


def trial_scene(k: int, seed: int, warm: bool):
    """Trial ``k`` of the set ``seed``: its room and its scene (the user speaking over the first
    answer after a start, or over a later one)."""
    cond = hr.hard_set(k + 1, seed=seed)[k]
    rng = np.random.default_rng(seed * 100 + k)
    user_at = 3.0 + float(rng.uniform(0, 2.5))
    if warm:  # a later answer: an earlier one of 8-14 s has taught the canceller the room
        first = 8.0 + float(rng.uniform(0, 6))
        second = first + 1.5
        user_at += second
        sc = hr.scene(cond, user_at + 4.0, user_at=user_at, k=k,
                      answers=[(0.2, first - 0.2), (second, user_at + 3.0 - second)])
    else:
        sc = hr.scene(cond, user_at + 4.0, user_at=user_at, k=k)
    return cond, sc


def echo_scene(k: int, seed: int, seconds: float):
    """Echo run ``k`` of the set ``seed``: the assistant alone, answers of 5-20 s with pauses."""
    cond = hr.hard_set(k + 1, seed=seed)[k]
    rng = np.random.default_rng(seed * 100 + k)
    answers, at = [], 0.2
    while at < seconds - 3:
        length = float(min(rng.uniform(5, 20), seconds - 1 - at))
        answers.append((at, length))
        at += length + float(rng.uniform(1, 4))
    return cond, hr.scene(cond, seconds, answers=answers, k=k)


def score(starts: list[int], onset: int, speaking) -> tuple[int, int | None, float | None]:
    """Speech starts (samples) in a trial whose user's first sample is ``onset``: the false ones
    (while the assistant speaks, ``speaking(sample)``, and before the onset), the first after the
    onset within ``MISS_AFTER_S`` (None: a miss), and its latency to the first silent sample at
    the speaker (the end of the deciding block plus one output period), in ms."""
    starts = [s for s in starts if s < onset + MISS_AFTER_S * hr.RATE]
    false = sum(1 for s in starts if s < onset and speaking(s))
    late = [s for s in starts if s >= onset]
    if not late:
        return false, None, None
    silent = -(-late[0] // hr.BLOCK) * hr.BLOCK + hr.BLOCK
    return false, late[0], (silent - onset) * 1000 / hr.RATE


def _chain_kw(canceller: str, reference: str, sc, cond, echo: str) -> dict:
    """``run_chain``'s options: the canceller (``--canceller``), and the reference the chain
    gets with echo control (``--reference oracle``: a perfect one, an upper bound)."""
    kw: dict = {"canceller": _canceller(canceller)}
    if reference == "oracle" and echo == "aec":
        from tests.support.oracle_reference import installer

        kw["on_chain"] = installer(sc, cond)
    return kw


def trial(args: tuple[int, int, str, bool, str]) -> list[dict]:
    k, seed, canceller, warm, reference = args
    cond, sc = trial_scene(k, seed, warm)
    out = []
    for echo in ECHOES:
        r = hr.run_chain(sc, echo, **_chain_kw(canceller, reference, sc, cond, echo))
        false, detected, latency = score(r["starts"], sc.onset,
                                         lambda s, sc=sc: hr.speaking_at(sc, s))
        # how long before the user's first sample the turn begins (its pre-roll), and, the
        # baseline, where a fixed pre-roll of [audio] preroll_ms would begin it
        lead = fixed = None
        if detected is not None:
            lead = (sc.onset - r["turn_from"][r["starts"].index(detected)]) * 1000 / hr.RATE
            fixed = (sc.onset - detected) * 1000 / hr.RATE + PREROLL_MS
        aligned = None if r["aligned_at"] is None else r["aligned_at"] - sc.first_answer_s
        out.append({"echo": echo, "k": k, "warm": warm, "false": false,
                    "miss": detected is None, "latency_ms": latency,
                    "lead_ms": lead, "fixed_lead_ms": fixed,
                    "aligned_s": aligned, "easy": cond.easy, "onset": cond.onset,
                    "user_db": cond.user_db, "noise": cond.noise, "clip": cond.clip,
                    "coupling_db": cond.coupling_db})
    return out


def echo_run(args: tuple[int, int, float, str, str]) -> list[dict]:
    k, seed, seconds, canceller, reference = args
    cond, sc = echo_scene(k, seed, seconds)
    out = []
    for echo in ECHOES:
        r = hr.run_chain(sc, echo, **_chain_kw(canceller, reference, sc, cond, echo))
        erle = None
        if echo == "aec":
            busy = np.repeat(sc.busy, hr.BLOCK)[:len(r["out"])]
            busy[: 2 * hr.RATE] = False  # after the canceller's first convergence
            mic = sc.mic[:len(r["out"])].astype(np.float64)
            cleaned = r["out"].astype(np.float64)
            if busy.any():
                erle = 10 * np.log10(float(np.mean(mic[busy] ** 2))
                                     / max(1e-9, float(np.mean(cleaned[busy] ** 2))))
        false = [s for s in r["starts"] if hr.speaking_at(sc, s)]  # between answers: no harm
        speaking = float(sc.busy.sum()) * hr.OUT_BLOCK / hr.DEVICE_RATE  # the hours counted
        out.append({"echo": echo, "k": k, "false": len(false), "seconds": speaking,
                    "cpu_s": r["cpu_s"], "erle_db": erle, "easy": cond.easy,
                    "coupling_db": cond.coupling_db, "clip": cond.clip})
    return out


def turn_figures(t: list[dict]) -> dict:
    """What the turns a barge-in starts hold: how many begin after the user's first sample (the
    first sound lost; or less than 50 ms before it), and how long before it they begin."""
    leads = [x["lead_ms"] for x in t if x["lead_ms"] is not None]
    fixed = [x["fixed_lead_ms"] for x in t if x["fixed_lead_ms"] is not None]
    return {"turns_cut": sum(1 for v in leads if v < 0),
            "turns_cut_fixed_preroll": sum(1 for v in fixed if v < 0),
            "turns_under_50ms_before": sum(1 for v in leads if v < 50),
            "turn_lead_ms_p5": pct(leads, 5), "turn_lead_ms_p50": pct(leads, 50),
            "turn_lead_ms_p95": pct(leads, 95)}


def trial_figures(t: list[dict]) -> dict:
    lat = [x["latency_ms"] for x in t if x["latency_ms"] is not None]
    vowels = [x["latency_ms"] for x in t if x["latency_ms"] is not None and x["onset"] == "vowel"]
    loud = [x for x in t if x["user_db"] >= -35]
    return {"trials": len(t), "latency_ms_p50": pct(lat, 50), "latency_ms_p95": pct(lat, 95),
            "vowel_latency_ms_p95": pct(vowels, 95), "misses": sum(x["miss"] for x in t),
            "miss_pct": 100 * sum(x["miss"] for x in t) / max(1, len(t)),
            "miss_pct_louder_than_-35dBFS": 100 * sum(x["miss"] for x in loud) / max(1, len(loud)),
            "false_in_trials": sum(x["false"] for x in t), **turn_figures(t)}


def figures(trials: list[dict], runs: list[dict], echo: str) -> dict:
    warm = [x for x in trials if x["echo"] == echo and x["warm"]]
    t = [x for x in trials if x["echo"] == echo and not x["warm"]]
    r = [x for x in runs if x["echo"] == echo]
    hours = sum(x["seconds"] for x in r) / 3600 or 1e-9
    lat = [x["latency_ms"] for x in t if x["latency_ms"] is not None]
    vowels = [x["latency_ms"] for x in t if x["latency_ms"] is not None and x["onset"] == "vowel"]
    loud = [x for x in t if x["user_db"] >= -35]
    easy_hours = sum(x["seconds"] for x in r if x["easy"]) / 3600
    aligned = [x["aligned_s"] for x in t if x["aligned_s"] is not None]
    cpu = sum(x["cpu_s"] for x in r) / max(1e-9, sum(x["seconds"] for x in r)) * 100
    out = {
        "trials": len(t),
        "latency_ms_p50": pct(lat, 50), "latency_ms_p95": pct(lat, 95),
        "vowel_latency_ms_p95": pct(vowels, 95),
        "misses": sum(x["miss"] for x in t),
        "miss_pct": 100 * sum(x["miss"] for x in t) / max(1, len(t)),
        "miss_pct_louder_than_-35dBFS": 100 * sum(x["miss"] for x in loud) / max(1, len(loud)),
        "false_in_trials": sum(x["false"] for x in t),
        **turn_figures(t),
        "echo_minutes": round(hours * 60, 1),
        "false_barge_ins_per_hour": sum(x["false"] for x in r) / hours,
        "false_barge_ins_per_hour_easy": sum(x["false"] for x in r if x["easy"])
        / max(1e-9, easy_hours),
        "first_barge_in_possible_s": pct(aligned, 95) if aligned else None,
        "cpu_pct": cpu,
    }
    if echo == "aec":
        erle = [x["erle_db"] for x in r if x["erle_db"] is not None]
        out["erle_db"] = float(np.mean(erle)) if erle else None
        groups = {}
        for key, name in (("onset", "onset"), ("noise", "noise")):
            for value in sorted({x[key] for x in t}):
                sel = [x for x in t if x[key] == value]
                ls = [x["latency_ms"] for x in sel if x["latency_ms"] is not None]
                groups[f"{name}={value}"] = {
                    "trials": len(sel), "misses": sum(x["miss"] for x in sel),
                    "false": sum(x["false"] for x in sel), "latency_ms_p95": pct(ls, 95)}
        for lo, hi in ((-45, -35), (-35, -25), (-25, -18)):
            sel = [x for x in t if lo <= x["user_db"] < hi or (hi == -18 and x["user_db"] >= hi)]
            groups[f"user_dB={lo}..{hi}"] = {"trials": len(sel),
                                             "misses": sum(x["miss"] for x in sel)}
        for easy in (True, False):
            rs = [x for x in r if x["easy"] == easy]
            groups["rooms=" + ("easy" if easy else "hard")] = {
                "minutes": round(sum(x["seconds"] for x in rs) / 60, 1),
                "false_per_hour": sum(x["false"] for x in rs)
                / max(1e-9, sum(x["seconds"] for x in rs) / 3600)}
        out["by_condition"] = groups
    if warm:  # the same trials on a later answer
        out["later_answer"] = trial_figures(warm)
    return out


def rounded(value):
    if isinstance(value, float):
        return round(value, 2)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--echo-minutes", type=float, default=30.0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--canceller", choices=("speex", "webrtc"), default="speex",
                        help="the daemon's speex canceller, or the WebRTC audio processing "
                        "module (AEC3, from the livekit wheel) in its place")
    parser.add_argument("--reference", choices=("daemon", "oracle"), default="daemon",
                        help="the daemon's echo reference, or a perfect one (what the speaker "
                        "truly emitted: tests/support/oracle_reference.py), an upper bound")
    args = parser.parse_args()
    run_s = 80.0  # of which the assistant speaks about 70 s
    n_runs = max(1, int(round(args.echo_minutes * 60 / (run_s * 0.85))))
    with ProcessPoolExecutor(args.jobs) as pool:
        jobs = [(k, args.seed, args.canceller, warm, args.reference) for warm in (False, True)
                for k in range(args.trials)]
        trials = [x for group in pool.map(trial, jobs) for x in group]
        jobs = [(k, args.seed + 1, run_s, args.canceller, args.reference)
                for k in range(n_runs)]
        runs = [x for group in pool.map(echo_run, jobs) for x in group]
    result = figures(trials, runs, "aec")
    result["canceller"] = args.canceller
    result["reference"] = args.reference
    for echo, name in (("off", "webrtcvad"), ("half_duplex", "half_duplex")):
        base = figures(trials, runs, echo)
        for key in ("latency_ms_p50", "latency_ms_p95", "miss_pct", "false_barge_ins_per_hour",
                    "cpu_pct"):
            result[f"{name}_{key}"] = base[key]
        if "later_answer" in base:
            result[f"{name}_later_answer_miss_pct"] = base["later_answer"]["miss_pct"]
    result["goals"] = {"false_barge_ins_per_hour": 1, "false_barge_ins_per_hour_easy": 0,
                       "miss_pct_louder_than_-35dBFS": 5, "latency_ms_p50": 80,
                       "latency_ms_p95": 150, "vowel_latency_ms_p95": 60,
                       "first_barge_in_possible_s": 0.5, "cpu_pct": 2}
    for key, value in rounded(result["by_condition"]).items():
        print(f"{key}: {value}", file=sys.stderr)
    print(json.dumps(rounded(result)))


if __name__ == "__main__":
    main()

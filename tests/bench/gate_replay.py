"""The speech gate alone, replayed over what the chain fed it in the hard rooms: a rule for the
double-talk guard tried in seconds instead of a bench run.

    .venv/bin/python tests/bench/gate_replay.py [--trials 60] [--echo-minutes 30] [--seed 1]
        [--record DIR] [--canceller speex|webrtc] [--gate MODULE:CLASS] [--set NAME=VALUE ...]

First it records: the scenes of ``tests/bench/barge_in_room.py`` (the same trials, first and later
answer, and the same minutes of the assistant alone; ``--seed`` as there) run through the daemon's
chain with ``echo = "aec"`` (its speex canceller, or ``--canceller webrtc`` as in that bench), and
every call the chain makes to its gate is kept (the cleaned frame,
the reference's levels, the microphone's, whether an answer is under way, the coherence the gate
would be told, and each reset) in ``--record`` DIR (kept for the next run: a directory that holds
a recording is replayed without recording again). Then it replays them through a fresh gate: the
shipped one (``SpeechGate`` as ``[audio]``'s defaults build it), or ``--gate MODULE:CLASS``
(constructed with ``--set`` keyword arguments; a subclass of ``talkie.audio.vad.SpeechGate``,
say, on ``sys.path``), and counts as the bench does: a start while the assistant speaks and before
the user's first sound is a false barge-in, no start within 2 s of it a miss; latency to the end
of the deciding frame plus one output block.

A replay of the shipped gate gives the chain's own starts, every one (``mismatched_runs``, 0).
What it cannot show is what the chain would do differently after a start (nothing, in these
scenes: the bench does not stop the answer) or with another canceller (record again). The last
line is one JSON object.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "daemon"), str(REPO), str(REPO / "tests" / "bench")]

import numpy as np  # noqa: E402

import barge_in_room as room  # noqa: E402
from tests.support import hard_room as hr  # noqa: E402

NO_REF_NOW = -999.0  # in a recording: the chain gave no reference level of the frame
RUN_S = 80.0  # as barge_in_room.py


def _record(sc, cond, path: Path, canceller: str = "speex") -> None:
    """Run ``sc`` through the chain (``canceller``: as ``barge_in_room.py --canceller``), keeping
    what it feeds its gate, into ``path`` (.npz)."""
    from talkie.audio.vad import FAR_DB

    calls: list[tuple] = []

    def instrument(chain) -> None:
        gate = chain.gate
        feed, reset = gate.feed, gate.reset

        def recorded_feed(out, ref_db=-120.0, mic_db=-120.0, busy=False, ref_now_db=None,
                          coherence=None):
            c = coherence() if coherence is not None and ref_db > FAR_DB else -1.0
            calls.append((chain.frames, 0, out.copy(), ref_db, mic_db, busy,
                          NO_REF_NOW if ref_now_db is None else ref_now_db, c))
            return feed(out, ref_db, mic_db, busy, ref_now_db,
                        (lambda: c) if coherence is not None else None)

        def recorded_reset():
            calls.append((chain.frames, 1, None, 0.0, 0.0, False, 0.0, -1.0))
            reset()

        gate.feed, gate.reset = recorded_feed, recorded_reset

    r = hr.run_chain(sc, "aec", on_chain=instrument, canceller=room._canceller(canceller))
    frames = len(sc.mic) // hr.BLOCK
    speaking = np.array([hr.speaking_at(sc, (f + 1) * hr.BLOCK) for f in range(frames)])
    blank = np.zeros(hr.BLOCK, dtype=np.int16)
    np.savez_compressed(
        path, frame=np.array([c[0] for c in calls], dtype=np.int64),
        reset=np.array([c[1] for c in calls], dtype=np.int8),
        out=np.array([blank if c[2] is None else c[2] for c in calls], dtype=np.int16),
        ref_db=np.array([c[3] for c in calls]), mic_db=np.array([c[4] for c in calls]),
        busy=np.array([c[5] for c in calls]), ref_now_db=np.array([c[6] for c in calls]),
        coherence=np.array([c[7] for c in calls]), speaking=speaking,
        onset=-1 if sc.onset is None else sc.onset, chain_starts=np.array(r["starts"]),
        easy=cond.easy, user_db=cond.user_db, onset_class=cond.onset,
        seconds=float(sc.busy.sum()) * hr.OUT_BLOCK / hr.DEVICE_RATE)


def record_trial(args: tuple[int, int, bool, str, str]) -> None:
    k, seed, warm, out, canceller = args
    cond, sc = room.trial_scene(k, seed, warm)
    _record(sc, cond, Path(out) / f"trial-{'later' if warm else 'first'}-{k:03d}.npz", canceller)


def record_echo(args: tuple[int, int, str, str]) -> None:
    k, seed, out, canceller = args
    cond, sc = room.echo_scene(k, seed, RUN_S)
    _record(sc, cond, Path(out) / f"echo-{k:03d}.npz", canceller)


def make_gate(spec: str | None, settings: dict):
    """The gate to replay: ``MODULE:CLASS(**settings)``, or the shipped one."""
    if spec is None:
        from talkie.audio.vad import SpeechGate
        from talkie.config.settings import AudioSettings

        a = AudioSettings()
        shipped = {"aggressiveness": a.vad_aggressiveness, "start_frames": a.vad_start_frames,
                   "window_frames": a.vad_window_frames, "end_ms": a.vad_end_ms}
        return SpeechGate(16000, **{**shipped, **settings})
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)(**settings)


def replay(args: tuple[str, str | None, dict]) -> dict:
    """One recording through a fresh gate: its starts, scored as the bench scores them."""
    path, spec, settings = args
    with np.load(path) as npz:  # (each item of an npz is read again at each access)
        d = {key: npz[key] for key in npz.files}
    gate = make_gate(spec, settings)
    starts = []  # the sample at the end of the deciding frame, as the chain reports it
    for i in range(len(d["frame"])):
        if d["reset"][i]:
            gate.reset()
            continue
        c = float(d["coherence"][i])
        now = float(d["ref_now_db"][i])
        decision = gate.feed(d["out"][i], float(d["ref_db"][i]), float(d["mic_db"][i]),
                             bool(d["busy"][i]), None if now == NO_REF_NOW else now,
                             (lambda c=c: c) if c >= 0 else None)
        if decision == 1:
            starts.append(int(d["frame"][i]) * hr.BLOCK)
    speaking = d["speaking"]
    name = Path(path).name
    out = {"name": name, "easy": bool(d["easy"]), "user_db": float(d["user_db"]),
           "onset": str(d["onset_class"]), "seconds": float(d["seconds"]),
           "matches_chain": starts == [int(s) for s in d["chain_starts"]]}
    if name.startswith("echo"):
        out["false"] = sum(1 for s in starts if speaking[s // hr.BLOCK - 1])
        return out
    out["false"], detected, out["latency_ms"] = room.score(
        starts, int(d["onset"]), lambda s: bool(speaking[s // hr.BLOCK - 1]))
    out["miss"] = detected is None
    out["lead_ms"] = out["fixed_lead_ms"] = None  # (the pre-roll is the chain's, not replayed)
    return out


def figures(results: list[dict]) -> dict:
    echo = [r for r in results if r["name"].startswith("echo")]
    hours = sum(r["seconds"] for r in echo) / 3600 or 1e-9
    easy_hours = sum(r["seconds"] for r in echo if r["easy"]) / 3600 or 1e-9
    out = {"echo_minutes": round(hours * 60, 1),
           "false_barge_ins_per_hour": sum(r["false"] for r in echo) / hours,
           "false_barge_ins_per_hour_easy": sum(r["false"] for r in echo if r["easy"]) / easy_hours,
           "mismatched_runs": sum(not r["matches_chain"] for r in results)}
    for key, prefix in (("first_answer", "trial-first"), ("later_answer", "trial-later")):
        t = [r for r in results if r["name"].startswith(prefix)]
        # the bench's own figures of the trials, but those of the turns' pre-roll (not replayed)
        out[key] = {k: v for k, v in room.trial_figures(t).items() if not k.startswith("turn")}
    out["trials"] = out["first_answer"]["trials"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="the speech gate replayed over the hard rooms")
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--echo-minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--record", type=Path, default=None,
                        help="keep the recording here (replayed as it is when it holds one)")
    parser.add_argument("--canceller", choices=("speex", "webrtc"), default="speex",
                        help="the canceller the recording is made with (as barge_in_room.py's)")
    parser.add_argument("--gate", default=None, metavar="MODULE:CLASS")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a keyword argument of the gate (a number)")
    args = parser.parse_args()
    settings = {k: float(v) for k, v in (item.split("=", 1) for item in args.set)}
    with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(args.jobs) as pool:
        where = args.record or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        if not any(where.glob("*.npz")):
            n_runs = max(1, int(round(args.echo_minutes * 60 / (RUN_S * 0.85))))
            list(pool.map(record_trial, [(k, args.seed, warm, str(where), args.canceller)
                                         for warm in (False, True) for k in range(args.trials)]))
            list(pool.map(record_echo, [(k, args.seed + 1, str(where), args.canceller)
                                        for k in range(n_runs)]))
        paths = sorted(str(p) for p in where.glob("*.npz"))
        results = list(pool.map(replay, [(p, args.gate, settings) for p in paths], chunksize=4))
    result = figures(results)
    result["replayed_runs"] = len(results)
    print(json.dumps(room.rounded(result)))


if __name__ == "__main__":
    main()

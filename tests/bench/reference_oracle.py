"""How much echo the daemon's reference lets the canceller take out, against a perfect one, over
the seconds of a first answer in the hard rooms.

    .venv/bin/python tests/bench/reference_oracle.py [--rooms 12] [--seed 1] [--seconds 29]

Each room of ``tests/support/hard_room.py``'s hard set (``--seed`` as in
``tests/bench/barge_in_room.py``) plays one answer of ``--seconds`` alone, twice through the
daemon's chain with ``echo = "aec"``: once with its own
:class:`~talkie.audio.reference.EchoReference` (the 48 kHz history placed by the timestamps, the
echo found by phase correlation, the clocks' drift counted from the measured delays), once with
an **oracle** (``tests/support/oracle_reference.py``): what the speaker really emitted, leading
its echo by the reference's ``lead_ms``. The figure is the echo's reduction (its power over the
power of what is left of it after echo control), per window of seconds after the answer's first
sample, the median over the rooms, easy rooms (coupling <= 0 dB, no clipping) and
hard ones apart. Where the two differ, the reference is the limit, not the canceller.

The last line is one JSON object (``erle_db``: by reference, by rooms, window -> dB).
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
from tests.support.oracle_reference import installer  # noqa: E402

WINDOWS = ((0.6, 1.5), (1.5, 3.0), (3.0, 6.0), (6.0, 10.0), (10.0, 15.0), (15.0, 20.0),
           (20.0, 28.0))


def room(args: tuple[int, int, float, bool]) -> tuple[bool, list[float]]:
    """One room's echo reduction per window (dB), with the daemon's reference or the oracle."""
    k, seed, seconds, oracle = args
    cond = hr.hard_set(k + 1, seed=seed)[k]
    sc = hr.scene(cond, seconds + 0.5, answers=[(0.2, seconds)], k=k)
    r = hr.run_chain(sc, "aec", on_chain=installer(sc, cond) if oracle else None)
    out = r["out"].astype(np.float64)
    n = len(out)
    echo = np.clip(sc.echo_only[:n] * 32767, -32768, 32767)
    left = out - (sc.mic[:n].astype(np.float64) - echo)  # what echo control left of the echo
    row = []
    for a, b in WINDOWS:
        s = slice(int((sc.first_answer_s + a) * hr.RATE), int((sc.first_answer_s + b) * hr.RATE))
        if s.stop > n:
            break
        row.append(float(10 * np.log10(np.sum(echo[s] ** 2) / (np.sum(left[s] ** 2) + 1e-3))))
    return cond.easy, row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rooms", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=29.0)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    result: dict = {"rooms": args.rooms, "seed": args.seed, "seconds": args.seconds,
                    "erle_db": {}}
    with ProcessPoolExecutor(args.jobs) as pool:
        for name, oracle in (("daemon", False), ("oracle", True)):
            rows = list(pool.map(room, [(k, args.seed, args.seconds, oracle)
                                        for k in range(args.rooms)]))
            figures = {}
            for label, easy in (("easy", True), ("hard", False)):
                kept = [r for e, r in rows if e == easy]
                if not kept:
                    continue
                width = min(len(r) for r in kept)
                medians = np.median(np.array([r[:width] for r in kept]), axis=0)
                figures[label] = {f"{a:g}-{b:g}s": round(float(v), 1)
                                  for (a, b), v in zip(WINDOWS, medians)}
                figures[f"{label}_rooms"] = len(kept)
            result["erle_db"][name] = figures
            print(name, json.dumps(figures), flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

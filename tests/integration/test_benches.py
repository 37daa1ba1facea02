"""The benchmarks in tests/bench still run and end with their JSON line (figures are not judged
here: speed is measured by the benches, not asserted on a clock in the suite)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
#: Figures that must be exactly 0 (counts of what went wrong), by script.
ZEROS = {"tools.py": {"unanswered", "duplicated_effects"},
         "load.py": {"mic_samples_lost", "capture_overflows"},
         # the shipped gate replayed over its own recording starts where the chain started
         "gate_replay.py": {"mismatched_runs"}}


@pytest.mark.parametrize("script,args,keys", [
    ("startup.py", ["--runs", "1"], {"runs", "ready_s_p50", "ready_s_p95", "python_s_p50",
                                     "ratio_p50"}),
    ("handover.py", ["--handovers", "2", "--drops", "2"],
     {"handovers", "handover_gap_ms_p95", "idle_handover_ms_p95", "reconnect_ms_p95",
      "baseline_connect_ms_p50"}),
    ("barge_in_room.py", ["--trials", "3", "--echo-minutes", "1", "--jobs", "1"],
     {"trials", "echo_minutes", "cpu_pct", "first_barge_in_possible_s"}),
    ("gate_replay.py", ["--trials", "2", "--echo-minutes", "1", "--jobs", "1"],
     {"trials", "echo_minutes", "replayed_runs"}),
    ("reference_oracle.py", ["--rooms", "2", "--seconds", "4", "--jobs", "1"],
     {"rooms", "seconds"}),
    ("barge_in_e2e.py", ["--trials", "2"], {"trials", "e2e_latency_ms_p50"}),
    ("barge_in.py", ["--trials", "3", "--echo-minutes", "1"],
     {"trials", "latency_ms_p50", "latency_ms_p95", "echo_minutes", "erle_db", "cpu_pct"}),
    ("tools.py", ["--calls", "20"], {"calls", "builtin_ms_p95", "mcp_stdio_ms_p95",
                                     "mcp_http_ms_p95"}),
    ("idle.py", ["--seconds", "3", "--turns", "1"],
     {"idle_cpu_pct", "warm_idle_cpu_pct", "baseline_cpu_pct", "rss_mb_ready",
      "rss_mb_after_turns"}),
    ("load.py", ["--turns", "1", "--speech-s", "2"],
     {"turns_sent", "capture_blocks", "press_to_first_audio_ms_p95"}),
    ("turn_cpu.py", ["--turns", "1", "--listen-s", "1", "--answer-s", "1"],
     {"talkie_turn_cpu_pct", "plain_turn_cpu_pct", "ratio"}),
])
def test_bench_prints_its_figures_as_the_last_line(script, args, keys, pulse):
    result = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert keys <= figures.keys()
    assert all(isinstance(figures[k], (int, float)) and figures[k] > 0 for k in keys)
    zeros = ZEROS.get(script, set())
    assert zeros <= figures.keys()
    assert {k: figures[k] for k in zeros} == dict.fromkeys(zeros, 0), figures

"""goAway handovers and dropped links, measured: how long the uplink stalls, how fast a dropped link
is back, and that no chunk of what the user said is lost or sent twice; against a plain connect
through the same SDK to the same double, in the same run.

    .venv/bin/python tests/bench/handover.py [--handovers N] [--drops M] [--seed S]

The daemon runs in-process (real SDK, real playback into the PulseAudio test rig's speaker, mock
panel) against the Live double (tests/support/live_double.py, its own thread and loop, TLS on
127.0.0.1), with the loop's own clock for every timer. The microphone is a NumberedMic fed in real
time: one numbered 20 ms chunk every 20 ms while the button is held.

What is measured (all times are time.monotonic(), the double's arrival stamps included):

* ``handover_gap_ms``: for a time-short goAway (5 s left: the daemon hands over at once) that
  arrives while the user speaks, or right after the release (before the answer), the stall of the
  uplink: arrival at the double of the first audio chunk on the new connection minus that of the
  last audio chunk on the old one. It spans reading the goAway, closing the old socket (the daemon
  waits for that before it resumes), a new TLS + websocket connect, setup, and the turn's replay
  beginning. Half the handovers are mid-turn, half right after the release (reported apart too).
  ``handover_fresh_gap_ms``: mid-turn, up to the first chunk the old connection never carried (the
  replay sends the turn from its start first). A "right after" goAway that the answer beats is a
  handover at a safe point with nothing to resend: counted in ``handovers_after_the_answer``.
* ``idle_handover_ms``: for a goAway while idle, from sending it to the new connection's setup
  message arriving at the double (``--handovers`` of them too).
* ``reconnect_ms``: a connection aborted (no close frame: the SDK sees 1006) while the user speaks,
  from the abort to the new connection's setup message arriving at the double. The daemon
  reconnects at once after a session that was stable, and backs off (full jitter) when links keep
  dropping; here drops come every second, so the jitter is pinned to 0, which makes every back-off
  its floor of 100 ms (talkie.core.machine.state.MIN_RETRY_S): ``reconnect_first_ms`` is the immediate
  case, ``reconnect_ms_p95`` includes the floor.
* ``lost_chunks`` / ``duplicated_chunks``: every chunk spoken, against the conversation the service
  holds at the end: the complete user turns (activity_start, audio..., activity_end on one
  connection) it answered to the end, followed back through the resumption handles each new
  connection set up with. A turn cut by a drop or a handover, or sent whole but not answered before
  the connection went, is not in that conversation (the new connection resumes from a handle that
  predates it): the daemon sends it again whole, and that copy is the one counted.
  ``mixed_turns``: kept turns that are not exactly one spoken turn; ``resent_turns``: spoken turns
  that went whole over more than one connection (for information: that is the replay).
* ``baseline_connect_ms``: a plain connect with the SDK (genai.Client(...).aio.live.connect, the
  daemon's own options), from the call to the setup message arriving at the double, half before and
  half after the run; ``*_ratio`` are the p95 figures above divided by its p50.

The last line printed is one JSON object:
    {"handovers": N, "handover_gap_ms_p95": x, "lost_chunks": 0, "duplicated_chunks": 0,
     "reconnect_ms_p95": y, "idle_handover_ms_p95": z, "baseline_connect_ms_p50": b, ...}
Goal on loopback: gap p95 <= 300 ms, reconnect p95 <= 1000 ms, nothing lost or duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from support.pulse import PulseHarness  # noqa: E402
from tests.support.daemon import BUTTON, write_config  # noqa: E402
from tests.support.live_double import AutoReply, LiveDouble, tone  # noqa: E402
from tests.support.rig import PLAIN_AUDIO, NumberedMic, segments, seqs_of, until  # noqa: E402

KEY = "AIzaSy-bench-handover-000000"
CHUNK_S = 0.02
BASELINE_CONNECTS = 10
GOAWAY_SHORT_S = 5.0  # <= the daemon's handover_now_s (10 s): it hands over at once
GOAWAY_IDLE_S = 30.0


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


class Bench:
    def __init__(self, app, mic: NumberedMic, double: LiveDouble, factory, rng: random.Random):
        self.app, self.mic, self.double, self.factory, self.rng = app, mic, double, factory, rng
        self.spoken: list[list[int]] = []
        self.gaps: list[float] = []
        self.gaps_by_when: dict[str, list[float]] = {"mid_turn": [], "after_release": []}
        self.fresh_gaps: list[float] = []
        self.idle_times: list[float] = []
        self.reconnects: list[tuple[int, float]] = []  # (attempts before the drop, seconds)
        self._feeding = False
        self._feeder: asyncio.Task | None = None
        self.last_conn = 0  # the daemon's last connection (baseline connects follow it)
        self.after_answer = 0  # "right after" goAways that the answer beat: no uplink gap

    # ---- the user

    async def _feed(self) -> None:
        """One chunk every 20 ms, on an absolute schedule, while the button is held."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while self._feeding:
            self.mic.speak(1)
            next_at += CHUNK_S
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def press(self) -> int:
        self.factory.pin(BUTTON).drive_low()
        await until(lambda: self.app.state.held, 5, "the press")
        first = self.mic.next_seq
        self._feeding = True
        self._feeder = asyncio.create_task(self._feed())
        return first

    async def release(self, first: int) -> None:
        self._feeding = False
        await self._feeder
        self.spoken.append(list(range(first, self.mic.next_seq)))
        self.factory.pin(BUTTON).drive_high()
        await until(lambda: not self.app.state.held, 5, "the release")

    async def until_idle(self) -> None:
        from talkie.core.machine import Link, Phase

        await until(lambda: self.app.state.phase is Phase.IDLE and self.app.state.link is Link.UP,
                    20, "idle on an open link")

    # ---- the double

    def current(self):
        conn = self.double.connections[-1]
        assert conn.setup_completed and not conn.closed, conn
        return conn

    async def setup_after(self, number: int) -> float:
        """Arrival time of the setup of the first connection after connection ``number``."""
        found = await self.double.wait_for(
            lambda: next((m for m in self.double.messages if m.kind == "setup" and m.conn > number),
                         None), 20, what="a new connection's setup")
        return found.t

    def audio_times(self, conn: int) -> list[tuple[int, float]]:
        """(chunk number, arrival) of every audio chunk on connection ``conn``."""
        return [(seq, m.t) for m in self.double.messages_of("audio", conn)
                for seq in seqs_of(m.blob or b"")]

    # ---- the runs

    async def talking_handover(self, right_after: bool) -> None:
        first = await self.press()
        await asyncio.sleep(self.rng.uniform(0.15, 0.3))
        old = self.current()
        if right_after:
            await self.release(first)
        await old.send_go_away(GOAWAY_SHORT_S)
        await self.setup_after(old.number)
        if not right_after:
            await asyncio.sleep(self.rng.uniform(0.15, 0.3))
            await self.release(first)
        await self.until_idle()
        new = self.current()
        before, after = self.audio_times(old.number), self.audio_times(new.number)
        if not after:  # the answer came first: a handover at a safe point, nothing to resend
            self.after_answer += 1
            return
        sent_before = {seq for seq, _ in before}
        self.gaps.append(after[0][1] - before[-1][1])
        self.gaps_by_when["after_release" if right_after else "mid_turn"].append(self.gaps[-1])
        fresh = [t for seq, t in after if seq not in sent_before]
        if fresh:
            self.fresh_gaps.append(fresh[0] - before[-1][1])

    async def idle_handover(self) -> None:
        old = self.current()
        sent = time.monotonic()
        await old.send_go_away(GOAWAY_IDLE_S)
        self.idle_times.append(await self.setup_after(old.number) - sent)
        await self.until_idle()

    async def drop(self) -> None:
        first = await self.press()
        await asyncio.sleep(self.rng.uniform(0.15, 0.3))
        old = self.current()
        attempts = self.app.state.attempt
        dropped = time.monotonic()
        await old.abort()
        self.reconnects.append((attempts, await self.setup_after(old.number) - dropped))
        await asyncio.sleep(self.rng.uniform(0.1, 0.2))
        await self.release(first)
        await self.until_idle()

    async def plain_turn(self) -> None:
        first = await self.press()
        await asyncio.sleep(0.1)
        await self.release(first)
        await self.until_idle()

    def accounting(self) -> dict[str, int]:
        """Spoken chunks against the conversation the service holds at the end, followed back
        through the resumption handles: the last connection's answered turns, after those the
        handle it resumed with stood for (the double's auto-reply issues ``handle-<conn>-<n>``
        after its n-th answer on a connection), and so on back to the first connection."""
        conns = {c.number: c for c in self.double.connections}
        answered: dict[int, list[list[int]]] = {n: [] for n in conns}
        copies: dict[tuple[int, ...], int] = {}
        for seg in segments(self.double.messages):
            if seg.complete:
                copies[tuple(seg.seqs)] = copies.get(tuple(seg.seqs), 0) + 1
                if len(answered[seg.conn]) < conns[seg.conn].turns:
                    answered[seg.conn].append(seg.seqs)

        def held(number: int, answers: int | None = None) -> list[list[int]]:
            handle = conns[number].resume_handle
            before = []
            if handle:
                _, conn, count = handle.split("-")
                before = held(int(conn), int(count))
            return before + answered[number][:answers]

        kept = held(self.last_conn)
        carried: dict[int, int] = {}
        for seqs in kept:
            for seq in seqs:
                carried[seq] = carried.get(seq, 0) + 1
        every = [seq for turn in self.spoken for seq in turn]
        whole = {tuple(t) for t in self.spoken}
        return {"lost_chunks": sum(1 for seq in every if seq not in carried),
                "duplicated_chunks": sum(n - 1 for n in carried.values() if n > 1),
                "mixed_turns": sum(1 for seqs in kept if tuple(seqs) not in whole),
                "resent_turns": sum(1 for n in copies.values() if n > 1)}


async def baseline(settings, key, double: LiveDouble, count: int) -> list[float]:
    """A plain connect through the SDK, to the setup's arrival at the double."""
    import warnings

    from google import genai

    from talkie.live import options

    client = genai.Client(api_key=key.reveal(), http_options=options.http_options(settings.live))
    config = options.connect_config(settings.live, None)
    times = []
    for _ in range(count):
        number = len(double.connections)
        start = time.monotonic()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            async with client.aio.live.connect(model=settings.live.model, config=config):
                pass
        setup = next(m for m in double.messages if m.kind == "setup" and m.conn > number)
        times.append(setup.t - start)
    return times


async def run(args, pulse, workdir: Path, double: LiveDouble) -> dict:
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    from talkie import config
    from talkie.shell.app import App, Factories
    from talkie.panel import open_panel
    from talkie.config.credentials import load_api_key

    settings = config.load(write_config(workdir, double, pulse, KEY, audio=PLAIN_AUDIO))
    key = load_api_key(settings.live.api_key_file, env={})
    base = await baseline(settings, key, double, BASELINE_CONNECTS // 2)
    factory = MockFactory(pin_class=MockPWMPin)
    mics: list[NumberedMic] = []

    def mic(s, **kw):
        mics.append(NumberedMic(**kw))
        return mics[-1]

    app = App(settings, key, control_path=str(workdir / "control"), jitter=lambda: 0.0,
              factories=Factories(capture=mic, panel=lambda s, **kw: open_panel(
                  s.panel, pin_factory=factory, **kw)))
    task = asyncio.create_task(app.run())
    await asyncio.wait_for(app.ready.wait(), 10)
    await asyncio.wait_for(app.prepared.wait(), 10)
    rng = random.Random(args.seed)
    bench = Bench(app, mics[0], double, factory, rng)
    started = time.monotonic()
    await bench.plain_turn()  # the link is open from here on
    work = (["talk"] * args.handovers + ["idle"] * args.handovers + ["drop"] * args.drops)
    rng.shuffle(work)
    talks = 0
    for what in work:
        if what == "talk":
            await bench.talking_handover(right_after=talks % 2 == 1)
            talks += 1
        elif what == "idle":
            await bench.idle_handover()
        else:
            await bench.drop()
    await bench.plain_turn()
    seconds = time.monotonic() - started
    bench.last_conn = bench.current().number
    app.stop()
    await asyncio.wait_for(task, 10)
    base += await baseline(settings, key, double, BASELINE_CONNECTS - len(base))
    errors = double.errors
    if errors:
        raise RuntimeError(f"the double failed: {errors!r}")

    base_p50 = statistics.median(base)
    gaps, reconnects = bench.gaps, [s for _, s in bench.reconnects]
    first = [s for attempts, s in bench.reconnects if attempts == 0]
    result: dict[str, object] = {"handovers": len(gaps), "idle_handovers": len(bench.idle_times),
                                 "drops": len(reconnects), "turns": len(bench.spoken),
                                 "handovers_after_the_answer": bench.after_answer}
    if gaps:
        result.update(handover_gap_ms_p50=ms(statistics.median(gaps)),
                      handover_gap_ms_p95=ms(p95(gaps)),
                      handover_gap_ratio=round(p95(gaps) / base_p50, 2))
    for when, values in bench.gaps_by_when.items():
        if values:
            result[f"handover_gap_{when}_ms_p95"] = ms(p95(values))
    if bench.fresh_gaps:
        result["handover_fresh_gap_ms_p95"] = ms(p95(bench.fresh_gaps))
    if bench.idle_times:
        result.update(idle_handover_ms_p50=ms(statistics.median(bench.idle_times)),
                      idle_handover_ms_p95=ms(p95(bench.idle_times)),
                      idle_handover_ratio=round(p95(bench.idle_times) / base_p50, 2))
    if reconnects:
        result.update(reconnect_ms_p50=ms(statistics.median(reconnects)),
                      reconnect_ms_p95=ms(p95(reconnects)),
                      reconnect_ratio=round(p95(reconnects) / base_p50, 2))
    if first:
        result["reconnect_first_ms"] = ms(statistics.median(first))
    result.update(bench.accounting())
    result.update(baseline_connect_ms_p50=ms(base_p50), baseline_connect_ms_p95=ms(p95(base)),
                  run_s=round(seconds, 1))
    result["goal_met"] = (result.get("handover_gap_ms_p95", 0) <= 300
                          and result.get("reconnect_ms_p95", 0) <= 1000
                          and result["lost_chunks"] == 0 and result["duplicated_chunks"] == 0)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handovers", type=int, default=30,
                        help="goAway handovers while talking (and as many while idle)")
    parser.add_argument("--drops", type=int, default=30, help="links aborted while talking")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--verbose", action="store_true", help="the daemon's log on stderr")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, stream=sys.stderr,
                        format="%(relativeCreated)8.0f %(name)s: %(message)s")
    with tempfile.TemporaryDirectory() as tmp, PulseHarness() as pulse:
        answer = AutoReply(pcm=tone(0.06), chunk_ms=20, delay_s=0.02)
        with LiveDouble(api_keys=(KEY,), auto_reply=answer) as double:
            result = asyncio.run(asyncio.wait_for(run(args, pulse, Path(tmp), double), 600))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

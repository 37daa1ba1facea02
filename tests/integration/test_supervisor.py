"""The session supervisor's fault matrix, against the Live double through the real SDK.

Each case breaks the link in one way and asserts what the user sees: the daemon does not crash, the
LED shows the right state, the turn in flight is neither lost nor duplicated (numbered chunks, see
tests/support/rig.py), the next turn works once the fault clears, and the back-off waits follow the
schedule (read from a virtual clock, so a 20 s outage takes no 20 s).
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

import pytest

from talkie import config
from talkie.shell.app import App, Factories
from talkie.core.machine import Phase, backoff
from talkie.shell.policy import policy_from
from talkie.config.credentials import load_api_key
from tests.support.daemon import BUTTON, Shows, led_states, write_config
from tests.support.live_double import AutoReply, LiveDouble, tone
from tests.support.rig import PLAIN_AUDIO, NumberedMic, VirtualClock, seqs_of, until

#: The machine's rules under the shipped settings.
SHIPPED = policy_from(config.Settings())
#: The waits that are no back-off: a stable session (60 s), idle close (300 s), the answer's deadline.
ANSWER_S = SHIPPED.answer_timeout_s

pytestmark = pytest.mark.audio
KEY = "AIzaSy-supervisor-0123456789"
SEED = 7


@dataclass
class Rig:
    app: App
    task: asyncio.Task
    mic: NumberedMic
    clock: VirtualClock
    shows: Shows
    double: LiveDouble
    factory: object

    @property
    def button(self):
        return self.factory.pin(BUTTON)

    async def until_phase(self, phase, *, after=0, timeout=20.0):
        await self.shows.until(lambda p: phase in p[after:], timeout)

    async def until_idle(self, timeout=20.0):
        async with asyncio.timeout(timeout):
            while not (self.app.state.phase is Phase.IDLE and self.shows.phases[-1] is Phase.IDLE):
                self.shows.changed.clear()
                await self.shows.changed.wait()

    async def press(self):
        self.button.drive_low()
        await until(lambda: self.app.state.held, what="the press")

    async def release(self):
        self.button.drive_high()
        await until(lambda: not self.app.state.held, what="the release")

    async def turn(self, chunks=10):
        """A whole turn: press, speak, release, hear the answer; the chunk numbers spoken."""
        await self.press()
        spoken = self.mic.speak(chunks)
        await self.release()
        await self.until_idle()
        return list(spoken)

    def alive(self):
        assert not self.task.done(), self.task.exception() if self.task.done() else None


def complete_turns(double):
    """Every complete turn the double received: (connection number, its chunk numbers)."""
    turns, current = [], {}
    for m in double.messages:
        if m.kind == "activity_start":
            current[m.conn] = []
        elif m.kind == "audio" and m.conn in current:
            current[m.conn] += seqs_of(m.blob)
        elif m.kind == "activity_end" and m.conn in current:
            turns.append((m.conn, current.pop(m.conn)))
    return turns


def assert_exactly_once(double, *spoken_turns):
    """Each spoken turn reached the service whole, once, in order; nothing else did."""
    got = [seqs for _, seqs in complete_turns(double)]
    assert got == [list(t) for t in spoken_turns]


async def start_rig(tmp_path, pulse, double, extra="", key=KEY, session="",
                    factories: Factories | None = None, tail: str = "") -> Rig:
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    from talkie.panel import open_panel

    path = write_config(tmp_path, double, pulse, key, extra, audio=PLAIN_AUDIO, tail=tail)
    if session:
        path.write_text(path.read_text().replace("[session]\n", f"[session]\n{session}\n"))
    settings = config.load(path)
    factory = MockFactory(pin_class=MockPWMPin)
    mics: list[NumberedMic] = []
    clock, shows = VirtualClock(), Shows()

    def mic(s, **kw):
        mics.append(NumberedMic(**kw))
        return mics[-1]

    factories = factories or Factories()
    factories.capture = mic
    factories.panel = lambda s, **kw: open_panel(s.panel, pin_factory=factory, **kw)
    app = App(settings, load_api_key(settings.live.api_key_file, env={}), on_show=shows,
              control_path=str(tmp_path / "control"), call_later=clock.call_later,
              jitter=random.Random(SEED).random, factories=factories)
    task = asyncio.create_task(app.run())
    await asyncio.wait_for(app.ready.wait(), 10)
    await asyncio.wait_for(app.prepared.wait(), 10)
    return Rig(app, task, mics[0], clock, shows, double, factory)


async def stop_rig(rig: Rig):
    rig.alive()
    rig.app.stop()
    await asyncio.wait_for(rig.task, 5)


def answer(**kw):
    return AutoReply(pcm=tone(0.2), delay_s=0.05, **kw)


def run(coro):
    asyncio.run(asyncio.wait_for(coro, 90))


# ---------------------------------------------------------------------------------------- the cases


def test_drop_mid_user_turn(tmp_path, pulse):
    async def main():
        async with LiveDouble(api_keys=(KEY,), auto_reply=answer()) as double:
            rig = await start_rig(tmp_path, pulse, double)
            await rig.press()
            first = rig.mic.speak(10)
            await double.wait_for_message("audio", nth=10, timeout=10)
            await double.connections[0].abort()
            await rig.until_phase(Phase.RECONNECTING)
            second = rig.mic.speak(10)  # still talking while the link is down
            await rig.release()
            await rig.until_idle()
            assert rig.clock.requested.count(60.0) >= 1  # stable timers only: no back-off wait
            assert_exactly_once(double, [*first, *second])
            assert complete_turns(double)[0][0] == 2  # sent whole on the new connection
            spoken = await rig.turn()  # and the next turn works
            assert_exactly_once(double, [*first, *second], spoken)
            await stop_rig(rig)
        assert "reconnecting" in led_states(rig.factory)

    run(main())


def test_drop_mid_model_turn_plays_what_arrived_and_the_next_turn_resumes(tmp_path, pulse):
    async def main():
        reply = AutoReply(pcm=tone(2.0), chunk_ms=40, realtime=True, delay_s=0.05)
        async with LiveDouble(api_keys=(KEY,), auto_reply=reply) as double:
            rig = await start_rig(tmp_path, pulse, double)
            await rig.press()
            first = rig.mic.speak(5)
            await rig.release()
            await rig.until_phase(Phase.SPEAKING)
            await double.connections[0].abort()
            await rig.until_idle()  # what arrived played out, then ready
            double.auto_reply = answer()
            second = await rig.turn()
            assert len(double.connections) == 2
            assert_exactly_once(double, first, second)
            await stop_rig(rig)

    run(main())


def test_close_1011_while_idle_then_the_next_turn_resumes_the_conversation(tmp_path, pulse):
    async def main():
        async with LiveDouble(api_keys=(KEY,), auto_reply=answer()) as double:
            rig = await start_rig(tmp_path, pulse, double)
            first = await rig.turn()
            newest = double.issued_handles[-1]
            await double.connections[0].close(1011, "Internal error encountered.")
            await until(lambda: rig.app.state.link.value == "down")
            second = await rig.turn()
            assert double.connections[1].resume_handle == newest
            assert_exactly_once(double, first, second)
            await stop_rig(rig)

    run(main())


@pytest.mark.parametrize("time_left", [5.0, 50.0])
def test_goaway_mid_turn_hands_over_without_losing_a_chunk(tmp_path, pulse, time_left):
    async def main():
        async with LiveDouble(api_keys=(KEY,), auto_reply=answer()) as double:
            rig = await start_rig(tmp_path, pulse, double)
            warmup = await rig.turn()
            handle = double.issued_handles[-1]
            await rig.press()
            first = rig.mic.speak(8)
            await double.wait_for_message("audio", nth=len(warmup) + 8, timeout=10)
            await double.connections[0].send_go_away(time_left)
            if time_left <= 10:  # time is short: at once, the turn moves to the new connection
                await double.wait_for_connection(2, timeout=10)
            second = rig.mic.speak(8)
            await rig.release()
            await rig.until_idle()
            await double.wait_for_connection(2, timeout=10)  # 50 s: at the safe point
            await double.wait_for(lambda: double.connections[1].setup_completed)
            assert double.connections[0].closed
            newest_on_old = [h for h in double.issued_handles if h.startswith("handle-1-")][-1]
            assert double.connections[1].resume_handle == newest_on_old  # the newest one
            assert newest_on_old == (handle if time_left <= 10 else "handle-1-2")
            third = await rig.turn()
            turns = complete_turns(double)
            assert_exactly_once(double, warmup, [*first, *second], third)
            assert [conn for conn, _ in turns] == [1, 2 if time_left <= 10 else 1, 2]
            await stop_rig(rig)

    run(main())


def test_setup_never_answered_times_out_and_retries_on_the_schedule(tmp_path, pulse):
    async def main():
        async with LiveDouble(api_keys=(KEY,), auto_reply=answer(), setup_mode="never") as double:
            rig = await start_rig(tmp_path, pulse, double, extra="connect_timeout_s = 1.0")
            await rig.press()
            spoken = rig.mic.speak(5)
            await rig.until_phase(Phase.RECONNECTING)
            double.setup_mode = "complete"  # the fault clears
            rig.clock.fire_next()  # the back-off wait passes
            await rig.release()
            await rig.until_idle()
            assert_exactly_once(double, spoken)
            waits = [d for d in rig.clock.requested if d not in (60.0, 300.0, ANSWER_S)]
            assert waits == [backoff(1, random.Random(SEED).random(), SHIPPED)]
            await stop_rig(rig)

    run(main())


def test_an_unknown_server_message_is_a_dead_connection_not_a_crash(tmp_path, pulse):
    async def main():
        async with LiveDouble(api_keys=(KEY,), auto_reply=answer()) as double:
            rig = await start_rig(tmp_path, pulse, double)
            first = await rig.turn()
            await double.connections[0].send_raw({"somethingNew": {"x": 1}})
            await until(lambda: rig.app.state.link.value == "down")
            second = await rig.turn()
            assert_exactly_once(double, first, second)
            await stop_rig(rig)

    run(main())


def test_a_slow_server_is_waited_for(tmp_path, pulse):
    async def main():
        async with LiveDouble(api_keys=(KEY,), auto_reply=answer(), setup_delay_s=1.5) as double:
            rig = await start_rig(tmp_path, pulse, double)
            spoken = await rig.turn()
            assert_exactly_once(double, spoken)
            assert Phase.RECONNECTING not in rig.shows.phases
            await stop_rig(rig)

    run(main())


def test_connection_refused_for_20_s_then_back(tmp_path, pulse):
    async def main():
        async with LiveDouble(api_keys=(KEY,), auto_reply=answer()) as double:
            rig = await start_rig(tmp_path, pulse, double)
            await double.stop_listening()
            await rig.press()  # the user holds the button through the outage
            spoken = rig.mic.speak(5)
            attempts = 0
            while rig.clock.now < 20:
                await until(lambda: "retry" in rig.app.timers, what="a back-off wait")
                assert rig.app.state.phase is Phase.RECONNECTING
                attempts += 1
                rig.clock.fire_next()  # the wait passes: the app tries again, and is refused
            await double.start_listening()
            await until(lambda: "retry" in rig.app.timers, what="a back-off wait")
            rig.clock.fire_next()
            await rig.until_phase(Phase.LISTENING, after=2)
            spoken = [*spoken, *rig.mic.speak(5)]
            await rig.release()
            await rig.until_idle()
            assert_exactly_once(double, spoken)
            jitter = random.Random(SEED)
            waits = [d for d in rig.clock.requested if d not in (60.0, 300.0, ANSWER_S)]
            assert waits == [backoff(n, jitter.random(), SHIPPED) for n in range(1, len(waits) + 1)]
            assert attempts == len(waits) - 1 and max(waits) <= SHIPPED.backoff_cap_s
            await stop_rig(rig)
        assert "reconnecting" in led_states(rig.factory)

    run(main())


@pytest.mark.parametrize("fault", ["unknown_model", "invalid_key"])
def test_a_fault_only_a_person_can_fix_is_an_error_retried_slowly(tmp_path, pulse, caplog, fault):
    async def main():
        model = "gemini-0.1-nope" if fault == "unknown_model" else "gemini-3.8-live"
        key = KEY if fault == "unknown_model" else "AIzaSy-wrong-0000000000"
        async with LiveDouble(api_keys=(KEY,), models={"gemini-3.8-live"},
                              auto_reply=answer()) as double:
            rig = await start_rig(tmp_path, pulse, double, extra=f'model = "{model}"', key=key)
            await rig.press()
            rig.mic.speak(5)
            await rig.until_phase(Phase.ERROR)
            await rig.release()
            assert rig.clock.pending()[-1] == pytest.approx(300.0)  # the slow retry, nothing sooner
            rig.clock.fire_next()  # five minutes later: tried again, quietly, still wrong
            await double.wait_for(lambda: len(double.connections) == 2)
            await until(lambda: rig.app.state.link.value == "down")
            assert len(double.connections) == 2  # one try per press or slow retry: no hot loop
            # the fault clears
            if fault == "unknown_model":
                double.models = {"gemini-3.8-live", model}
            else:
                double.api_keys = (KEY, key)
            spoken = await rig.turn()  # a press tries at once
            assert_exactly_once(double, spoken)
            await stop_rig(rig)
        assert led_states(rig.factory).count("error") >= 1

    with caplog.at_level(logging.INFO, logger="talkie"):
        run(main())
    what = "is not available for Live" if fault == "unknown_model" else "API key rejected"
    lines = [r for r in caplog.records if what in r.getMessage()
             and not r.getMessage().startswith("state:")]
    assert len(lines) == 1  # one journal line for the fault, however often it is retried


def test_a_rejected_resumption_handle_falls_back_to_a_fresh_session(tmp_path, pulse, caplog):
    async def main():
        async with LiveDouble(api_keys=(KEY,), auto_reply=answer()) as double:
            rig = await start_rig(tmp_path, pulse, double)
            first = await rig.turn()
            double.resume_mode = "reject_all"
            await double.connections[0].close(1011, "Internal error encountered.")
            await until(lambda: rig.app.state.link.value == "down")
            second = await rig.turn()
            assert double.connections[1].resume_handle and not double.connections[2].resume_handle
            assert_exactly_once(double, first, second)
            await stop_rig(rig)

    with caplog.at_level(logging.INFO, logger="talkie"):
        run(main())
    assert sum("could not be resumed" in r.getMessage() for r in caplog.records) == 1


def test_an_idle_session_is_closed_and_the_next_press_resumes_it(tmp_path, pulse):
    async def main():
        async with LiveDouble(api_keys=(KEY,), auto_reply=answer()) as double:
            rig = await start_rig(tmp_path, pulse, double)
            first = await rig.turn()
            rig.clock.advance(300)  # five minutes without a conversation
            await double.wait_for(lambda: double.connections[0].closed)
            assert double.connections[0].close_code == 1000  # closed cleanly, by us
            second = await rig.turn()
            assert double.connections[1].resume_handle == double.issued_handles[-2]
            assert_exactly_once(double, first, second)
            await stop_rig(rig)

    run(main())


def test_connect_at_start_keeps_a_warm_session(tmp_path, pulse):
    async def main():
        async with LiveDouble(api_keys=(KEY,), auto_reply=answer()) as double:
            rig = await start_rig(tmp_path, pulse, double, session="connect_at_start = true")
            await double.wait_for_connection(1, timeout=10)
            await until(lambda: rig.app.state.link.value == "up")
            rig.clock.advance(3600)  # no idle close
            await double.connections[0].close(1011, "Internal error encountered.")
            await until(lambda: rig.app.state.link.value == "down")
            rig.clock.fire_next()  # reopened in the background
            await double.wait_for_connection(2, timeout=10)
            spoken = await rig.turn()
            assert [c for c, _ in complete_turns(double)] == [2]
            assert_exactly_once(double, spoken)
            assert Phase.CONNECTING not in rig.shows.phases  # a press never waited for a connect
            await stop_rig(rig)

    run(main())


def test_a_stop_closes_the_session_cleanly_as_a_handover_does(tmp_path, pulse):
    """SIGTERM (the app's stop) closes the Live socket with 1000, not 1011."""
    async def main():
        async with LiveDouble(api_keys=(KEY,), auto_reply=answer()) as double:
            rig = await start_rig(tmp_path, pulse, double)
            await rig.turn()
            await stop_rig(rig)
            await double.wait_for(lambda: double.connections[0].closed)
            return double.connections[0].close_code

    assert asyncio.run(asyncio.wait_for(main(), 90)) == 1000


def test_an_answer_that_never_comes_is_given_up_in_words_and_the_link_recycled(tmp_path, pulse,
                                                                               caplog):
    async def main():
        async with LiveDouble(api_keys=(KEY,), auto_reply=None) as double:  # takes, never answers
            rig = await start_rig(tmp_path, pulse, double)
            await rig.press()
            rig.mic.speak(5)
            await rig.release()
            await rig.until_phase(Phase.THINKING)
            assert rig.clock.pending()[0] == pytest.approx(SHIPPED.answer_timeout_s)
            rig.clock.advance(SHIPPED.answer_timeout_s)  # 20 s without a word back
            await rig.until_idle()
            await double.wait_for(lambda: double.connections[0].closed)
            code = double.connections[0].close_code
            double.auto_reply = answer()
            second = await rig.turn()  # the next press works as before
            await stop_rig(rig)
            return code, second

    with caplog.at_level(logging.INFO, logger="talkie"):
        code, second = asyncio.run(asyncio.wait_for(main(), 90))
    assert code == 1000 and second
    said = [r for r in caplog.records if "no answer from Gemini" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    assert said[0].getMessage().startswith("no answer from Gemini within 20 s: the question was "
                                           "dropped")


def test_what_is_loaded_at_start_leaves_the_collector_s_generations(tmp_path, pulse):
    import gc

    async def main():
        async with LiveDouble(api_keys=(KEY,), auto_reply=answer()) as double:
            gc.unfreeze()
            rig = await start_rig(tmp_path, pulse, double)  # returns once the SDK is loaded
            frozen = gc.get_freeze_count()
            await stop_rig(rig)
            return frozen

    # the SDK, pydantic's schemas and numpy: a full collection no longer walks them
    assert asyncio.run(asyncio.wait_for(main(), 30)) > 100_000

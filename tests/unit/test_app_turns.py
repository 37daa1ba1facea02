"""A released turn keeps the audio that was already spoken: what the sound card and PortAudio
still hold at the release (``Capture.in_flight_s``, counted in samples as it arrives) goes out
before activity_end; a stream that stops delivering ends the turn a little later anyway."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from talkie.config.credentials import Secret
from talkie.core import machine as m
from talkie.core.outbox import Kind
from talkie.shell.app import App
from tests.support import fakes

BLOCK = 160  # 10 ms at 16 kHz
IN_FLIGHT_S = 0.03  # 480 samples: three blocks


class SpokenMic(fakes.FakeCapture):
    """A microphone the test speaks into block by block, with audio in flight at a release."""

    def __init__(self, log: fakes.Log, on_audio) -> None:
        super().__init__(log)
        self.on_audio = on_audio
        self.in_flight_s = IN_FLIGHT_S
        self.next = 0

    def speak(self, blocks: int) -> None:
        for _ in range(blocks):
            self.next += 1
            self.on_audio(np.full(BLOCK, self.next, np.int16).tobytes())


def drained(app: App) -> list[tuple[str, int]]:
    """The outbox's items, in order: ("audio", the block's number), ("activity_end", 0), ..."""
    items = []
    while (item := app.outbox.peek()) is not None:
        value = int(np.frombuffer(item.pcm, np.int16)[0]) if item.kind is Kind.AUDIO else 0
        items.append((item.kind.value, value))
        app.outbox.sent(item)
    return items


async def started(log: fakes.Log):
    mics = []

    def make_mic(settings, *, loop, on_audio, **_):
        mics.append(SpokenMic(log, on_audio))
        return mics[0]

    factories = fakes.factories(log)
    factories.capture = make_mic
    app = App(fakes.settings(), Secret("AIzaSy-turns-0123456789", "test"), factories=factories,
              firstboot_error="")
    task = asyncio.create_task(app.run())
    async with asyncio.timeout(10):
        await app.ready.wait()
    return app, task, mics[0]


async def settle(app: App) -> None:
    async with asyncio.timeout(5):
        while app._events:  # the dispatcher has taken every event
            await asyncio.sleep(0)
    await asyncio.sleep(0)


def test_the_audio_in_flight_at_the_release_is_sent_before_activity_end():
    async def main():
        app, task, mic = await started(fakes.Log())
        app.emit(m.ButtonDown())
        await settle(app)
        mic.speak(5)
        app.emit(m.ButtonUp())
        await settle(app)
        at_release = drained(app)
        mic.speak(2)  # two of the three blocks in flight
        before = drained(app)
        mic.speak(2)  # the third, and one more
        after = drained(app)
        app.stop()
        await asyncio.wait_for(task, 10)
        return at_release, before, after

    at_release, before, after = asyncio.run(main())
    assert at_release == [("activity_start", 0), *(("audio", n) for n in range(1, 6))]
    assert before == [("audio", 6), ("audio", 7)]  # no activity_end yet: the turn is still open
    assert after == [("audio", 8), ("activity_end", 0)]  # block 9 came after: not in the turn


def test_a_stream_that_stops_delivering_still_ends_the_turn():
    async def main():
        app, task, mic = await started(fakes.Log())
        app.emit(m.ButtonDown())
        await settle(app)
        mic.speak(3)
        app.emit(m.ButtonUp())
        await settle(app)
        drained(app)
        async with asyncio.timeout(5):  # in flight + grace, on the loop's clock
            while (item := app.outbox.peek()) is None:
                await asyncio.sleep(0.005)
        app.stop()
        await asyncio.wait_for(task, 10)
        return item.kind

    assert asyncio.run(main()) is Kind.ACTIVITY_END


def test_a_new_turn_ends_the_released_one_first_and_a_dropped_one_is_gone():
    async def main():
        app, task, mic = await started(fakes.Log())
        app.emit(m.ButtonDown())
        await settle(app)
        mic.speak(2)
        app.emit(m.ButtonUp())
        app.emit(m.ButtonDown())  # pressed again before the tail is in
        await settle(app)
        turns = drained(app)
        app.emit(m.ButtonUp())
        app.emit(m.Reset())  # drops the turn, the waiting tail with it
        await settle(app)
        mic.speak(5)
        await asyncio.sleep(IN_FLIGHT_S + 0.1)
        app.outbox.connected()  # the next session: what closed the dropped turn was not for it
        left = drained(app)
        app.stop()
        await asyncio.wait_for(task, 10)
        return turns, left

    turns, left = asyncio.run(main())
    assert turns == [("activity_start", 0), ("audio", 1), ("audio", 2), ("activity_end", 0),
                     ("activity_start", 0)]
    assert left == []


def test_ctl_stop_says_what_it_stopped_and_stops_it():
    from talkie.shell.control import Commands

    async def main():
        app, task, mic = await started(fakes.Log())
        commands, said = Commands(app), []
        said.append(commands.stop())  # ready: nothing to stop
        app.emit(m.ButtonDown())
        await settle(app)
        mic.speak(2)
        said.append(commands.stop())  # the turn being spoken
        await settle(app)
        after_turn = (app.state.phase, drained(app))
        app.emit(m.SessionOpened())
        app.emit(m.Say("hello"))
        app.emit(m.ModelAudio(b"\x00\x01" * 480))
        await settle(app)
        said.append(commands.stop())  # the answer
        await settle(app)
        after_answer = app.state.phase
        app.stop()
        await asyncio.wait_for(task, 10)
        return said, after_turn, after_answer

    said, (phase, items), after_answer = asyncio.run(main())
    assert said == [{"stopped": "nothing (talkie is idle)"}, {"stopped": "the turn in progress"},
                    {"stopped": "the answer"}]
    assert phase is m.Phase.IDLE and items == []  # the turn is gone, nothing of it is sent
    assert after_answer is m.Phase.IDLE


def test_a_reload_during_a_turn_the_voice_opened_keeps_its_chain_until_the_turn_ends():
    """Only the chain that heard the voice begin can hear it end: the new one takes over after
    (else SpeechEnded never comes and the turn sticks in listening)."""
    async def main():
        app, task, mic = await started(fakes.Log())
        for event in (m.ButtonDown(), m.SessionOpened(), m.ButtonUp(),
                      m.ModelAudio(b"\x00\x01" * 480), m.SpeechStarted()):
            app.emit(event)
            await settle(app)
        assert app.state.phase is m.Phase.LISTENING and app.state.voice
        hearing = app.chain
        app.rebuild_mic_chain()  # what a reload that changes [audio] barge-in keys does
        kept = app.chain is hearing
        app.emit(m.SpeechEnded())  # ...which that chain reports when the user stops
        await settle(app)
        after = (app.state.phase, app.chain is not hearing)
        app.stop()
        await asyncio.wait_for(task, 10)
        return kept, after

    kept, (phase, replaced) = asyncio.run(main())
    assert kept and phase is m.Phase.THINKING and replaced


def test_a_fault_is_one_journal_line_and_the_last_error_clears_once_it_is_over(caplog):
    import logging

    from talkie.shell.control import Commands

    async def main():
        app, task, mic = await started(fakes.Log())
        commands = Commands(app)
        app.emit(m.AudioFailed("no microphone: input device 'USB' not found"))
        await settle(app)
        during = commands.status()["last_error"]
        app.emit(m.AudioRestored())
        await settle(app)
        after = commands.status()["last_error"]
        app.stop()
        await asyncio.wait_for(task, 10)
        return during, after

    with caplog.at_level(logging.DEBUG, logger="talkie"):
        during, after = asyncio.run(main())
    assert during == "no microphone: input device 'USB' not found" and after == ""
    lines = [r for r in caplog.records if r.levelno >= logging.INFO
             and "input device 'USB' not found" in r.getMessage()]
    assert [(r.levelname, r.getMessage()) for r in lines] == [
        ("ERROR", "no microphone: input device 'USB' not found")]


def test_the_microphone_wakes_the_loop_only_while_a_turn_or_its_tail_wants_it():
    async def main():
        app, task, mic = await started(fakes.Log())
        await settle(app)
        wants = [mic.wanted]  # idle after the start: nobody talking, nothing playing
        app.emit(m.ButtonDown())
        await settle(app)
        wants.append(mic.wanted)  # a turn is being captured
        mic.speak(3)
        app.emit(m.ButtonUp())
        await settle(app)
        wants.append(mic.wanted)  # the audio still in flight at the release is waited for
        mic.speak(3)
        await settle(app)
        wants.append(mic.wanted)  # the tail is in: the turn waits for the answer, mic unwanted
        app.stop()
        await asyncio.wait_for(task, 10)
        return wants

    assert asyncio.run(main()) == [False, True, True, False]


def test_a_press_wakes_the_microphone_from_when_its_edge_was_seen():
    """A button's press carries the time its edge was seen (stamped in the button's thread): the
    capture is woken from then, not from when the busy loop got to it; an event given no time
    is stamped as it is queued."""
    async def run(edge):
        app, task, mic = await started(fakes.Log())
        await settle(app)
        assert not mic.wanted  # idle: the capture keeps its ring, the loop is not woken
        queued = time.monotonic()
        app.emit(m.ButtonDown(), edge)
        await settle(app)
        mic.speak(3)
        app.stop()
        await asyncio.wait_for(task, 10)
        return queued, mic.woken_since

    edge = time.monotonic() - 0.4  # the press was seen 400 ms ago, the loop busy since
    assert asyncio.run(run(edge))[1] == [edge]
    queued, woken = asyncio.run(run(None))
    assert len(woken) == 1 and woken[0] is not None and woken[0] >= queued

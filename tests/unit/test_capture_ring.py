"""The microphone's ring: PortAudio's thread writes blocks, the loop drains them in batches; a late
loop loses nothing, an unwanted stream wakes nobody, and what was skipped is counted in samples."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import numpy as np

from talkie.audio.capture import Capture

BLOCK = 160  # 10 ms at 16 kHz


def _capture(loop, got, gaps, *, ring_s=1.0):
    cap = Capture("test", loop=loop, on_audio=got.append, on_gap=gaps.append, block_ms=10,
                  ring_s=ring_s)
    cap._allocate(16000)
    cap._running = True
    return cap


def _speak(cap, first, count, *, pause_s=0.0):
    """What PortAudio's thread does: ``count`` numbered blocks, each stamped 10 ms apart."""
    for seq in range(first, first + count):
        block = np.full(BLOCK, seq, np.int16)
        cap._callback(block.tobytes(), BLOCK, SimpleNamespace(inputBufferAdcTime=1 + seq / 100,
                                                             currentTime=0.0), 0)
        if pause_s:
            time.sleep(pause_s)


async def _settle():
    """Let the loop run what the callbacks scheduled (no clock: a few turns of the loop)."""
    for _ in range(3):
        await asyncio.sleep(0)


def _numbers(got):
    return [int(np.frombuffer(b, np.int16)[0]) for b in got]


def test_a_late_loop_gets_every_block_in_one_batch_and_loses_none():
    async def main():
        got, gaps = [], []
        cap = _capture(asyncio.get_running_loop(), got, gaps)
        writer = threading.Thread(target=_speak, args=(cap, 0, 30), kwargs={"pause_s": 0.001})
        writer.start()
        writer.join()  # the loop is held up (a blocking handler) while all the blocks come
        await _settle()
        return cap, got, gaps

    cap, got, gaps = asyncio.run(main())
    assert _numbers(got) == list(range(30)) and gaps == []
    assert cap.overflows == 0 and cap.batches == 1  # one drain took all 30
    assert cap.block_time == 1 + 29 / 100  # each block handed over with its own ADC time


def test_a_loop_later_than_the_ring_loses_the_newest_blocks_counted_and_told_as_a_gap():
    async def main():
        got, gaps = [], []
        cap = _capture(asyncio.get_running_loop(), got, gaps, ring_s=0.1)  # 10 slots
        _speak(cap, 0, 25)  # from the loop thread itself: nothing is drained meanwhile
        await _settle()
        _speak(cap, 25, 5)
        await _settle()
        return cap, got, gaps

    cap, got, gaps = asyncio.run(main())
    assert cap.overflows == 15
    assert _numbers(got) == [*range(10), *range(25, 30)]
    assert gaps == [15 * BLOCK]  # the chain is told how many samples it did not get


def test_an_unwanted_stream_wakes_nobody_and_comes_back_just_before_the_wake():
    async def main():
        loop = asyncio.get_running_loop()
        got, gaps = [], []
        cap = _capture(loop, got, gaps)
        _speak(cap, 0, 3)
        await _settle()
        cap.want(False)
        scheduled = []
        real = loop.call_soon_threadsafe
        loop.call_soon_threadsafe = lambda *a: scheduled.append(a) or real(*a)  # type: ignore[method-assign]
        _speak(cap, 3, 200)  # two seconds of an idle room: the ring is overwritten
        await _settle()
        idle_wakes = len(scheduled)
        cap.want(True)  # a press
        _speak(cap, 203, 2)
        await _settle()
        return got, gaps, idle_wakes

    got, gaps, idle_wakes = asyncio.run(main())
    assert idle_wakes == 0
    # the turn starts WAKE_BACK_S (60 ms, 6 blocks) before the wake: the press reaches the loop
    # a little after the sound it goes with
    assert _numbers(got) == [0, 1, 2, *range(197, 205)]
    assert gaps == [(197 - 3) * BLOCK]


def test_a_buffer_of_several_blocks_is_split_into_the_ring_slots_each_with_its_time():
    async def main():
        got, gaps = [], []
        cap = Capture("test", loop=asyncio.get_running_loop(), on_audio=got.append,
                      on_gap=gaps.append, block_ms=10, ring_s=1.0, buffer_blocks=3)
        cap._allocate(16000)
        cap._running = True
        times = []
        cap._on_audio = lambda b: (got.append(b), times.append(cap.block_time))
        for buf in range(4):  # four PortAudio buffers of three 10 ms blocks: 120 ms
            pcm = np.repeat(np.arange(3 * buf, 3 * buf + 3, dtype=np.int16), BLOCK)
            cap._callback(pcm.tobytes(), 3 * BLOCK,
                          SimpleNamespace(inputBufferAdcTime=1 + buf * 0.03, currentTime=0.0), 0)
        await _settle()
        return cap, got, gaps, times

    cap, got, gaps, times = asyncio.run(main())
    assert _numbers(got) == list(range(12)) and all(len(b) == 2 * BLOCK for b in got)
    assert gaps == [] and cap.overflows == 0
    assert np.allclose(times, [1 + i / 100 for i in range(12)])  # each block its own ADC time


def test_a_wake_that_waited_in_a_busy_loop_starts_from_when_it_happened(monkeypatch):
    """A press queued while the loop was busy (the SDK loading, say) reaches ``want`` late: the
    turn still starts ``WAKE_BACK_S`` before the press, from the blocks that arrived then, as far
    as half the ring reaches, not from the moment the loop got to it."""
    clock = [0.0]
    monkeypatch.setattr("talkie.audio.capture.time", SimpleNamespace(monotonic=lambda: clock[0]))

    def speak(cap, first, count):
        for seq in range(first, first + count):
            clock[0] = seq / 100  # block ``seq`` arrives at seq * 10 ms
            _speak(cap, seq, 1)

    async def main(since, ring_s=1.0):
        loop = asyncio.get_running_loop()
        got, gaps = [], []
        cap = _capture(loop, got, gaps, ring_s=ring_s)
        speak(cap, 0, 3)
        await _settle()
        cap.want(False)
        speak(cap, 3, 200)  # the press comes at 1.50 s (block 150); the loop gets to it at 2.03
        cap.want(True, since=since)
        speak(cap, 203, 2)
        await _settle()
        return _numbers(got), gaps

    numbers, gaps = asyncio.run(main(1.50, ring_s=2.0))
    assert numbers == [0, 1, 2, *range(144, 205)]  # from 60 ms before the press on
    assert gaps == [(144 - 3) * BLOCK]
    # a press longer ago than half the ring (1 s: 100 slots): from 50 blocks back, and the
    # blocks that come meanwhile still have room
    numbers, gaps = asyncio.run(main(0.2))
    assert numbers == [0, 1, 2, *range(153, 205)]
    # no time given: 60 ms before the loop got to it, as before
    numbers, _ = asyncio.run(main(None, ring_s=2.0))
    assert numbers == [0, 1, 2, *range(197, 205)]

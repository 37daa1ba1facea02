"""Giving memory back: the trim after a turn runs off the loop, one at a time."""

from __future__ import annotations

import asyncio
import threading

from talkie.shell import memory


def test_the_trim_runs_in_a_worker_and_one_at_a_time(monkeypatch):
    threads: list[int] = []
    release = threading.Event()

    def trim() -> None:
        threads.append(threading.get_ident())
        release.wait(5)

    monkeypatch.setattr(memory, "trim", trim)

    async def main() -> None:
        trimmer = memory.Trimmer()
        trimmer.soon()
        await asyncio.sleep(0.05)
        trimmer.soon()  # one is running: nothing more
        release.set()
        assert trimmer._running is not None
        await trimmer._running
        trimmer.soon()  # done: the next idle trims again
        await trimmer._running

    asyncio.run(main())
    assert len(threads) == 2 and threading.get_ident() not in threads


def test_trim_is_harmless_where_there_is_nothing_to_give_back():
    memory.trim()  # glibc: malloc_trim(0); another C library: nothing

"""The shell's lifecycle: one exit stack closes every adapter it opened, in reverse order, on every
way out (a stop, a failure while opening, a cancelled run). Fakes for every seam
(tests/support/fakes.py), so the order is exact and nothing but the shell runs."""

from __future__ import annotations

import asyncio

import pytest

from talkie.core import machine as m
from talkie.config.credentials import Secret
from talkie.shell.app import App
from tests.support import fakes

OPENED = ["panel", "camera", "playback", "capture", "control"]


async def running(app: App) -> asyncio.Task[None]:
    task = asyncio.create_task(app.run())
    async with asyncio.timeout(10):
        await app.ready.wait()
    return task


def make(log: fakes.Log, **kw) -> App:
    return App(fakes.settings(), Secret("AIzaSy-lifecycle-0123456789", "test"),
               factories=fakes.factories(log, **kw), firstboot_error="")


def test_a_stop_closes_every_adapter_in_reverse_order_of_opening():
    log = fakes.Log()

    async def main():
        app = make(log)
        task = await running(app)
        assert log.of("open") == OPENED and log.of("close") == []
        app.emit(m.ButtonDown())  # a session opens (the fake link serves until cancelled)
        async with asyncio.timeout(10):
            while "session" not in log.of("open"):
                await asyncio.sleep(0.01)
        app.stop()
        await asyncio.wait_for(task, 10)
        return app

    app = asyncio.run(main())
    closed = log.of("close")
    assert closed[0] == "session"  # cancelled with the daemon's tasks, before any adapter closes
    # the audio devices close as one (the speaker stopped before the microphone)
    assert closed[1:] == ["control", "camera", "playback", "capture", "panel"]
    assert app.timers == frozenset()  # every pending timer cancelled on the way out
    assert "STOPPING=1" in app.notifier.sent


@pytest.mark.parametrize("broken,closed", [
    ("link", ["panel"]),
    ("capture", ["panel"]),
    # the audio devices exist (not yet started): they are stopped too, then the panel
    ("vision", ["capture", "panel"]),
])
def test_a_failure_while_opening_closes_what_was_opened_and_says_what_failed(broken, closed):
    log = fakes.Log()

    async def main():
        app = make(log, fail=broken)
        with pytest.raises(RuntimeError, match=f"{broken} cannot be made"):
            await asyncio.wait_for(app.run(), 10)
        return app

    app = asyncio.run(main())
    assert log.of("open") == ["panel"]
    assert log.of("close") == closed
    assert not app.ready.is_set()


def test_a_cancelled_run_closes_everything_too():
    log = fakes.Log()

    async def main():
        app = make(log)
        task = await running(app)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)

    asyncio.run(main())
    assert log.of("close") == ["control", "camera", "playback", "capture", "panel"]


def test_a_reopened_panel_is_the_one_closed_at_the_end():
    log = fakes.Log()

    async def main():
        app = make(log)
        task = await running(app)
        first = app.panel
        await app.reopen_panel()
        assert app.panel is not first
        app.stop()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
    assert log.of("open").count("panel") == 2
    assert log.of("close") == ["panel", "control", "camera", "playback", "capture", "panel"]

"""Stand-ins for every adapter the shell drives, each writing what is done to it into one shared
log, so a test can see the shell's lifecycle (what was opened and closed, in which order) without
hardware, a network or systemd. They implement the shell's seams (:mod:`talkie.shell.ports`);
``tests/support/seams.py`` has mypy check that.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from talkie.config import LiveSettings, Settings
from talkie.config.credentials import KeyProblem, Secret
from talkie.shell.factories import Factories


class Log:
    """What happened to the adapters, in order: ``("open", "panel")``, ``("close", "panel")``."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str]] = []

    def __call__(self, what: str, name: str) -> None:
        self.entries.append((what, name))

    def of(self, what: str) -> list[str]:
        return [name for kind, name in self.entries if kind == what]


class FakePanel:
    def __init__(self, log: Log, settings: Any) -> None:
        self.log, self.settings = log, settings
        self.shown: list[str] = []
        log("open", "panel")

    def show(self, state_name: str) -> None:
        self.shown.append(state_name)

    def close(self) -> None:
        self.log("close", "panel")


class LiveStream:
    """A fake stream's liveness as the shell's watch sees it."""

    #: When the stream last called back: a live one, just now, unless a test sets a time (0: it
    #: never did; the shell counts a stream silent for ``STALL_S`` as stalled, so a fake that
    #: never called back would fail any test that runs longer than that, as on a loaded machine).
    _last_callback: float | None = None

    @property
    def last_callback(self) -> float:
        return time.monotonic() if self._last_callback is None else self._last_callback

    @last_callback.setter
    def last_callback(self, value: float) -> None:
        self._last_callback = value


class FakeCapture(LiveStream):
    overflows = 0
    xruns = 0
    block_time = 0.0

    def __init__(self, log: Log) -> None:
        self.log = log
        #: The ``since`` of each ``want(True, since)``: when what woke the capture happened.
        self.woken_since: list[float | None] = []

    def start(self) -> None:
        self.log("open", "capture")

    def stop(self) -> None:
        self.log("close", "capture")

    in_flight_s = 0.0
    wanted = True

    def want(self, wanted: bool, since: float | None = None) -> None:
        if wanted and not self.wanted:
            self.woken_since.append(since)
        self.wanted = wanted

    def configure(
        self,
        *,
        device: str | int | None = None,
        block_ms: int | None = None,
        gain_db: float | None = None,
    ) -> None:
        pass


class FakePlayback(LiveStream):
    volume = 1.0
    device: str | int = ""
    underruns = 0
    overflows = 0
    busy = False
    buffered_samples = 0

    def __init__(self, log: Log) -> None:
        self.log = log
        self.played: list[tuple[int, float | None]] = []  # (bytes, gain) of each play

    def start(self) -> None:
        self.log("open", "playback")

    def stop(self, timeout: float = 2.0) -> None:
        self.log("close", "playback")

    def play(self, pcm: bytes, gain: float | None = None) -> None:
        self.played.append((len(pcm), gain))

    def flush(self) -> None:
        pass

    def finish(self) -> None:
        pass


class FakeChain:
    """The microphone's path with nothing on it: every block goes to the outbox as it is."""

    echo = "off"
    barge_in = False

    def __init__(self, on_chunk: Callable[[bytes], None] = lambda pcm: None) -> None:
        self.on_chunk = on_chunk
        self.gaps: list[int] = []

    def push(self, pcm: bytes, adc_time: float | None = None) -> None:
        self.on_chunk(pcm)

    def gap(self, samples: int) -> None:
        self.gaps.append(samples)

    def flush(self) -> None:
        pass

    def preroll(self) -> list[bytes]:
        return []


class FakeLink:
    listener: Any = None

    def __init__(self, log: Log) -> None:
        self.log = log
        self.declarations: Callable[[], Sequence[Mapping[str, Any]]] = list
        self.answers: list[Any] = []

    def configure(self, live: LiveSettings, key: Secret | KeyProblem) -> None:
        pass

    def prepare(self) -> None:
        pass

    def wake(self) -> None:
        pass

    async def run(self) -> None:
        self.log("open", "session")
        try:
            await asyncio.Event().wait()
        finally:
            self.log("close", "session")

    def stop(self) -> None:
        pass

    async def send_video(self, jpeg: bytes) -> bool:
        return False

    async def send_tool_responses(self, answers: Any) -> int:
        self.answers.extend(answers)
        return len(answers)


class FakeCamera:
    wanted = False

    def __init__(self, log: Log) -> None:
        self.log = log
        log("open", "camera")

    def want(self, on: bool) -> None:
        self.wanted = on

    def reconfigure(self, settings: Any) -> None:
        pass

    async def close(self) -> None:
        self.log("close", "camera")

    async def snapshot(self, timeout_s: float = 5.0) -> bytes:
        raise RuntimeError("the fake camera takes no pictures")


class FakeNotifier:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def ready(self, status: str | None = None) -> None:
        self.sent.append("READY=1")

    def status(self, text: str) -> None:
        self.sent.append(f"STATUS={text}")

    def watchdog(self) -> None:
        self.sent.append("WATCHDOG=1")

    def reloading(self) -> None:
        self.sent.append("RELOADING=1")

    def stopping(self) -> None:
        self.sent.append("STOPPING=1")

    def watchdog_interval(self) -> float | None:
        return None


class FakeResume:
    handle: str | None = None

    def update(self, handle: str | None, resumable: bool) -> None:
        self.handle = handle

    def clear(self) -> None:
        self.handle = None

    def flush(self, timeout: float | None = None) -> bool:
        return True


class FakeControl:
    def __init__(self, log: Log) -> None:
        self.log = log

    async def start(self) -> None:
        self.log("open", "control")

    async def close(self) -> None:
        self.log("close", "control")


def factories(log: Log, *, fail: str = "") -> Factories:
    """Factories of fakes, all logging into ``log``; ``fail`` names one whose making raises."""

    def maker(name: str, make: Callable[[], Any]) -> Callable[..., Any]:
        def made(*args: Any, **kw: Any) -> Any:
            if name == fail:
                raise RuntimeError(f"{name} cannot be made")
            return make()

        return made

    return Factories(
        panel=lambda settings, **kw: (
            maker("panel", lambda: FakePanel(log, settings.panel))(settings, **kw)
        ),
        capture=maker("capture", lambda: FakeCapture(log)),
        mic_chain=lambda settings, playback, *, on_chunk, on_speech: (
            maker("mic_chain", lambda: FakeChain(on_chunk))()
        ),
        playback=maker("playback", lambda: FakePlayback(log)),
        link=maker("link", lambda: FakeLink(log)),
        resume=lambda settings: FakeResume(),
        vision=maker("vision", lambda: FakeCamera(log)),
        notifier=FakeNotifier,
        control=lambda path, commands: FakeControl(log),
    )


def settings() -> Settings:
    """The shipped defaults: nothing the fakes read depends on a file."""
    return Settings()

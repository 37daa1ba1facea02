"""The seams: what the shell needs of each adapter it drives, as small :class:`typing.Protocol` s.

The shell depends on these, never on an adapter's class; :class:`~talkie.shell.factories.Factories`
returns them, so a test fake and the real adapter are checked against the same protocol (mypy),
as gpiozero's devices are against its pin factory. Every method is called in the loop's thread;
an adapter that has its own threads (PortAudio's callbacks, gpiozero's) moves what it reports to
the loop itself before it calls back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from talkie.config import LiveSettings
from talkie.config.credentials import KeyProblem, Secret

if TYPE_CHECKING:  # the link's own protocols, named here for the shell
    from talkie.live.link import HandleStore as ResumeStore  # noqa: F401
    from talkie.live.link import Listener as LinkListener  # noqa: F401


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class CallLater(Protocol):
    """The clock of the machine's timers: the loop's ``call_later``, or a test's virtual clock."""

    def __call__(self, delay: float, callback: Callable[[], None], /) -> TimerHandle: ...


class Link(Protocol):
    """One Live session per :meth:`run`, sending the outbox (:class:`talkie.live.link.LiveLink`)."""

    #: Where the session reports (:class:`talkie.live.link.Listener`): the shell's LinkEvents.
    listener: Any
    #: The tools the model may call, declared at each session's setup.
    declarations: Callable[[], Sequence[Mapping[str, Any]]]

    def configure(self, live: LiveSettings, key: Secret | KeyProblem) -> None: ...
    def prepare(self) -> None: ...
    def wake(self) -> None: ...
    async def run(self) -> None: ...
    def stop(self) -> None: ...
    async def send_video(self, jpeg: bytes) -> bool: ...
    async def send_tool_responses(
        self,
        answers: Sequence[tuple[str, str, Mapping[str, Any], str, Sequence[tuple[str, bytes]]]],
    ) -> int: ...


class Capture(Protocol):
    """The microphone (:class:`talkie.audio.capture.Capture`): blocks to ``on_audio``."""

    overflows: int
    xruns: int
    #: While ``on_audio`` runs: when the block's first sample was recorded (the stream's clock).
    block_time: float
    #: Whether the loop wants the audio now (else the capture only keeps its ring).
    wanted: bool

    @property
    def last_callback(self) -> float: ...
    @property
    def in_flight_s(self) -> float: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def want(self, wanted: bool, since: float | None = None) -> None: ...
    def configure(
        self,
        *,
        device: str | int | None = None,
        block_ms: int | None = None,
        gain_db: float | None = None,
    ) -> None: ...


class Playback(Protocol):
    """The speaker (:class:`talkie.audio.playback.Playback`)."""

    volume: float
    device: str | int
    underruns: int

    @property
    def last_callback(self) -> float: ...
    @property
    def overflows(self) -> int: ...
    @property
    def busy(self) -> bool: ...
    @property
    def buffered_samples(self) -> int: ...
    def start(self) -> None: ...
    def stop(self, timeout: float = ...) -> None: ...
    def play(self, pcm: bytes, gain: float | None = None) -> None: ...
    def flush(self) -> None: ...
    def finish(self) -> None: ...


class MicChain(Protocol):
    """The microphone's path (:class:`talkie.audio.uplink_chain.MicChain`)."""

    echo: str
    barge_in: bool

    def push(self, pcm: bytes, adc_time: float | None = None) -> None: ...
    def gap(self, samples: int) -> None: ...
    def flush(self) -> None: ...
    def preroll(self) -> list[bytes]: ...


class Panel(Protocol):
    """The button and the LED (:class:`talkie.panel.Panel`)."""

    settings: Any

    def show(self, state_name: str) -> None: ...
    def close(self) -> None: ...


class ControlButtons(Protocol):
    """The panel's volume and mute buttons (:class:`talkie.panel.controls.ControlButtons`)."""

    def switched_off(self) -> bool | None: ...
    def close(self) -> None: ...


class Home(Protocol):
    """Home Assistant over MQTT (:class:`talkie.mqtt.HomeAssistant`)."""

    async def run(self) -> None: ...
    def update(self, **values: object) -> None: ...


class Camera(Protocol):
    """The shell's camera (:class:`talkie.shell.vision.Vision`), driving a frame source
    (:class:`talkie.vision.FrameSource`, the seam where a test's source stands in for the Pi's)."""

    wanted: bool

    def want(self, on: bool) -> None: ...
    async def snapshot(self, timeout_s: float = ...) -> bytes: ...
    def reconfigure(self, settings: Any) -> None: ...
    async def close(self) -> None: ...


class Notifier(Protocol):
    """systemd's notify socket (:class:`talkie.system.notify.Notifier`)."""

    def ready(self, status: str | None = None) -> None: ...
    def status(self, text: str) -> None: ...
    def watchdog(self) -> None: ...
    def reloading(self) -> None: ...
    def stopping(self) -> None: ...
    def watchdog_interval(self) -> float | None: ...


class ControlServer(Protocol):
    """The control socket (:class:`talkie.system.control.ControlServer`)."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...

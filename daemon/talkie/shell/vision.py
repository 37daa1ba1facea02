"""The shell's care of the camera: a streamer built from ``[vision]``, started and stopped as the
state machine's ``Camera`` effects say, its faults logged once, and the privacy light kept in step.

Part of the imperative shell (:mod:`talkie.shell.app`); the camera's own code is
:mod:`talkie.vision`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from talkie.config import Settings, VisionSettings

if TYPE_CHECKING:
    from talkie.vision import FrameSource

log = logging.getLogger("talkie")


def _source(vision: VisionSettings) -> FrameSource:
    from talkie.vision import Picamera2Source, SyntheticSource

    return SyntheticSource() if vision.camera == "synthetic" else Picamera2Source()


class Vision:
    """The camera for one App: ``want(on)`` follows the machine, ``close()`` at shutdown."""

    def __init__(
        self,
        settings: Settings,
        send: Callable[[bytes], Any],
        log_fault: Callable[[str], None],
        *,
        pin_factory: Any = None,
        make_source: Callable[[VisionSettings], FrameSource] = _source,
    ) -> None:
        self.settings = settings.vision
        self.send = send
        self.log_fault = log_fault
        self.pin_factory = pin_factory
        self.make_source = make_source
        self.streamer: Any = None
        self.indicator: Any = None
        self.wanted = False
        #: The ``look`` tool may use the camera (the privacy light is needed even with mode off).
        self.look = settings.tools.look_enabled(settings.vision.mode)
        self._open_indicator()

    def want(self, on: bool) -> None:
        """Start or stop sampling (the machine's ``Camera`` effect)."""
        self.wanted = on
        if on and self.settings.mode != "off":
            if self.streamer is None:
                self.streamer = self._make_streamer()
            if not self.streamer.running:
                self.streamer.start()
        elif self.streamer is not None and self.streamer.running:
            self.streamer.stop()

    async def snapshot(self, timeout_s: float = 5.0) -> bytes:
        """One frame now, as JPEG, whatever ``[vision] mode`` says (the ``look`` tool is allowed
        by ``[tools] look``); the privacy light shows while the camera is open."""
        if self.streamer is None:
            self.streamer = self._make_streamer()
        return bytes(await self.streamer.snapshot(timeout_s))

    def reconfigure(self, settings: Any) -> None:
        """New ``[vision]`` settings (a reload): a new streamer from the next start on."""
        if settings.vision == self.settings:
            self.look = settings.tools.look_enabled(settings.vision.mode)
            return
        was = self.wanted
        self.want(False)
        if self.streamer is not None:
            self.streamer.shutdown()  # its camera thread ends once the camera is closed
        self.streamer = None
        if (
            self.indicator is not None
            and settings.vision.indicator_pin != self.settings.indicator_pin
        ):
            self.indicator.close()
            self.indicator = None
        self.settings = settings.vision
        self.look = settings.tools.look_enabled(settings.vision.mode)
        if self.indicator is None:
            self._open_indicator()
        self.want(was)

    async def close(self) -> None:
        if self.streamer is not None:
            self.streamer.stop()
            await self.streamer.wait_stopped()  # the camera is released before we exit
            self.streamer.shutdown()
        if self.indicator is not None:
            self.indicator.close()

    @property
    def stats(self) -> dict[str, Any]:
        return self.streamer.stats() if self.streamer is not None else {}

    def _make_streamer(self) -> Any:
        from talkie.vision import VisionStreamer

        v = self.settings
        return VisionStreamer(
            self.make_source(v),
            self.send,
            fps=v.fps,
            size=(v.max_side, v.max_side * 3 // 4),
            max_side=v.max_side,
            quality=v.quality,
            retry_s=v.retry_s,
            on_fault=self._fault,
            on_active=self._active,
        )

    def _fault(self, message: str) -> None:
        self.log_fault(
            f"camera: {message}; talking goes on without it "
            f"(trying again every {self.settings.retry_s:g} s while it is wanted)"
        )

    def _active(self, on: bool) -> None:
        log.info("camera %s", "on" if on else "off")
        if self.indicator is not None:
            (self.indicator.on if on else self.indicator.off)()

    def _open_indicator(self) -> None:
        pin = self.settings.indicator_pin
        if pin is None or (self.settings.mode == "off" and not self.look):
            return
        try:
            from talkie.panel.leds import open_led_device

            self.indicator, _ = open_led_device("plain", (pin,), pin_factory=self.pin_factory)
        except Exception as exc:  # noqa: BLE001 - no privacy light is no reason not to talk
            log.warning("camera light on GPIO%d unavailable (%s)", pin, exc)

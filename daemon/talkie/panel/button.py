"""GPIO push-to-talk button (gpiozero Button) delivering events into an asyncio loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class GpioButton:
    """A push button on one GPIO pin.

    gpiozero runs when_pressed / when_released in whatever thread saw the edge; this class
    only forwards them with
    ``loop.call_soon_threadsafe``, so on_press / on_release always run in the
    loop thread, never synchronously in gpiozero's. Events arriving after close() are
    dropped. close() releases the pin (it can be opened again at once).
    """

    def __init__(
        self,
        pin: int,
        *,
        loop: asyncio.AbstractEventLoop,
        on_press: Callable[[], Any],
        on_release: Callable[[], Any],
        pull_up: bool = True,
        bounce_s: float | None = 0.02,
        pin_factory: Any = None,
    ) -> None:
        from gpiozero import Button

        self.pin = pin
        self._loop = loop
        self._closed = False
        self._device = Button(
            pin,
            pull_up=pull_up,
            bounce_time=bounce_s if bounce_s else None,
            pin_factory=pin_factory,
        )
        # Plain zero-argument closures: gpiozero introspects handlers and would pass the
        # Button to a callable that accepts one argument.
        self._device.when_pressed = lambda: self._forward(on_press)
        self._device.when_released = lambda: self._forward(on_release)

    @property
    def is_pressed(self) -> bool:
        """True while the button is down (False once closed)."""
        return not self._closed and bool(self._device.is_pressed)

    def _forward(self, callback: Callable[[], Any]) -> None:
        # Runs in a gpiozero thread (or whichever thread drives a mock pin).
        if self._closed:
            return
        try:
            self._loop.call_soon_threadsafe(self._deliver, callback)
        except RuntimeError:  # the loop is closed: the daemon is going away
            pass

    def _deliver(self, callback: Callable[[], Any]) -> None:
        if not self._closed:
            callback()

    def close(self) -> None:
        """Detach the handlers and release the pin. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._device.when_pressed = None
            self._device.when_released = None
        finally:
            self._device.close()

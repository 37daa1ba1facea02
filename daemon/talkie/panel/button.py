"""GPIO push-to-talk button (gpiozero Button) delivering events into an asyncio loop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class GpioButton:
    """A push button on one GPIO pin.

    gpiozero runs when_pressed / when_released in whatever thread saw the edge; this class
    only forwards them with
    ``loop.call_soon_threadsafe``, so on_press / on_release always run in the
    loop thread, never synchronously in gpiozero's. Each gets the time the edge was seen
    (``time.monotonic()``, stamped in that thread): a busy loop runs them late, and what they
    start (the turn's audio) reaches back to the press, not to when the loop got to it. Events
    arriving after close() are dropped. close() releases the pin (it can be opened again at
    once).
    """

    def __init__(
        self,
        pin: int,
        *,
        loop: asyncio.AbstractEventLoop,
        on_press: Callable[[float], Any],
        on_release: Callable[[float], Any],
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

    def _forward(self, callback: Callable[[float], Any]) -> None:
        # Runs in a gpiozero thread (or whichever thread drives a mock pin).
        if self._closed:
            return
        at = time.monotonic()
        try:
            self._loop.call_soon_threadsafe(self._deliver, callback, at)
        except RuntimeError:  # the loop is closed: the daemon is going away
            pass

    def _deliver(self, callback: Callable[[float], Any], at: float) -> None:
        if not self._closed:
            callback(at)

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

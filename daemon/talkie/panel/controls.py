"""The everyday controls on the GPIO header: volume buttons and the microphone's mute.

``[panel] volume_up_pin`` / ``volume_down_pin``: a push button each, one step per press.
``[panel] mute_pin``: the microphone's mute, a push button that toggles it (``mute_switch =
"toggle"``) or a latching switch whose position is the truth (``"switch"``: closed = off; read once
at start, so the switch wins over what was kept from before a restart).

Each is a :class:`~talkie.panel.button.GpioButton` (to GND, internal pull-up), so callbacks run in
the loop's thread. A control whose pin cannot be opened is left out with one line in the journal:
the rest of the device works without it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("talkie.panel")


class ControlButtons:
    """The controls ``settings`` (``[panel]``) asks for; ``close()`` releases their pins.

    ``on_volume(up)`` for a press of a volume button; ``on_mute(off)`` with True (switch the
    microphone off), False (on) or None (toggle: a press of a mute button)."""

    def __init__(
        self,
        settings: Any,
        *,
        loop: asyncio.AbstractEventLoop,
        on_volume: Callable[[bool], Any],
        on_mute: Callable[[bool | None], Any],
        pin_factory: Any = None,
        bounce_s: float | None = None,
    ) -> None:
        self.buttons: dict[str, Any] = {}
        self._switch = settings.mute_switch == "switch"
        bounce = settings.bounce_s if bounce_s is None else bounce_s
        wanted: list[tuple[str, int | None, Callable[[float], Any], Callable[[float], Any]]] = [
            ("volume up", settings.volume_up_pin, lambda _at: on_volume(True), _nothing),
            ("volume down", settings.volume_down_pin, lambda _at: on_volume(False), _nothing),
        ]
        if self._switch:
            wanted.append(
                (
                    "mute switch",
                    settings.mute_pin,
                    lambda _at: on_mute(True),
                    lambda _at: on_mute(False),
                )
            )
        else:
            wanted.append(("mute button", settings.mute_pin, lambda _at: on_mute(None), _nothing))
        for name, pin, press, release in wanted:
            if pin is None:
                continue
            try:
                from talkie.panel.button import GpioButton

                self.buttons[name] = GpioButton(
                    pin,
                    loop=loop,
                    on_press=press,
                    on_release=release,
                    pull_up=True,
                    bounce_s=bounce,
                    pin_factory=pin_factory,
                )
            except Exception as exc:  # noqa: BLE001 - gpiozero and its pin libraries raise anything
                log.error("panel: no %s on GPIO%d: %s", name, pin, _reason(exc))
        if self.buttons:
            log.info(
                "panel: %s", ", ".join(f"{name} on GPIO{b.pin}" for name, b in self.buttons.items())
            )

    def switched_off(self) -> bool | None:
        """A latching mute switch's position now (True: closed, the microphone off), or None
        when there is no switch."""
        switch = self.buttons.get("mute switch")
        return None if switch is None else switch.is_pressed

    def close(self) -> None:
        for button in self.buttons.values():
            try:
                button.close()
            except Exception:
                log.exception("panel: closing a control failed")
        self.buttons.clear()


def _nothing(_at: float) -> None:
    return None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__

"""The panel: push-to-talk button and status LED (GPIO, else keyboard + terminal, else none).

open_panel() opens what [panel] asks for on GPIO with gpiozero's default pin factory (which
honours GPIOZERO_PIN_FACTORY, e.g. "mock"). If GPIO cannot be used (no pin factory on a
non-Pi, pin busy, no permission) it logs one line with the reason and falls back to keyboard
push-to-talk plus a terminal status line when stdin is a terminal and keyboard = "auto",
otherwise to a panel of kind "none". Settings are used by attribute name only (duck typing
on talkie.config.PanelSettings / LedPattern).
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from talkie.panel.keyboard import KeyboardButton, TerminalLed, is_tty

if TYPE_CHECKING:
    from talkie.config import PanelSettings

log = logging.getLogger(__name__)

KEYBOARD_HINT = (
    "keyboard push-to-talk: hold SPACE or press ENTER to start/stop; "
    "+ and - for the volume, m to switch the microphone off or on"
)

__all__ = ["Panel", "open_panel", "KEYBOARD_HINT"]


class Panel:
    """An opened panel: `kind` is "gpio", "keyboard" or "none".

    show(state_name) displays settings.patterns[state_name] on the LED (if any); close()
    releases the button, the LED and the terminal. Call both from the loop thread.
    `reason` says why GPIO is not used ("" for a GPIO panel).
    """

    def __init__(
        self, kind: str, settings: Any, *, button: Any = None, led: Any = None, reason: str = ""
    ) -> None:
        self.kind = kind
        self.settings = settings
        self.button = button
        self.led = led
        self.reason = reason
        self.state: str | None = None
        self._closed = False

    def show(self, state_name: str) -> None:
        """Show the pattern configured for `state_name` (starting, idle, listening, ...)."""
        if self._closed:
            return
        self.state = state_name
        if self.led is None:
            return
        try:
            pattern = self.settings.patterns[state_name]
        except KeyError:
            log.warning("panel: no LED pattern for state %r; LED unchanged", state_name)
            return
        try:
            self.led.show(pattern, state_name)
        except Exception:
            log.exception("panel: cannot show state %r", state_name)

    @property
    def status_line(self) -> TerminalLed | None:
        """The LED drawn as a status line on a terminal (a keyboard panel's), or None."""
        led = self.led
        return led if isinstance(led, TerminalLed) and led.tty else None

    def close(self) -> None:
        """Release everything. Idempotent; never raises."""
        if self._closed:
            return
        self._closed = True
        for part in (self.button, self.led):
            if part is not None:
                try:
                    part.close()
                except Exception:
                    log.exception("panel: close failed")

    def __repr__(self) -> str:
        return f"<Panel kind={self.kind!r} button={self.button!r} led={self.led!r}>"


def open_panel(
    settings: PanelSettings,
    *,
    loop: asyncio.AbstractEventLoop,
    on_press: Callable[[float], Any],
    on_release: Callable[[float], Any],
    on_key: Callable[[str], Any] | None = None,
    pin_factory: Any = None,
    stdin: Any = None,
    stream: Any = None,
) -> Panel:
    """Open the panel described by `settings` (see module doc). Never raises for GPIO trouble.

    on_press / on_release are called with the time of the press or release
    (``time.monotonic()``, stamped where it was seen: a GPIO edge in gpiozero's thread), always
    in `loop`'s thread; on_key(key) gets the keyboard fallback's control keys (+, -, m).
    `pin_factory` overrides gpiozero's default; `stdin` / `stream` (default sys.stdin /
    sys.stderr) are used by the keyboard fallback.
    """
    pin = settings.button_pin if settings.button else None
    want_button = pin is not None
    want_led = settings.led != "none" and bool(settings.led_pins)
    if not want_button and not want_led:
        log.info("panel: no button and no LED configured")
        return Panel("none", settings, reason="nothing configured")

    button = led = None
    reason = ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if pin is not None:
            try:
                from talkie.panel.button import GpioButton

                button = GpioButton(
                    pin,
                    loop=loop,
                    on_press=on_press,
                    on_release=on_release,
                    pull_up=settings.button_pull_up,
                    bounce_s=settings.bounce_s,
                    pin_factory=pin_factory,
                )
            except Exception as exc:  # noqa: BLE001 - gpiozero and its pin libraries raise anything
                reason = describe_gpio_error(exc, (pin,), caught)
        if not reason and want_led:
            try:
                from talkie.panel.leds import GpioLed

                led = GpioLed(
                    settings.led,
                    tuple(settings.led_pins),
                    active_high=settings.led_active_high,
                    pin_factory=pin_factory,
                )
            except Exception as exc:  # noqa: BLE001 - gpiozero and its pin libraries raise anything
                led_reason = describe_gpio_error(exc, tuple(settings.led_pins), caught)
                if button is None:
                    reason = led_reason
                else:  # the button works: talk without a status LED rather than not at all
                    log.error("panel: no status LED: %s", led_reason)
    for warning in caught:
        log.debug("gpiozero: %s", warning.message)
    if not reason:
        log.info("panel: GPIO%s", _describe_gpio(settings, button, led))
        return Panel("gpio", settings, button=button, led=led)
    return _fallback(
        settings,
        reason,
        loop=loop,
        on_press=on_press,
        on_release=on_release,
        on_key=on_key,
        stdin=stdin,
        stream=stream,
    )


def _fallback(
    settings: Any,
    reason: str,
    *,
    loop: asyncio.AbstractEventLoop,
    on_press: Callable[[float], Any],
    on_release: Callable[[float], Any],
    stdin: Any,
    stream: Any,
    on_key: Callable[[str], Any] | None = None,
) -> Panel:
    import sys

    stdin = sys.stdin if stdin is None else stdin
    if settings.keyboard != "auto":
        log.warning(
            "no GPIO (%s): no push-to-talk button (keyboard = %r)", reason, settings.keyboard
        )
        return Panel("none", settings, reason=reason)
    if not is_tty(stdin):
        log.warning("no GPIO (%s): no push-to-talk button (stdin is not a terminal)", reason)
        return Panel("none", settings, reason=reason)
    button = None
    if settings.button:
        try:
            button = KeyboardButton(
                stdin, loop=loop, on_press=on_press, on_release=on_release, on_key=on_key
            )
        except Exception as exc:  # noqa: BLE001 - e.g. termios refuses the terminal
            log.warning("no GPIO (%s): no keyboard push-to-talk either: %s", reason, exc)
            return Panel("none", settings, reason=reason)
    led = TerminalLed(stream, loop=loop) if settings.led != "none" else None
    if button is not None:
        log.warning("no GPIO (%s): %s", reason, KEYBOARD_HINT)
    else:
        log.warning("no GPIO (%s): status shown on the terminal (button = false)", reason)
    return Panel("keyboard", settings, button=button, led=led, reason=reason)


def describe_gpio_error(
    exc: BaseException, pins: tuple[int, ...], caught: list | tuple = ()
) -> str:
    """One line saying why GPIO cannot be used, with the fix when we know it."""
    try:
        from gpiozero.exc import BadPinFactory, GPIOPinInUse
    except ImportError:
        return f"gpiozero cannot be imported ({exc}): pip install gpiozero"
    where = "GPIO" + ",".join(str(p) for p in pins)
    details = [str(w.message) for w in caught] + [str(exc)]
    text = " ".join(details).lower()
    if ".lgd-nfy" in text:
        return (
            "lgpio cannot create its notify pipe in the working directory: run from a "
            "writable directory or set LG_WD (e.g. LG_WD=/run/talkie)"
        )
    if isinstance(exc, PermissionError) or "permission" in text or "can not open gpiochip" in text:
        return (
            f"no permission to use {where}: run as a user in the 'gpio' group "
            "(access to /dev/gpiochip*)"
        )
    if isinstance(exc, GPIOPinInUse):
        return f"{where} is already used by another part of talkie: check the [panel] pins"
    if "busy" in text:
        return (
            f"{where} is busy: another process (a second talkie?) holds it; stop it or "
            "choose other pins in [panel]"
        )
    if isinstance(exc, BadPinFactory):
        return (
            "no pin factory: not a Raspberry Pi, or python3-lgpio is missing; "
            "GPIOZERO_PIN_FACTORY=mock simulates pins"
        )
    return f"{where} cannot be opened: {type(exc).__name__}: {exc}"


def _describe_gpio(settings: Any, button: Any, led: Any) -> str:
    parts = []
    if button is not None:
        parts.append(f" button on GPIO{settings.button_pin}")
    if led is not None:
        parts.append(f" {led.kind} LED on GPIO{','.join(str(p) for p in led.pins)}")
    return ",".join(parts) if parts else " (nothing opened)"

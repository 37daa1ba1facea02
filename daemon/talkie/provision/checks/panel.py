"""``talkie check``: the button (a press, within a time limit) and the LED (its patterns)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from talkie import config
from talkie.provision.checks.report import Report

BUTTON_WAIT_S = 15.0
LED_S = 2.0
#: BCM GPIO number -> physical pin of the 40-pin header (for wiring hints).
HEADER_PIN = {
    2: 3,
    3: 5,
    4: 7,
    14: 8,
    15: 10,
    17: 11,
    18: 12,
    27: 13,
    22: 15,
    23: 16,
    24: 18,
    10: 19,
    9: 21,
    25: 22,
    11: 23,
    8: 24,
    7: 26,
    0: 27,
    1: 28,
    5: 29,
    6: 31,
    12: 32,
    13: 33,
    19: 35,
    16: 36,
    26: 37,
    20: 38,
    21: 40,
}


def _pin_hint(pin: int) -> str:
    header = HEADER_PIN.get(pin)
    return f"GPIO{pin} (header pin {header})" if header else f"GPIO{pin}"


async def check_panel(
    report: Report,
    panel_settings: Any,
    *,
    ask_skip: str | None,
    pin_factory: Any = None,
    wait_s: float = BUTTON_WAIT_S,
    led_s: float = LED_S,
) -> None:
    """Open the GPIO button and LED like the daemon; ask for a press; blink the LED."""
    from talkie.panel import open_panel

    ps = dataclasses.replace(panel_settings, keyboard="off")  # GPIO or nothing, no keyboard
    want_button = bool(ps.button) and ps.button_pin is not None
    want_led = ps.led != "none" and bool(ps.led_pins)
    if not want_button and not want_led:
        report.skip('button and LED: none configured ([panel] button = false, led = "none")')
        return
    pressed = asyncio.Event()
    panel = open_panel(
        ps,
        loop=asyncio.get_running_loop(),
        on_press=lambda _at: pressed.set(),
        on_release=lambda _at: None,
        pin_factory=pin_factory,
    )
    try:
        if panel.kind != "gpio":
            if panel.reason.startswith("no pin factory"):  # not a Pi: nothing to test here
                report.skip(f"button and LED: {panel.reason}")
            else:
                report.fail(f"button and LED: {panel.reason}")
            return
        if want_button:
            await _check_button(report, panel, ps, pressed, ask_skip, wait_s)
        else:
            report.skip("button: none configured ([panel] button = false)")
        if want_led:
            await _check_led(report, panel, ps, led_s)
        else:
            report.skip('LED: none configured ([panel] led = "none")')
    finally:
        panel.close()


async def _check_button(
    report: Report, panel: Any, ps: Any, pressed: asyncio.Event, ask_skip: str | None, wait_s: float
) -> None:
    pin = ps.button_pin
    what = f"button on GPIO{pin}"
    other = "3.3 V (button_pull_up = false)" if not ps.button_pull_up else "GND"
    if panel.button.is_pressed:
        report.fail(
            f"{what}: reads as pressed while nobody presses it: check that it connects"
            f" {_pin_hint(pin)} to {other} only when pushed, and [panel] button_pull_up"
        )
        return
    if ask_skip:
        report.skip(f"{what}: not asked ({ask_skip})")
        return
    pressed.clear()
    report.prompt(f"press the button on GPIO{pin} now... (waiting up to {wait_s:g} s)")
    try:
        async with asyncio.timeout(wait_s):
            await pressed.wait()
    except TimeoutError:
        report.fail(
            f"{what}: no press within {wait_s:g} s: check that the button connects"
            f" {_pin_hint(pin)} to {other}, and [panel] button_pin"
        )
        return
    report.ok(f"{what}: pressed")


async def _check_led(report: Report, panel: Any, ps: Any, led_s: float) -> None:
    pins = ",".join(str(p) for p in ps.led_pins)
    if panel.led is None:
        report.fail(
            f"LED on GPIO{pins}: cannot be opened (see the message above): check [panel] led_pins"
        )
        return
    if ps.led == "rgb":
        report.ok(f"RGB LED on GPIO{pins}: red, green, blue for {led_s:g} s (look at it)")
        for color in ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)):
            panel.led.show(config.LedPattern("solid", color=color))
            await asyncio.sleep(led_s / 3)
    else:
        report.ok(f"LED on GPIO{pins}: blinking for {led_s:g} s (look at it)")
        panel.led.show(config.LedPattern("blink", on_s=0.25, off_s=0.25))
        await asyncio.sleep(led_s)
    panel.led.show(None)


# ------------------------------------------------------------------ Live API

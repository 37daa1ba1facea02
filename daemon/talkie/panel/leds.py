"""GPIO status LED: turns a declarative LedPattern into gpiozero calls.

A pattern is data (kind off/solid/blink/pulse, color, brightness, on_s, off_s; see
talkie.config.LedPattern). :class:`GpioLed` applies patterns on its own worker thread so
that the asyncio loop never waits for gpiozero (stopping a blink joins gpiozero's thread).
Only the attribute names of a pattern are used (duck typing). gpiozero is imported lazily.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterator
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

LED_KINDS = ("plain", "pwm", "rgb")
_BLINK_STEP_S = 0.02  # frame time of software-scaled blinks (PWM LED, brightness < 1)
_PULSE_STEP_S = 0.04  # frame time of software-scaled pulses (25 fps, like gpiozero)
_FULL = 0.999


class Look(NamedTuple):
    """The hashable essence of a pattern: equal looks never restart an animation."""

    kind: str
    color: tuple[float, float, float]
    brightness: float
    on_s: float
    off_s: float


def look_of(pattern: Any) -> Look:
    """Normalise anything with LedPattern's attributes (None means off) into a Look."""
    if pattern is None:
        return Look("off", (0.0, 0.0, 0.0), 0.0, 0.5, 0.5)
    color = tuple(_clamp(float(c)) for c in getattr(pattern, "color", (1.0, 1.0, 1.0)))
    if len(color) != 3:
        raise ValueError(f"LED colour must have 3 components, got {color!r}")
    kind = str(pattern.kind)
    if kind not in ("off", "solid", "blink", "pulse"):
        raise ValueError(f"unknown LED pattern kind {kind!r}")
    return Look(
        kind,
        color,
        _clamp(float(getattr(pattern, "brightness", 1.0))),
        max(0.0, float(getattr(pattern, "on_s", 0.5))),
        max(0.0, float(getattr(pattern, "off_s", 0.5))),
    )


def _clamp(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def pwm_frames(peak: float, on_s: float, off_s: float, *, fade: bool) -> Iterator[float]:
    """Endless PWM values for a scaled blink (fade=False) or pulse (fade=True).

    One value per frame: _BLINK_STEP_S for blinks, _PULSE_STEP_S for pulses.
    """
    step = _PULSE_STEP_S if fade else _BLINK_STEP_S
    n_on = max(1, round(on_s / step))
    n_off = max(1, round(off_s / step))
    if fade:
        frames = [peak * i / n_on for i in range(n_on)]
        frames += [peak * (1 - i / n_off) for i in range(n_off)]
    else:
        frames = [peak] * n_on + [0.0] * n_off
    return itertools.cycle(frames)


def open_led_device(
    kind: str, pins: tuple[int, ...], *, active_high: bool = True, pin_factory: Any = None
) -> tuple[Any, str]:
    """Open the gpiozero device for an LED; returns (device, effective kind).

    "pwm" falls back to a plain LED and "rgb" to an on/off RGBLED when the pin factory has no
    PWM (e.g. MockFactory with MockPin); the effective kind then is "plain" / "rgb-digital".
    Raises whatever gpiozero raises (BadPinFactory, GPIOPinInUse, ...).
    """
    from gpiozero import LED, PWMLED, RGBLED
    from gpiozero.exc import PinPWMUnsupported

    if kind not in LED_KINDS:
        raise ValueError(f"unknown LED kind {kind!r} (allowed: {', '.join(LED_KINDS)})")
    want = 3 if kind == "rgb" else 1
    if len(pins) != want:
        raise ValueError(f"a {kind} LED needs {want} pin(s), got {tuple(pins)!r}")
    if kind == "plain":
        return LED(pins[0], active_high=active_high, pin_factory=pin_factory), "plain"
    try:
        if kind == "pwm":
            return PWMLED(pins[0], active_high=active_high, pin_factory=pin_factory), "pwm"
        return RGBLED(*pins, active_high=active_high, pin_factory=pin_factory), "rgb"
    except PinPWMUnsupported:
        log.warning(
            "LED on GPIO%s: the pin factory has no PWM; using it as an on/off LED",
            ",".join(str(p) for p in pins),
        )
    if kind == "pwm":
        return LED(pins[0], active_high=active_high, pin_factory=pin_factory), "plain"
    return (
        RGBLED(*pins, active_high=active_high, pwm=False, pin_factory=pin_factory),
        "rgb-digital",
    )


def apply_look(device: Any, kind: str, look: Look) -> None:
    """Drive one gpiozero LED device (from open_led_device) to show `look`."""
    b = look.brightness
    dark = look.kind == "off" or b <= 0.0
    if kind == "plain":
        if dark:
            device.off()
        elif look.kind == "solid":
            device.on()
        else:  # blink, and pulse (a plain LED cannot fade)
            device.blink(on_time=look.on_s, off_time=look.off_s)
    elif kind == "pwm":
        device.source = None  # stop a scaled animation (joins its thread)
        if dark:
            device.off()
        elif look.kind == "solid":
            device.value = b
        elif b >= _FULL and look.kind == "blink":
            device.blink(on_time=look.on_s, off_time=look.off_s)
        elif b >= _FULL:
            device.pulse(fade_in_time=look.on_s, fade_out_time=look.off_s)
        else:  # gpiozero's blink/pulse always peak at 1.0: animate scaled values instead
            device.source_delay = _PULSE_STEP_S if look.kind == "pulse" else _BLINK_STEP_S
            device.source = pwm_frames(b, look.on_s, look.off_s, fade=look.kind == "pulse")
    elif kind == "rgb":
        color = tuple(_clamp(c * b) for c in look.color)
        if dark or color == (0.0, 0.0, 0.0):
            device.off()
        elif look.kind == "solid":
            device.value = color
        elif look.kind == "blink":
            device.blink(on_time=look.on_s, off_time=look.off_s, on_color=color)
        else:
            device.pulse(fade_in_time=look.on_s, fade_out_time=look.off_s, on_color=color)
    elif kind == "rgb-digital":
        color = tuple(1.0 if c >= 0.5 else 0.0 for c in look.color)
        if dark or color == (0.0, 0.0, 0.0):
            device.off()
        elif look.kind == "solid":
            device.value = color
        else:
            device.blink(on_time=look.on_s, off_time=look.off_s, on_color=color)
    else:
        raise ValueError(f"unknown LED kind {kind!r}")


class GpioLed:
    """A status LED on GPIO ("plain", "pwm" or "rgb") showing LedPatterns.

    show() only records the wanted pattern and returns at once; a worker thread makes the
    gpiozero calls. Showing the pattern already shown (or already queued) does nothing, so
    an animation is never restarted by a repeated state. close() turns the LED off and
    releases its pins.
    """

    def __init__(
        self, kind: str, pins: tuple[int, ...], *, active_high: bool = True, pin_factory: Any = None
    ) -> None:
        self.pins = tuple(pins)
        self.device, self.kind = open_led_device(
            kind, self.pins, active_high=active_high, pin_factory=pin_factory
        )
        self._cond = threading.Condition()
        self._wanted: Look | None = None
        self._wanted_seq = 0
        self._applied_seq = 0
        self._closing = False
        self._failed_once = False
        self._thread = threading.Thread(target=self._run, name="talkie-led", daemon=True)
        self._thread.start()

    @property
    def look(self) -> Look | None:
        """The look most recently asked for (None before the first show)."""
        return self._wanted

    def show(self, pattern: Any, name: str = "") -> None:
        """Ask for `pattern` (an LedPattern-like object; None = off). Never blocks."""
        look = look_of(pattern)
        with self._cond:
            if self._closing or look == self._wanted:
                return
            self._wanted = look
            self._wanted_seq += 1
            self._cond.notify_all()
        log.debug("LED %s -> %s", name or "?", look)

    def sync(self, timeout: float = 5.0) -> bool:
        """Wait until the worker has applied the latest show(); True if it has (for tests)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._closing or self._applied_seq == self._wanted_seq, timeout
            )

    def close(self) -> None:
        """Stop the worker, turn the LED off and release the pins. Idempotent."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        for step in ("source", "off", "close"):
            try:
                if step == "source":
                    self.device.source = None  # a scaled animation is not stopped by off()
                else:
                    getattr(self.device, step)()
            except Exception as exc:  # noqa: BLE001 - closing must not fail shutdown
                log.debug("LED %s failed: %s", step, exc)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closing or self._applied_seq != self._wanted_seq)
                if self._closing:
                    return
                look, seq = self._wanted, self._wanted_seq
            try:
                if look is not None:
                    apply_look(self.device, self.kind, look)
            except Exception:
                if not self._failed_once:
                    self._failed_once = True
                    log.exception(
                        "LED on GPIO%s: cannot show %s", ",".join(str(p) for p in self.pins), look
                    )
            with self._cond:
                self._applied_seq = seq
                self._cond.notify_all()

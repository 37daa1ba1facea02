"""``talkie check``: the hardware self-test for the person assembling the device.

One aligned line per check, as soon as it is done::

    OK   config /etc/talkie/talkie.toml
    OK   microphone: "USB Audio" (index 2) at 16000 Hz
    FAIL recorded 3 s: silence (below -70 dBFS): is the microphone muted? check `alsamixer` / ...
    OK   camera (picamera2): a 768x576 frame, 31 KB as JPEG

Every FAIL says what to do.  The checks use the daemon's own adapters (Capture, Playback,
open_panel, LiveLink), so what passes here works the same way in the daemon.  The API key is
never printed.  :func:`main` returns the exit status: 0 if nothing failed, 1 otherwise, and
``config.EX_CONFIG`` (78) for a config that cannot be used.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from talkie import config
from talkie.provision.checks.audio import check_microphone, check_speaker

OK, FAIL, SKIP = "OK", "FAIL", "SKIP"
BUTTON_WAIT_S = 15.0
LED_S = 2.0
API_GRACE_S = 5.0  # beyond [live] connect_timeout_s
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


class Report:
    """Writes one aligned ``OK``/``FAIL``/``SKIP`` line per check and counts the failures.

    ``prompt(text)`` asks the person for something; on a terminal the next line replaces it.
    Every line goes through the redactors added with :meth:`hide` (the API key).
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.lines: list[tuple[str, str]] = []
        self.failed = 0
        self._redactors: list[Callable[[str], str]] = []
        self._tty = _is_tty(out)
        self._prompting = False

    def hide(self, redact: Callable[[str], str]) -> None:
        """Pass every later line through ``redact`` (e.g. ``Secret.redact``)."""
        self._redactors.append(redact)

    def _clean(self, text: str) -> str:
        for redact in self._redactors:
            text = redact(text)
        return text

    def _write(self, text: str) -> None:
        if self._prompting and self._tty:
            text = "\r\033[K" + text
        self._prompting = False
        self.out.write(text)
        self.out.flush()

    def add(self, status: str, text: str) -> None:
        text = self._clean(text)
        self.lines.append((status, text))
        if status == FAIL:
            self.failed += 1
        self._write(f"{status:<4} {text}\n")

    def ok(self, text: str) -> None:
        self.add(OK, text)

    def fail(self, text: str) -> None:
        self.add(FAIL, text)

    def skip(self, text: str) -> None:
        self.add(SKIP, text)

    def prompt(self, text: str) -> None:
        self._write(f"{'':<4} {self._clean(text)}" + ("" if self._tty else "\n"))
        self._prompting = True


def _is_tty(stream: Any) -> bool:
    from talkie.panel.keyboard import is_tty

    return is_tty(stream)


# ------------------------------------------------------------------ panel
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
        on_press=pressed.set,
        on_release=lambda: None,
        on_hold=lambda: None,
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
class _Probe:
    """A LiveLink listener that only notes whether the session opened or how it was lost."""

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.opened_at: float | None = None
        self.reason = ""
        self.fatal = False

    def opened(self) -> None:
        self.opened_at = time.monotonic()
        self.done.set()

    def lost(self, reason: str, fatal: bool) -> None:
        if not self.done.is_set():
            self.reason, self.fatal = reason, fatal
            self.done.set()

    def audio(self, pcm: bytes) -> None: ...
    def interrupted(self) -> None: ...
    def turn_complete(self) -> None: ...
    def heard(self, text: str) -> None: ...
    def said(self, text: str) -> None: ...


async def check_api(report: Report, live: Any, *, env: Any = None) -> None:
    """Open a real Live session with the configured key and endpoint, then close it."""
    from talkie.config.credentials import KeyProblem, load_api_key
    from talkie.core.outbox import Outbox
    from talkie.live.link import LiveLink

    key = load_api_key(live.api_key_file, env=env)
    if isinstance(key, KeyProblem):
        report.fail(f"API key: {key.message}")
        return
    report.hide(key.redact)
    probe = _Probe()
    link = LiveLink(live, key, Outbox(1 << 16), probe)
    await asyncio.to_thread(link.prepare)  # the SDK import is not part of the round trip
    started = time.monotonic()
    task = asyncio.create_task(link.run())
    try:
        async with asyncio.timeout(live.connect_timeout_s + API_GRACE_S):
            await probe.done.wait()
    except TimeoutError:
        probe.reason = f"no answer within {live.connect_timeout_s + API_GRACE_S:g} s"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    where = live.endpoint or "the Live endpoint"
    if probe.opened_at is not None:
        ms = round((probe.opened_at - started) * 1000)
        report.ok(f"API key (from {key.source}) accepted by {where} ({live.model}, {ms} ms)")
    elif probe.reason.startswith("API key "):  # "API key rejected: put a valid key in ..."
        report.fail(f"API key (from {key.source}): {probe.reason[len('API key ') :]}")
    else:
        fix = (
            ""
            if probe.fatal
            else (
                ": check the network connection"
                if not live.endpoint
                else ": check [live] endpoint and that the server is running"
            )
        )
        report.fail(f"Live session ({live.model} at {where}): {probe.reason}{fix}")


# ------------------------------------------------------------------ all of it
async def _guarded(report: Report, what: str, check: Any) -> None:
    """Run one check; an unexpected error becomes its FAIL line instead of ending the run."""
    try:
        await check
    except Exception as exc:  # noqa: BLE001 - the other checks must still run
        report.fail(f"{what}: unexpected {type(exc).__name__}: {exc}")


async def check_camera(report: Report, vision: Any) -> None:
    """Open the camera as the daemon would, grab one frame, encode it as the daemon would."""
    if vision.mode == "off":
        report.skip('camera: vision is off ([vision] mode = "off")')
        return
    from talkie.vision import CameraError, Picamera2Source, SyntheticSource, encode

    source = SyntheticSource() if vision.camera == "synthetic" else Picamera2Source()
    size = (vision.max_side, vision.max_side * 3 // 4)
    try:
        await asyncio.to_thread(source.open, size)
        frame = None
        for _ in range(20):  # the first frame may take a moment
            frame = await asyncio.to_thread(source.latest)
            if frame is not None:
                break
            await asyncio.sleep(0.1)
        if frame is None:
            report.fail("camera: no frame within 2 s: check its cable (`rpicam-hello`)")
            return
        jpeg = await asyncio.to_thread(
            encode, frame.rgb, max_side=vision.max_side, quality=vision.quality
        )
        height, width = frame.rgb.shape[:2]
        report.ok(
            f"camera ({vision.camera}): a {width}x{height} frame, {len(jpeg) // 1024} KB as JPEG"
        )
    except CameraError as exc:
        report.fail(f'camera: {exc}: connect a camera, or set [vision] mode = "off"')
    finally:
        await asyncio.to_thread(source.close)


async def run_checks(
    settings: Any,
    report: Report,
    *,
    seconds: float = 3.0,
    ask_skip: str | None = None,
    pin_factory: Any = None,
    env: Any = None,
    button_wait_s: float = BUTTON_WAIT_S,
    led_s: float = LED_S,
) -> None:
    """Every check after the config, in order.  ``ask_skip``: why not to ask the person for
    anything (None = ask).  Must run in an asyncio loop."""
    await _guarded(report, "microphone", check_microphone(report, settings.audio, seconds))
    await _guarded(report, "speaker", check_speaker(report, settings.audio))
    await _guarded(
        report,
        "button and LED",
        check_panel(
            report,
            settings.panel,
            ask_skip=ask_skip,
            pin_factory=pin_factory,
            wait_s=button_wait_s,
            led_s=led_s,
        ),
    )
    await _guarded(report, "camera", check_camera(report, settings.vision))
    await _guarded(report, "API key", check_api(report, settings.live, env=env))


def main(
    path: str,
    *,
    no_input: bool = False,
    seconds: float = 3.0,
    out: TextIO | None = None,
    err: TextIO | None = None,
    stdin: Any = None,
    pin_factory: Any = None,
    env: Any = None,
    button_wait_s: float = BUTTON_WAIT_S,
    led_s: float = LED_S,
) -> int:
    """Run ``talkie check`` on the config at ``path``; returns the exit status."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    stdin = sys.stdin if stdin is None else stdin
    try:
        settings = config.load(path)
    except config.ConfigError as exc:
        print(f"talkie: {exc}", file=err)
        return config.EX_CONFIG
    report = Report(out)
    report.ok(f"config {settings.source}")
    ask_skip = "--no-input" if no_input else None if _is_tty(stdin) else "stdin is not a terminal"
    try:
        asyncio.run(
            run_checks(
                settings,
                report,
                seconds=seconds,
                ask_skip=ask_skip,
                pin_factory=pin_factory,
                env=env,
                button_wait_s=button_wait_s,
                led_s=led_s,
            )
        )
    except KeyboardInterrupt:  # Ctrl-C: the adapters were closed by their finally blocks
        report.fail("interrupted: the remaining checks did not run")
        return 130
    return 1 if report.failed else 0

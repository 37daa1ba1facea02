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
import sys
from typing import Any, TextIO

from talkie import config
from talkie.provision.checks.api import check_api
from talkie.provision.checks.audio import check_microphone, check_speaker
from talkie.provision.checks.home import check_mqtt
from talkie.provision.checks.panel import BUTTON_WAIT_S, LED_S, check_panel
from talkie.provision.checks.report import Report, is_tty


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
    await _guarded(report, "MQTT broker", check_mqtt(report, settings))


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
    ask_skip = "--no-input" if no_input else None if is_tty(stdin) else "stdin is not a terminal"
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

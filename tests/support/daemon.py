"""Running the daemon in-process for integration tests: a config for the test rig, and a way to
wait for what it shows."""

from __future__ import annotations

import asyncio
from pathlib import Path

#: Button pin and PWM LED pin of the test rig (gpiozero MockFactory).
BUTTON, LED_PIN = 17, 27
#: One steady PWM level per state, so the LED pin's history spells the states out.
LEVELS = {
    "starting": 0.05, "idle": 0.1, "connecting": 0.2, "listening": 0.3, "thinking": 0.4,
    "speaking": 0.5, "reconnecting": 0.6, "error": 0.7, "ringing": 0.8, "muted": 0.9,
}


def write_config(tmp_path: Path, double, pulse, key: str, extra: str = "", audio: str = "",
                 tail: str = "") -> Path:
    """A talkie.toml for the rig: the double as a private endpoint, the null-sink audio devices,
    the mock button and LED. ``extra`` goes into [live], ``audio`` into [audio], ``tail`` (more
    sections) at the end."""
    key_file = tmp_path / "api-key"
    key_file.write_text(key + "\n")
    patterns = "\n".join(f"[panel.patterns.{name}]\nkind = \"solid\"\nbrightness = {level}\n"
                         for name, level in LEVELS.items())
    path = tmp_path / "talkie.toml"
    path.write_text(f"""
[live]
endpoint = "{double.endpoint}"
ca_file = "{double.ca_file}"
api_key_file = "{key_file}"
{extra}
[audio]
input_device = "{pulse.mic_device}"
output_device = "{pulse.speaker_device}"
chunk_ms = 20
{audio}

[session]
state_dir = "{tmp_path}"

[panel]
button_pin = {BUTTON}
led = "pwm"
led_pins = [{LED_PIN}]

{patterns}
{tail}
""")
    return path


def led_states(factory) -> list[str]:
    """The LED pin's history as state names (repeats folded)."""
    names = {level: name for name, level in LEVELS.items()}
    seen: list[str] = []
    for change in factory.pin(LED_PIN).states:
        name = names.get(round(float(change.state), 3))
        if name and (not seen or seen[-1] != name):
            seen.append(name)
    return seen


class Shows:
    """An App ``on_show`` hook that keeps what was shown and lets a test wait for it."""

    def __init__(self) -> None:
        self.shown: list[tuple[object, str]] = []
        self.changed = asyncio.Event()

    def __call__(self, phase, status) -> None:
        self.shown.append((phase, status))
        self.changed.set()

    @property
    def phases(self) -> list:
        return [phase for phase, _ in self.shown]

    async def until(self, predicate, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self.phases):
                self.changed.clear()
                await self.changed.wait()


async def started_app(tmp_path: Path, double, pulse, key: str, factory):
    """The daemon in this process on the rig (its config written by :func:`write_config`, the
    button and LED on ``factory``, a MockFactory), served until READY and the SDK loaded;
    returns (app, its task, its Shows)."""
    from talkie import config
    from talkie.config.credentials import load_api_key
    from talkie.panel import open_panel
    from talkie.shell.app import App, Factories

    settings = config.load(write_config(tmp_path, double, pulse, key))
    shows = Shows()
    app = App(settings, load_api_key(settings.live.api_key_file, env={}), on_show=shows,
              factories=Factories(panel=lambda s, **kw: open_panel(s.panel, pin_factory=factory,
                                                                   **kw)))
    task = asyncio.create_task(app.run())
    await asyncio.wait_for(app.ready.wait(), 20)
    await asyncio.wait_for(app.prepared.wait(), 20)
    return app, task, shows

"""``talkie run``: the daemon's process, from settings to a clean exit."""

from __future__ import annotations

import asyncio
import logging
import signal

from talkie import version
from talkie.config import Settings
from talkie.config.credentials import load_api_key
from talkie.shell.app import App
from talkie.system import logs

log = logging.getLogger("talkie")


async def serve(app: App) -> None:
    """Run ``app`` until SIGTERM or SIGINT; SIGHUP reloads the config."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, app.stop)
    loop.add_signal_handler(signal.SIGHUP, app.reload)  # systemctl reload talkie
    await app.run()


def run(settings: Settings) -> int:
    """The daemon, logging to the journal (or stderr); its exit status."""
    logs.setup(settings.log.level)
    key = load_api_key(settings.live.api_key_file)
    log.info(
        "talkie %s starting (config %s, model %s)", version(), settings.source, settings.live.model
    )
    for note in settings.notes:
        log.warning("config: %s", note)
    asyncio.run(serve(App(settings, key)))
    log.info("talkie stopped")
    return 0

"""A talkie that is only its Home Assistant link, in a process of its own (for the last-will test:
the test kills it with SIGKILL, and the broker must say "offline" for it).

    python -m support.mqtt_device HOST PORT DEVICE_ID
"""

from __future__ import annotations

import asyncio
import sys

from talkie.config.settings import MqttSettings
from talkie.mqtt import Device, Features, HomeAssistant


async def main(host: str, port: int, device: str) -> None:
    settings = MqttSettings(enabled=True, host=host, port=port, keepalive_s=5)
    link = HomeAssistant(
        settings,
        None,
        Device(device, "talkie", "test"),
        Features(transcripts=False, camera=False, timers=False),
        lambda name, value: print(name, value, flush=True),
        backoff_s=(0.05, 0.2),
    )
    link.update(state="ready")
    await link.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))

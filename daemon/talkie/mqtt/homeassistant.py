"""The link to Home Assistant through an MQTT broker: announce the device (discovery), publish its
state, pass on the commands, and keep at it.

:meth:`HomeAssistant.run` connects, announces, serves, and when the broker goes away tries again
with a growing, jittered wait (1 s doubling to 60 s, from 1 s again once connected), forever: a
broker that is down never stops the daemon and is one line in the journal, not one per try. The
broker publishes the last will, "offline" (retained) on the availability topic, when the link dies
without a goodbye; a clean stop says "offline" itself. :meth:`HomeAssistant.update` never waits:
it keeps the latest value of each key and wakes the publisher (latest wins, nothing piles up).

aiomqtt (asyncio-native, over paho-mqtt) is imported inside :meth:`run` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from talkie.config.credentials import Secret, guard_secret
from talkie.config.settings import MqttSettings
from talkie.mqtt import commands
from talkie.mqtt.discovery import (
    BY_KEY,
    COMMAND_KEYS,
    OFFLINE,
    ONLINE,
    Device,
    Features,
    Topics,
    discovery,
    enabled,
    state_payload,
)

if TYPE_CHECKING:
    import aiomqtt

LOG = "talkie.mqtt"
#: paho-mqtt's own lines (at WARNING and above: its DEBUG is a line per packet).
CLIENT_LOG = "talkie.mqtt.client"
#: The client's wait for the broker's answer to a connect, a subscribe or a publish (seconds).
TIMEOUT_S = 10.0
#: A clean stop's "offline" and goodbye, each at most this long.
STOP_TIMEOUT_S = 0.5
QOS = 1


class HomeAssistant:
    """One device in Home Assistant through the broker of ``settings`` (see the module's doc).

    ``on_command(name, value)`` is called in the loop's thread for each valid command:
    ``("press", None)``, ``("stop", None)``, ``("say", text)``, ``("volume", 0..100)``,
    ``("speaker_mute" | "mic_mute" | "camera", bool)``. ``password`` goes with
    ``settings.username``; it never reaches a log line.
    """

    def __init__(
        self,
        settings: MqttSettings,
        password: Secret | None,
        device: Device,
        features: Features,
        on_command: Callable[[str, object], None],
        *,
        jitter: Callable[[], float] = random.random,
        backoff_s: tuple[float, float] = (1.0, 60.0),
        auth_retry_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self.settings, self.device, self.features = settings, device, features
        self.on_command = on_command
        self.password = password
        self.jitter, self.backoff_s, self.auth_retry_s = jitter, backoff_s, auth_retry_s
        self.timeout_s = timeout_s
        self.topics = Topics.of(settings.discovery_prefix, settings.base_topic, device.id)
        self.where = f"{settings.host}:{settings.port}"
        self.log = logging.getLogger(LOG)
        client_log = logging.getLogger(CLIENT_LOG)
        if client_log.level == logging.NOTSET:
            client_log.setLevel(logging.WARNING)
        if password is not None and password.reveal():
            guard_secret(password.reveal(), (LOG, CLIENT_LOG))
        self.warnings = commands.Warnings(clock)
        self._latest: dict[str, bytes] = {}
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._connected = False
        self._down = ""  # the kind of failure logged since the link was last up ("" = none)
        self._tls: ssl.SSLContext | None = None
        self._was_up = False  # the current (or last) session got connected
        self._hello = False  # the first connection has been logged
        self._again = False  # Home Assistant asked for the announcement again

    # ---- the shell's side

    @property
    def connected(self) -> bool:
        """Connected to the broker and announced to Home Assistant."""
        return self._connected

    def update(self, **values: object) -> None:
        """Remember the latest value of each key and have it published (retained) once
        connected. Transcripts are dropped unless the device has them (``Features``)."""
        for key, value in values.items():
            payload = state_payload(key, value)  # ValueError for a key that is not a state's
            if not enabled(BY_KEY[key], self.features):
                continue
            if self._latest.get(key) != payload:
                self._latest[key] = payload
                self._dirty.add(key)
        if self._dirty:
            self._wake.set()

    # ---- the link

    async def run(self) -> None:
        """Connect, announce, serve commands, and reconnect, until cancelled."""
        import aiomqtt

        attempt = 0
        while True:
            try:
                await self._session(aiomqtt)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 -- every failure is a retry, never a crash
                kind, words = self._reason(aiomqtt, exc)
            else:  # (the broker closed the stream without an error)
                kind, words = "lost", "the connection closed"
            finally:
                self._connected = False
            if self._was_up:  # it had connected: the waits start short again
                attempt = 0
                kind = "lost" if kind == "unreachable" else kind
            delay = self._delay(kind, attempt)
            attempt += 1
            self._report(kind, words, delay)
            await asyncio.sleep(delay)

    async def probe(self) -> str:
        """One connection and straight out again (``talkie check``): "" if the broker took it,
        else why not, in words (never the password)."""
        import aiomqtt

        try:
            if self.settings.tls and self._tls is None:
                self._tls = await asyncio.to_thread(self._tls_context)
            client = aiomqtt.Client(
                self.settings.host,
                self.settings.port,
                username=self.settings.username or None,
                password=self.password.reveal() if self.password is not None else None,
                identifier=_client_id(self.device.id) + "-check",
                timeout=math.inf,
                tls_context=self._tls,
                logger=logging.getLogger(CLIENT_LOG),
            )
            async with asyncio.timeout(self.timeout_s):
                await client.__aenter__()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await client.__aexit__(None, None, None)
        except TimeoutError:
            return f"no answer within {self.timeout_s:g} s"
        except Exception as exc:  # noqa: BLE001 -- every failure is a line of the check
            return self._reason(aiomqtt, exc)[1]
        return ""

    def _delay(self, kind: str, attempt: int) -> float:
        base, cap = self.backoff_s
        if kind == "auth":  # a wrong password does not get better by asking often
            return self.auth_retry_s * (0.5 + 0.5 * self.jitter())
        return self.jitter() * min(cap, base * 2 ** min(attempt, 30))

    async def _session(self, aiomqtt: Any) -> None:
        self._was_up = False
        if self.settings.tls and self._tls is None:
            self._tls = await asyncio.to_thread(self._tls_context)
        client = aiomqtt.Client(
            self.settings.host,
            self.settings.port,
            username=self.settings.username or None,
            password=self.password.reveal() if self.password is not None else None,
            identifier=_client_id(self.device.id),
            will=aiomqtt.Will(self.topics.availability, OFFLINE, qos=QOS, retain=True),
            keepalive=self.settings.keepalive_s,
            # Every wait is bounded here with asyncio.timeout: the client's own (wait_for) can
            # swallow a cancellation on Python 3.11, and a stop must never hang.
            timeout=math.inf,
            tls_context=self._tls,
            logger=logging.getLogger(CLIENT_LOG),
            max_queued_incoming_messages=256,
        )
        async with asyncio.timeout(self.timeout_s):
            await client.__aenter__()
        try:
            self._was_up = True
            self._report_up()
            await self._serve(client)
        except asyncio.CancelledError:
            await self._goodbye(client)
            raise
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await client.__aexit__(None, None, None)

    async def _serve(self, client: aiomqtt.Client) -> None:
        topics = [(self.topics.command(k), QOS) for k in COMMAND_KEYS if self._takes(k)]
        async with asyncio.timeout(self.timeout_s):
            await client.subscribe([*topics, (self.topics.ha_status, QOS)], timeout=math.inf)
        await self._announce(client)
        self._connected = True
        tasks = [
            asyncio.create_task(self._publisher(client)),
            asyncio.create_task(self._listen(client)),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # its failure ends the session
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)

    async def _publish(self, client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        async with asyncio.timeout(self.timeout_s):
            await client.publish(topic, payload, qos=QOS, retain=True, timeout=math.inf)

    async def _announce(self, client: aiomqtt.Client) -> None:
        """Discovery, every state, then "online"; all retained."""
        for topic, payload, on in discovery(self.device, self.features, self.topics):
            await self._publish(client, topic, payload)
            entity = BY_KEY[topic.rsplit("/", 2)[-2]]
            if not on and entity.state:  # no transcripts kept on the broker when they are off
                await self._publish(client, self.topics.state(entity.key), b"")
        self._dirty.update(self._latest)
        await self._publish_states(client)
        await self._publish(client, self.topics.availability, ONLINE)

    async def _publish_states(self, client: aiomqtt.Client) -> None:
        while self._dirty:
            key, sent = self._dirty.pop(), False
            try:
                await self._publish(client, self.topics.state(key), self._latest[key])
                sent = True
            finally:
                if not sent:  # sent again once connected
                    self._dirty.add(key)

    async def _publisher(self, client: aiomqtt.Client) -> None:
        """State as it changes, and the whole announcement again when Home Assistant asks."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._again:
                self._again = False
                await self._announce(client)
            await self._publish_states(client)

    async def _listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = str(message.topic)
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if message.retain:  # a stale command (or birth) kept by the broker: not for now
                continue
            if topic == self.topics.ha_status:
                if payload.strip() == ONLINE:  # Home Assistant (re)started: tell it again
                    self.log.info("Home Assistant is back: announcing talkie to it again")
                    self._again = True
                    self._wake.set()
                continue
            key = self.topics.command_key(topic)
            if key is not None and self._takes(key):
                self._command(key, payload)

    def _takes(self, key: str) -> bool:
        return enabled(BY_KEY[key], self.features)

    def _command(self, key: str, payload: bytes) -> None:
        value = commands.parse(key, payload)
        if isinstance(value, commands.Refused):
            quiet = self.warnings.allow(key)
            if quiet is not None:
                more = f" ({quiet} more dropped before it)" if quiet else ""
                self.log.warning(
                    "MQTT command %s dropped%s: %s", key, more, self._redact(value.reason)
                )
            return
        try:
            self.on_command(key, value)
        except Exception:  # the shell's fault, not the link's: say so and go on
            self.log.exception("MQTT command %s: its handler failed", key)

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        """On a clean stop: "offline" (retained) before the disconnect, each briefly."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await client.publish(
                    self.topics.availability, OFFLINE, qos=QOS, retain=True, timeout=math.inf
                )

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.settings.ca_file or None)

    # ---- what the journal says

    def _redact(self, text: str) -> str:
        return self.password.redact(text) if self.password is not None else text

    def _reason(self, aiomqtt: Any, exc: BaseException) -> tuple[str, str]:
        """(kind, words) of a failure: "auth", "unreachable", "lost" or "error"."""
        from aiomqtt.exceptions import MqttConnectError

        if isinstance(exc, MqttConnectError):
            code = getattr(exc.rc, "value", exc.rc)
            if code in (4, 134):
                return "auth", "bad user name or password"
            if code in (5, 135):
                return "auth", "not authorised"
            return "unreachable", f"refused: {self._redact(str(exc))}"
        parts = [str(exc)] + ([str(exc.__cause__)] if exc.__cause__ else [])
        text = self._redact(": ".join(p for p in parts if p))
        lower = text.lower()
        if "disconnected during message" in lower:
            return "lost", "the connection was lost"
        for words, found in _WORDS:
            if any(f in lower for f in found):
                return "unreachable", words
        if isinstance(exc, aiomqtt.MqttError):
            return "unreachable", (text or "no answer")[:200]
        return "error", f"{type(exc).__name__}: {text}"[:200]

    def _report(self, kind: str, words: str, delay: float) -> None:
        if kind == "auth" and self._down != "auth":
            who = f'user "{self.settings.username}"' if self.settings.username else "no user"
            fix = (
                f"the password in {self.password.source}"
                if self.password is not None
                else "[mqtt] password_file (none is set)"
            )
            self.log.error(
                "MQTT broker %s refused talkie (%s, %s): check [mqtt] username and %s; "
                "trying again every few minutes; Home Assistant shows talkie unavailable",
                self.where,
                words,
                who,
                fix,
            )
        elif kind != "auth" and not self._down and kind == "lost":
            self.log.warning(
                "MQTT connection to broker %s lost (%s): retrying in the background; "
                "Home Assistant shows talkie unavailable",
                self.where,
                words,
            )
        elif kind != "auth" and not self._down:
            self.log.warning(
                "MQTT broker %s unreachable (%s): retrying in the background; "
                "Home Assistant shows talkie unavailable",
                self.where,
                words,
            )
        else:
            self.log.debug("MQTT broker %s: %s; next try in %.1f s", self.where, words, delay)
        self._down = kind

    def _report_up(self) -> None:
        if self._down:
            self.log.info("MQTT broker %s connected again: talkie announced", self.where)
        elif not self._hello:
            self._hello = True
            self.log.info(
                "MQTT broker %s connected: talkie is device %s in Home Assistant",
                self.where,
                self.device.id,
            )
        self._down = ""


_WORDS = (
    ("connection refused", ("refused",)),
    ("unknown host", ("name or service not known", "nodename nor servname", "name resolution")),
    ("unknown host", ("no address associated",)),
    ("no route to it", ("unreachable", "no route to host")),
    ("its TLS certificate is not trusted: check [mqtt] ca_file", ("certificate verify failed",)),
    ("TLS failed", ("ssl", "tls", "wrong version number")),
    ("no answer", ("timed out", "timeout")),
    ("the connection was lost", ("reset by peer", "broken pipe", "connection lost")),
)


def _client_id(device_id: str) -> str:
    return (device_id if device_id.startswith("talkie") else f"talkie-{device_id}")[:64]

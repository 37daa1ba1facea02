"""The Live link on the real google-genai SDK against the Live test double over TLS."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest

from talkie import config
from talkie.live import options
from talkie.live.link import LiveLink
from talkie.system.credentials import KeyProblem, Secret
from talkie.uplink import Outbox
from tests.support.live_double import AutoReply, LiveDouble, tone

KEY = "AIzaSy-link-test-key-0123456789"


class Recorder:
    """A link listener that keeps what it was told, in order."""

    def __init__(self):
        self.events: list[tuple[str, object]] = []
        self.changed = asyncio.Event()

    def _add(self, name, value=None):
        self.events.append((name, value))
        self.changed.set()

    def opened(self): self._add("opened")
    def lost(self, reason, fatal): self._add("lost", (reason, fatal))
    def audio(self, pcm): self._add("audio", pcm)
    def interrupted(self): self._add("interrupted")
    def turn_complete(self): self._add("turn_complete")
    def heard(self, text): self._add("heard", text)
    def said(self, text): self._add("said", text)

    def names(self):
        return [n for n, _ in self.events]

    async def until(self, predicate, timeout=10.0):
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self.changed.clear()
                await self.changed.wait()


def live_settings(tmp_path, double: LiveDouble, **overrides):
    base = config.load("config/talkie.toml").live
    return dataclasses.replace(base, endpoint=double.endpoint, ca_file=double.ca_file,
                               **overrides)


def make_link(live, key=KEY):
    rec = Recorder()
    box = Outbox(10 * 32000)
    secret = Secret(key, "test") if isinstance(key, str) else key
    link = LiveLink(live, secret, box, rec)
    box.on_ready = link.wake
    return link, box, rec


def chunks(n=10, size=640):
    return [bytes([i % 251]) * size for i in range(n)]


def test_a_turn_spoken_while_connecting_arrives_whole_and_in_order(tmp_path):
    reply = tone(0.5)

    async def main():
        async with LiveDouble(api_keys=(KEY,), auto_reply=AutoReply(pcm=reply)) as double:
            link, box, rec = make_link(live_settings(tmp_path, double))
            box.start_turn()  # pressed before any session exists
            for c in chunks():
                box.push_audio(c)
            box.end_turn()
            task = asyncio.create_task(link.run())
            await rec.until(lambda r: "turn_complete" in r.names())
            kinds = [k for k in double.kinds() if k != "setup"]
            assert kinds == ["activity_start"] + ["audio"] * 10 + ["activity_end"]
            assert double.audio_received() == b"".join(chunks())
            conn = double.connections[0]
            assert conn.api_key == KEY and conn.model == "models/gemini-3.8-live"
            setup = conn.setup
            assert setup["realtime_input_config"]["automatic_activity_detection"]["disabled"]
            assert "session_resumption" in setup and "context_window_compression" in setup
            # the answer: audio equal to what the server sent, then the transcripts, then the end
            audio = b"".join(v for n, v in rec.events if n == "audio")
            assert audio == reply
            assert ("heard", "hello") in rec.events and ("said", "hi there") in rec.events
            assert rec.names()[-1] == "turn_complete"
            # a second turn on the same session: the receive loop was entered again
            box.start_turn()
            box.push_audio(b"\x01\x02" * 320)
            box.end_turn()
            await rec.until(lambda r: r.names().count("turn_complete") == 2)
            assert len(double.connections) == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await double.connections[0].wait_closed()
            assert double.errors == []

    asyncio.run(main())


@pytest.mark.parametrize("case,expect,fatal", [
    ("bad_key", "API key rejected", True),
    ("unknown_model", "set [live] model", True),
    ("setup_never_answered", "no answer from the service within 1 s", False),
    ("setup_closed_1011", "closed by the server (1011", False),
    ("no_key", "no API key", True),
])
def test_failures_become_one_report_in_words(tmp_path, case, expect, fatal, caplog):
    async def main():
        double = LiveDouble(api_keys=(KEY,), models={"gemini-3.8-live"})
        key: object = KEY
        overrides = {}
        if case == "bad_key":
            key = "AIzaSy-wrong-key-9876543210"
        elif case == "unknown_model":
            overrides["model"] = "gemini-0.1-nonsense"
        elif case == "setup_never_answered":
            double.setup_mode = "never"
            overrides["connect_timeout_s"] = 1.0
        elif case == "setup_closed_1011":
            double.setup_mode = "close"
        elif case == "no_key":
            key = KeyProblem("no API key (...): put your Gemini API key in /etc/talkie/api-key")
        async with double:
            link, box, rec = make_link(live_settings(tmp_path, double, **overrides), key)
            with caplog.at_level(logging.DEBUG):
                await asyncio.wait_for(link.run(), 10)
        assert rec.names() == ["lost"]
        reason, was_fatal = rec.events[0][1]
        assert expect in reason and was_fatal is fatal
        # Everything the device side logged (the double is the service: it may see its own header).
        client_side = "\n".join(r.getMessage() for r in caplog.records
                                if not r.name.startswith("tests."))
        assert "x-goog-api-key" in client_side or case == "no_key"  # the headers were logged...
        for secret in (KEY, "AIzaSy-wrong-key-9876543210"):
            assert secret not in reason and secret not in client_side  # ...but not the key

    asyncio.run(main())


@pytest.mark.parametrize("fault", ["close_1011", "abort", "unknown_message"])
def test_a_dead_connection_mid_session_is_reported_not_raised(tmp_path, fault):
    async def main():
        async with LiveDouble(api_keys=(KEY,)) as double:
            link, box, rec = make_link(live_settings(tmp_path, double))
            task = asyncio.create_task(link.run())
            await rec.until(lambda r: "opened" in r.names())
            conn = double.connections[0]
            if fault == "close_1011":
                await conn.close(1011, "Internal error encountered.")
            elif fault == "abort":
                await conn.abort()
            else:
                await conn.send_raw({"somethingNew": {}})
            await asyncio.wait_for(task, 10)  # run() returns: it never raises
            assert rec.names() == ["opened", "lost"]
            reason, fatal = rec.events[-1][1]
            assert not fatal and reason

    asyncio.run(main())


def test_every_live_setting_reaches_the_setup(tmp_path):
    instruction = tmp_path / "persona.txt"
    instruction.write_text("You are a kitchen helper.")

    async def main():
        async with LiveDouble(api_keys=(KEY,)) as double:
            live = live_settings(
                tmp_path, double, voice="Puck", language_code="en-GB", temperature=0.7,
                top_p=0.9, top_k=20, max_output_tokens=512, seed=7, candidate_count=1,
                presence_penalty=0.5, frequency_penalty=-0.5, thinking_budget=256,
                media_resolution="low", activity_handling="no_interruption",
                turn_coverage="all_input", compression_trigger_tokens=20000,
                compression_target_tokens=10000, system_instruction_text=instruction.read_text())
            link, box, rec = make_link(live)
            task = asyncio.create_task(link.run())
            await rec.until(lambda r: "opened" in r.names())
            task.cancel()
            setup = double.connections[0].setup
            gen = setup["generation_config"]
            assert gen["temperature"] == 0.7 and gen["top_p"] == 0.9 and gen["top_k"] == 20
            assert gen["max_output_tokens"] == 512 and gen["seed"] == 7
            assert gen["candidate_count"] == 1 and gen["presence_penalty"] == 0.5
            assert gen["frequency_penalty"] == -0.5
            assert gen["media_resolution"] == "MEDIA_RESOLUTION_LOW"
            assert gen["thinking_config"]["thinking_budget"] == 256
            speech = gen["speech_config"]
            assert speech["voice_config"]["prebuilt_voice_config"]["voice_name"] == "Puck"
            assert speech["language_code"] == "en-GB"
            rt = setup["realtime_input_config"]
            assert rt["activity_handling"] == "NO_INTERRUPTION"
            assert rt["turn_coverage"] == "TURN_INCLUDES_ALL_INPUT"
            cwc = setup["context_window_compression"]
            assert cwc["trigger_tokens"] == 20000
            assert cwc["sliding_window"]["target_tokens"] == 10000
            text = setup["system_instruction"]["parts"][0]["text"]
            assert text == "You are a kitchen helper."
            assert "input_audio_transcription" in setup and "output_audio_transcription" in setup

    asyncio.run(main())


def test_http_options_trust_only_the_configured_ca(tmp_path):
    live = dataclasses.replace(config.load("config/talkie.toml").live)
    opts = options.http_options(live)
    assert opts.api_version == "v1beta" and opts.base_url is None
    assert "ssl" not in opts.async_client_args
    assert opts.async_client_args["ping_timeout"] > opts.async_client_args["ping_interval"]

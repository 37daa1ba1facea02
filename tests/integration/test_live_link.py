"""The Live link on the real google-genai SDK against the Live test double over TLS."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl

import pytest

from talkie import config
from talkie.live import options
from talkie.live.link import LiveLink
from talkie.live.wire import duration_s
from talkie.live.resume import ResumeStore
from talkie.config.credentials import KeyProblem, Secret
from talkie.core.outbox import Outbox
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
    def go_away(self, seconds): self._add("go_away", seconds)

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


def make_link(live, key=KEY, resume=None):
    rec = Recorder()
    box = Outbox(10 * 32000)
    secret = Secret(key, "test") if isinstance(key, str) else key
    link = LiveLink(live, secret, box, rec, resume)
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


def one_ca(tmp_path) -> str:
    """A bundle of one CA: the first of certifi's."""
    import certifi

    with open(certifi.where()) as bundle:
        pem = bundle.read()
    end = "-----END CERTIFICATE-----\n"
    path = tmp_path / "one-ca.pem"
    path.write_text(pem[pem.index("-----BEGIN CERTIFICATE-----"):pem.index(end) + len(end)])
    return str(path)


def test_http_options_trust_only_the_configured_ca(tmp_path):
    live = dataclasses.replace(config.load("config/talkie.toml").live, ca_file=None)
    opts = options.http_options(live)
    assert opts.api_version == "v1beta" and opts.base_url is None
    assert opts.async_client_args["ping_timeout"] > opts.async_client_args["ping_interval"]
    pinned = options.http_options(dataclasses.replace(live, ca_file=one_ca(tmp_path)))
    assert pinned.async_client_args["ssl"].cert_store_stats()["x509_ca"] == 1


@pytest.mark.parametrize("env", [(), ("SSL_CERT_FILE",), ("SSL_CERT_DIR",),
                                 ("SSL_CERT_FILE", "SSL_CERT_DIR")])
def test_without_a_ca_file_the_websocket_trusts_what_the_sdk_would(tmp_path, monkeypatch, env):
    """No ca_file: the context is made as the SDK makes its websocket's (certifi's bundle, or
    SSL_CERT_FILE / SSL_CERT_DIR): the same ``ssl.create_default_context`` call."""
    from google import genai
    from google.genai import types

    made: dict[int, tuple] = {}
    create = ssl.create_default_context

    def recording(*args, **kwargs):
        context = create(*args, **kwargs)
        made[id(context)] = (args, kwargs)
        return context

    monkeypatch.setattr(ssl, "create_default_context", recording)
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    if "SSL_CERT_FILE" in env:
        monkeypatch.setenv("SSL_CERT_FILE", one_ca(tmp_path))
    if "SSL_CERT_DIR" in env:
        monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    live = dataclasses.replace(config.load("config/talkie.toml").live, ca_file=None)
    ours = options.http_options(live).async_client_args["ssl"]
    sdk = genai.Client(api_key=KEY, http_options=types.HttpOptions(api_version="v1beta"))
    theirs = sdk._api_client._websocket_ssl_ctx["ssl"]
    assert made[id(ours)] == made[id(theirs)]
    assert ours.cert_store_stats() == theirs.cert_store_stats()


def test_one_tls_context_for_the_websocket_and_the_sdk_http_clients(tmp_path):
    """genai.Client builds HTTP clients the Live path never uses; they get the websocket's
    context instead of loading CA stores of their own (one store in memory, not two)."""
    from google import genai

    live = dataclasses.replace(config.load("config/talkie.toml").live, ca_file=None)
    opts = options.http_options(live)
    context = opts.async_client_args["ssl"]
    api = genai.Client(api_key=KEY, http_options=opts)._api_client
    assert api._websocket_ssl_ctx["ssl"] is context
    assert api._async_httpx_client_args["verify"] is context
    assert api._httpx_client._transport._pool._ssl_context is context
    assert api._async_httpx_client._transport._pool._ssl_context is context


# ---- session lifetime: resumption handles and goAway

async def open_session(link, rec, opened=1):
    task = asyncio.create_task(link.run())
    await rec.until(lambda r: r.names().count("opened") >= opened or "lost" in r.names())
    return task


async def hand_over(task):
    """What the shell does before resuming: end the run, which closes the old socket."""
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def eventually(predicate, timeout=5.0):
    """Poll client-side state (the store) that no event announces."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def client_side(caplog):
    """What the device side logged (the double is the service: it may log the key it was sent)."""
    return "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("tests."))


def talkie_side(caplog):
    """What talkie itself logged (websockets' DEBUG frame dumps, off in the daemon, show handles)."""
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("talkie"))


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("talkie") and r.levelno >= logging.WARNING]


def test_the_newest_resumable_handle_is_kept_and_the_next_session_resumes_with_it(tmp_path):
    async def main():
        async with LiveDouble(api_keys=(KEY,)) as double:
            store = ResumeStore(tmp_path / "resume.json")
            link, box, rec = make_link(live_settings(tmp_path, double), resume=store)
            task = await open_session(link, rec)
            first = double.connections[0]
            await first.send_resumption_update("handle-a")
            await first.send_resumption_update("handle-b")
            await first.send_resumption_update(None, resumable=False)  # generating: no handle
            await first.send_resumption_update("handle-c", resumable=False)
            await first.send_raw({"usageMetadata": {"totalTokenCount": 42}})  # nothing to do
            await first.send_turn_complete()
            await rec.until(lambda r: "turn_complete" in r.names())
            assert store.handle == "handle-b"
            await hand_over(task)
            await first.wait_closed()
            task = await open_session(link, rec, opened=2)
            second = await double.wait_for_connection(2)
            assert first.setup["session_resumption"] == {}  # asked for, from the first setup on
            assert second.resume_handle == "handle-b" and second.resumed
            assert rec.names() == ["opened", "turn_complete", "opened"]
            await hand_over(task)
            assert double.errors == []

    asyncio.run(main())


@pytest.mark.parametrize("seconds", [5, 50])
def test_go_away_reaches_the_listener_with_the_time_left(tmp_path, seconds):
    async def main():
        async with LiveDouble(api_keys=(KEY,), auto_reply=AutoReply(seconds=0.1)) as double:
            store = ResumeStore(None)
            link, box, rec = make_link(live_settings(tmp_path, double), resume=store)
            task = await open_session(link, rec)
            box.start_turn()
            box.push_audio(b"\0\0" * 320)
            box.end_turn()
            await double.wait_for(lambda: double.issued_handles == ["handle-1-1"])
            conn = double.connections[0]
            await conn.send_go_away(seconds)
            await rec.until(lambda r: "go_away" in r.names())
            assert rec.events[-1] == ("go_away", float(seconds))
            assert "lost" not in rec.names() and not task.done()  # the shell decides when to go
            await hand_over(task)
            task = await open_session(link, rec, opened=2)
            assert (await double.wait_for_connection(2)).resume_handle == "handle-1-1"
            assert conn.closed  # the old socket was closed before resuming with its handle
            await hand_over(task)

    asyncio.run(main())


def test_a_rejected_handle_falls_back_to_a_fresh_session_in_the_same_run(tmp_path, caplog):
    async def main():
        async with LiveDouble(api_keys=(KEY,), auto_reply=AutoReply(seconds=0.1)) as double:
            path = tmp_path / "resume.json"
            store = ResumeStore(path)
            link, box, rec = make_link(live_settings(tmp_path, double), resume=store)
            task = await open_session(link, rec)
            await double.connections[0].send_resumption_update("handle-1")
            await double.connections[0].send_turn_complete()
            await rec.until(lambda r: "turn_complete" in r.names())
            await hand_over(task)
            assert path.exists()
            double.resume_mode = "reject_all"  # e.g. it expired on the server's side
            rec.events.clear()
            with caplog.at_level(logging.DEBUG):
                task = await open_session(link, rec)
            assert rec.names() == ["opened"]  # one session, no lost
            refused, fresh = double.connections[1:]
            assert refused.resume_handle == "handle-1" and refused.close_code == 1008
            assert fresh.resume_handle is None and fresh.setup["session_resumption"] == {}
            assert store.handle is None and not path.exists()
            assert warnings_of(caplog) == [
                "the previous conversation could not be resumed (1008: invalid session resumption "
                "handle); starting a fresh one"]
            assert "x-goog-api-key" in client_side(caplog)  # the handshake was logged...
            assert KEY not in client_side(caplog)  # ...but not the key
            assert "handle-1" not in talkie_side(caplog)  # nor the handle
            # the fresh session works: a turn, and its handle is kept
            box.start_turn()
            box.push_audio(b"\0\0" * 320)
            box.end_turn()
            await rec.until(lambda r: "turn_complete" in r.names())
            await eventually(lambda: store.handle == "handle-3-1")
            assert fresh.handles == ["handle-3-1"]
            await hand_over(task)
            assert double.errors == []

    asyncio.run(main())


@pytest.mark.parametrize("case", ["fresh_fails_too", "bad_key", "unknown_model", "refused_port",
                                  "closed_after_setup"])
def test_resumption_faults(tmp_path, caplog, case):
    async def main():
        async with LiveDouble(api_keys=(KEY,)) as double:
            store = ResumeStore(tmp_path / "resume.json")
            link, box, rec = make_link(live_settings(tmp_path, double), resume=store)
            task = await open_session(link, rec)
            await double.connections[0].send_resumption_update("handle-1")
            await eventually(lambda: store.handle == "handle-1")
            await hand_over(task)
            rec.events.clear()
            if case == "fresh_fails_too":
                double.resume_mode, double.setup_mode = "reject_all", "close"
            elif case == "bad_key":
                double.api_keys = ("AIzaSy-some-other-key-000000",)
            elif case == "unknown_model":
                double.models = {"gemini-9-elsewhere"}
            elif case == "refused_port":
                await double.stop_listening()
            else:  # the service accepts the setup, then closes over the handle
                async def refuse(conn):
                    if conn.resume_handle:
                        await conn.close(1008, "session resumption handle expired")
                double.on_setup = refuse
            with caplog.at_level(logging.DEBUG):
                await asyncio.wait_for(link.run(), 10)
            reason, fatal = rec.events[-1][1]
            warned = [w for w in warnings_of(caplog) if "could not be resumed" in w]
            if case == "fresh_fails_too":  # one fresh try, then the second failure as usual
                assert rec.names() == ["lost"] and reason.startswith("closed by the server (1011")
                assert [c.resume_handle for c in double.connections[1:]] == ["handle-1", None]
                assert len(warned) == 1 and store.handle is None
            elif case in ("bad_key", "unknown_model"):  # not the handle's fault: keep it
                assert rec.names() == ["lost"] and fatal
                assert ("API key rejected" if case == "bad_key" else "set [live] model") in reason
                assert len(double.connections) == 2 and not warned and store.handle == "handle-1"
            elif case == "refused_port":  # the network's fault: keep it, resume once it is back
                assert rec.names() == ["lost"] and reason == "connection refused" and not fatal
                assert len(double.connections) == 1 and not warned and store.handle == "handle-1"
                await double.start_listening()
                task = await open_session(link, rec)
                assert (await double.wait_for_connection(2)).resumed
                await hand_over(task)
            else:  # reported as a plain drop (not fatal): the next session starts afresh
                assert rec.names() == ["opened", "lost"] and not fatal
                assert len(warned) == 1 and store.handle is None
            assert KEY not in client_side(caplog) and "handle-1" not in talkie_side(caplog)

    asyncio.run(main())


def test_a_restarted_daemon_resumes_from_the_persisted_handle(tmp_path):
    async def main():
        async with LiveDouble(api_keys=(KEY,), auto_reply=AutoReply(seconds=0.1)) as double:
            path = tmp_path / "state" / "resume.json"
            link, box, rec = make_link(live_settings(tmp_path, double), resume=ResumeStore(path))
            task = await open_session(link, rec)
            box.start_turn()
            box.push_audio(b"\0\0" * 320)
            box.end_turn()
            await rec.until(lambda r: "turn_complete" in r.names())
            await eventually(path.exists)
            await hand_over(task)
            # a new daemon: new link, new store on the same file
            link2, box2, rec2 = make_link(live_settings(tmp_path, double), resume=ResumeStore(path))
            task = await open_session(link2, rec2)
            second = await double.wait_for_connection(2)
            assert second.resume_handle == "handle-1-1" and second.resumed
            await hand_over(task)
            # without a store nothing is resumed, though resumption is still asked for
            link3, box3, rec3 = make_link(live_settings(tmp_path, double))
            task = await open_session(link3, rec3)
            third = await double.wait_for_connection(3)
            assert third.resume_handle is None and third.setup["session_resumption"] == {}
            await hand_over(task)

    asyncio.run(main())


@pytest.mark.parametrize("value,seconds", [
    ("50s", 50.0), ("5s", 5.0), ("1.500s", 1.5), ("0s", 0.0), ("42", 42.0), (" 7s ", 7.0),
    ("-3s", 0.0), (30, 30.0), (2.5, 2.5), (object(), None), (None, None), ("soon", None),
    ("nans", None), ({"seconds": "12", "nanos": 500000000}, 12.5), (True, None),
])
def test_go_away_time_left_is_read_robustly(value, seconds):
    assert duration_s(value) == seconds


def test_go_away_time_left_as_a_timedelta():
    from datetime import timedelta

    assert duration_s(timedelta(seconds=61, milliseconds=250)) == 61.25


@pytest.mark.parametrize("frame", [
    {"server_content": {"model_turn": {"parts": [{"text": "x\n" * 2000}]}}},  # snake_case
    {"somethingNew": {"x" * 1000: list(range(1000))}},  # an unknown top-level key
    bytes(range(256)) * 3500,  # 900 kB of binary that is no JSON at all
], ids=["snake-case", "unknown-key", "binary"])
def test_a_malformed_frame_is_one_short_line_in_words_and_its_detail_is_capped(tmp_path, frame,
                                                                                caplog):
    async def main():
        double = LiveDouble(api_keys=(KEY,))

        async def malformed(conn):
            await conn.send_raw(frame)

        double.on_setup = malformed
        async with double:
            link, box, rec = make_link(live_settings(tmp_path, double))
            with caplog.at_level(logging.DEBUG, logger="talkie"):
                await asyncio.wait_for(link.run(), 10)
        return rec

    rec = asyncio.run(main())
    assert rec.names() == ["opened", "lost"]
    reason, fatal = rec.events[-1][1]
    assert not fatal and "\n" not in reason and len(reason) <= 200
    assert reason.startswith("the service sent a message talkie cannot read")
    detail = [r.getMessage() for r in caplog.records if r.getMessage().startswith("session ended")]
    assert detail and all(len(text) <= 2100 for text in detail)


@pytest.mark.parametrize("source,home", [
    ("credential gemini-api-key", "/etc/talkie/api-key"),  # LoadCredential=, fed from there
    ("/home/pi/talkie/api-key", "/home/pi/talkie/api-key"),  # [live] api_key_file
    ("$GEMINI_API_KEY", "the GEMINI_API_KEY environment variable"),
])
def test_a_rejected_key_names_where_the_key_in_use_came_from(tmp_path, source, home):
    async def main():
        double = LiveDouble(api_keys=(KEY,))
        async with double:
            rec = Recorder()
            link = LiveLink(live_settings(tmp_path, double),
                            Secret("AIzaSy-wrong-key-9876543210", source), Outbox(1 << 16), rec)
            await asyncio.wait_for(link.run(), 10)
        return rec.events[-1][1]

    reason, fatal = asyncio.run(main())
    assert fatal and reason == f"API key rejected: put a valid key in {home}"


def test_resuming_is_said_once_per_conversation_not_per_connection(tmp_path, caplog):
    from talkie.live.resume import ResumeStore

    async def main():
        double = LiveDouble(api_keys=(KEY,), resume_mode="ignore")  # takes any handle

        async def goodbye(conn):
            await conn.close(1000, "")

        double.on_setup = goodbye
        async with double:
            store = ResumeStore(None)
            store.update("handle-of-the-conversation", True)
            link, box, rec = make_link(live_settings(tmp_path, double), resume=store)
            with caplog.at_level(logging.DEBUG, logger="talkie"):
                for _ in range(3):  # three connections of one conversation
                    await asyncio.wait_for(link.run(), 10)
        return [r for r in caplog.records if "resum" in r.getMessage()]

    said = asyncio.run(main())
    info = [r for r in said if r.levelno >= logging.INFO]
    assert [r.getMessage() for r in info] == ["resuming the previous conversation"]
    assert sum(r.levelno == logging.DEBUG for r in said) == 2

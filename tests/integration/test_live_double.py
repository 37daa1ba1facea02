"""The Live API test double, exercised through the real google-genai SDK."""

from __future__ import annotations

import asyncio
import ssl
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.live_double import AutoReply, LiveDouble, tone  # noqa: E402

genai = pytest.importorskip("google.genai")
from google.genai import errors, types  # noqa: E402
from websockets.exceptions import InvalidStatus  # noqa: E402

MODEL = "gemini-3.8-live"
PTT_CONFIG = types.LiveConnectConfig(
    response_modalities=["AUDIO"],
    session_resumption=types.SessionResumptionConfig(),
    realtime_input_config=types.RealtimeInputConfig(
        automatic_activity_detection=types.AutomaticActivityDetection(disabled=True)),
    input_audio_transcription=types.AudioTranscriptionConfig(),
    output_audio_transcription=types.AudioTranscriptionConfig(),
    speech_config=types.SpeechConfig(voice_config=types.VoiceConfig(
        prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name="Puck"))),
    context_window_compression=types.ContextWindowCompressionConfig(
        trigger_tokens=25600, sliding_window=types.SlidingWindow(target_tokens=12800)),
)


def client_for(double: LiveDouble, *, key: str = "test-key", base_url: str | None = None,
               api_version: str = "v1beta") -> genai.Client:
    return genai.Client(api_key=key, http_options=types.HttpOptions(
        base_url=base_url or double.endpoint, api_version=api_version,
        async_client_args={"ssl": ssl.create_default_context(cafile=double.ca_file)}))


def run(coro, timeout: float = 8.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def collect_turn(session) -> list[types.LiveServerMessage]:
    return [m async for m in session.receive()]


def test_setup_round_trip_records_config_model_key_and_path():
    async def scenario():
        async with LiveDouble(session_id="sess-1") as double:
            async with client_for(double, base_url=double.endpoint + "/").aio.live.connect(
                    model=MODEL, config=PTT_CONFIG) as session:
                assert session.session_id == "sess-1"
                conn = await double.wait_for_connection()
            await conn.wait_closed()
            return double, conn

    double, conn = run(scenario())
    assert conn.model == "models/gemini-3.8-live"
    assert conn.api_key == "test-key"
    assert conn.path == "//ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
    assert conn.api_version == "v1beta" and conn.setup_completed
    setup = conn.setup
    assert setup["session_resumption"] == {}
    assert setup["realtime_input_config"] == {"automatic_activity_detection": {"disabled": True}}
    assert setup["input_audio_transcription"] == {} and setup["output_audio_transcription"] == {}
    assert setup["generation_config"]["response_modalities"] == ["AUDIO"]
    assert setup["generation_config"]["speech_config"]["voice_config"]["prebuilt_voice_config"]["voice_name"] == "Puck"
    assert setup["context_window_compression"] == {"trigger_tokens": 25600, "sliding_window": {"target_tokens": 12800}}
    first = double.messages[0]
    assert first.kind == "setup" and "generationConfig" in first.raw_json["setup"]  # raw keys kept as sent
    assert conn.close_code == 1000 and double.errors == []


def test_realtime_input_arrives_in_order_with_exact_audio_bytes():
    chunks = [bytes([i]) * 640 + bytes(range(256)) for i in range(5)]  # '+/' and '-_' alphabet bytes

    async def scenario():
        async with LiveDouble() as double:
            async with client_for(double).aio.live.connect(model=MODEL, config=PTT_CONFIG) as session:
                await session.send_realtime_input(activity_start=types.ActivityStart())
                for chunk in chunks:
                    await session.send_realtime_input(audio=types.Blob(data=chunk, mime_type="audio/pcm;rate=16000"))
                await session.send_realtime_input(video=types.Blob(data=b"\xff\xd8jpeg", mime_type="image/jpeg"))
                await session.send_realtime_input(media=types.Blob(data=b"\x01\x02", mime_type="audio/pcm;rate=16000"))
                await session.send_realtime_input(text="typed")
                await session.send_realtime_input(activity_end=types.ActivityEnd())
                await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="hi")]))
                await session.send_tool_response(function_responses=types.FunctionResponse(
                    id="c1", name="lights", response={"isOn": True}))
                await double.wait_for_message("tool_response")
            return double

    double = run(scenario())
    assert double.kinds() == ["setup", "activity_start"] + ["audio"] * 5 + [
        "video", "audio", "text", "activity_end", "client_content", "tool_response"]
    audio = double.messages_of("audio")
    assert [m.blob for m in audio[:5]] == chunks and audio[0].mime_type == "audio/pcm;rate=16000"
    assert double.audio_received() == b"".join(chunks) + b"\x01\x02"
    assert double.messages_of("video")[0].blob == b"\xff\xd8jpeg"
    assert double.messages_of("text")[0].data["realtime_input"]["text"] == "typed"
    assert double.messages_of("tool_response")[0].data["tool_response"]["function_responses"][0]["response"] == {
        "isOn": True}
    times = [m.t for m in double.messages]
    assert times == sorted(times) and {m.conn for m in double.messages} == {1}


def test_receive_yields_scripted_turns_and_can_be_reentered():
    reply = tone(0.2)

    async def scenario():
        async with LiveDouble() as double:
            async with client_for(double).aio.live.connect(model=MODEL, config=PTT_CONFIG) as session:
                conn = await double.wait_for_connection()
                await conn.send_input_transcription("what time is it", finished=True)
                await conn.send_audio(reply, chunk_ms=40, transcript="it is noon")
                await conn.send_generation_complete()
                await conn.send_turn_complete()
                turn1 = await collect_turn(session)
                await conn.send_audio(reply[:960])
                await conn.send_interrupted()
                await conn.send_turn_complete()
                turn2 = await collect_turn(session)
                await conn.send_go_away(42)
                await conn.send_resumption_update("h-1", resumable=True)
                await conn.send_tool_call("lights", {"on": True}, call_id="c9")
                await conn.send_turn_complete()
                turn3 = await collect_turn(session)
            return turn1, turn2, turn3

    turn1, turn2, turn3 = run(scenario())
    sc = [m.server_content for m in turn1]
    assert sc[0].input_transcription.text == "what time is it" and sc[0].input_transcription.finished
    audio = b"".join(p.inline_data.data for c in sc if c.model_turn for p in c.model_turn.parts)
    assert audio == reply
    assert all(p.inline_data.mime_type == "audio/pcm;rate=24000" for c in sc if c.model_turn for p in c.model_turn.parts)
    assert len([c for c in sc if c.model_turn]) == 5  # 0.2 s in 40 ms chunks
    assert [c.output_transcription.text for c in sc if c.output_transcription] == ["it is noon"]
    assert sc[-2].generation_complete and sc[-1].turn_complete
    assert turn2[-2].server_content.interrupted and turn2[-1].server_content.turn_complete
    assert turn3[0].go_away.time_left == "42s"
    assert turn3[1].session_resumption_update.new_handle == "h-1" and turn3[1].session_resumption_update.resumable
    assert turn3[2].tool_call.function_calls[0].name == "lights" and turn3[2].tool_call.function_calls[0].args == {
        "on": True}


def test_auto_reply_answers_activity_end_and_text_frames_work():
    async def scenario():
        async with LiveDouble(auto_reply=AutoReply(seconds=0.12, input_text="hi", output_text="hello"),
                              binary_frames=False) as double:
            async with client_for(double).aio.live.connect(model=MODEL, config=PTT_CONFIG) as session:
                await session.send_realtime_input(activity_start=types.ActivityStart())
                await session.send_realtime_input(audio=types.Blob(data=b"\0" * 640, mime_type="audio/pcm;rate=16000"))
                await session.send_realtime_input(activity_end=types.ActivityEnd())
                turn = await collect_turn(session)
                after = await collect_turn_until(session, lambda m: m.session_resumption_update)
                conn = double.connections[0]
            return turn, after, conn

    turn, after, conn = run(scenario())
    audio = b"".join(p.inline_data.data for m in turn if m.server_content.model_turn
                     for p in m.server_content.model_turn.parts)
    assert audio == tone(0.12) == bytes(conn.audio_sent)
    assert turn[0].server_content.input_transcription.text == "hi" and turn[-1].server_content.turn_complete
    assert after.session_resumption_update.new_handle == "handle-1-1" == conn.handles[0]


async def collect_turn_until(session, predicate):
    while True:
        msg = await session._receive()
        if predicate(msg):
            return msg


@pytest.mark.parametrize("code,exc_type", [(1011, errors.APIError), (1008, errors.APIError), (1000, errors.APIError)])
def test_server_close_surfaces_as_api_error_with_code(code, exc_type):
    async def scenario():
        async with LiveDouble() as double:
            async with client_for(double).aio.live.connect(model=MODEL, config=PTT_CONFIG) as session:
                conn = await double.wait_for_connection()
                await conn.close(code, "Internal error encountered.")
                with pytest.raises(exc_type) as info:
                    await collect_turn(session)
            return info.value

    err = run(scenario())
    assert type(err) is errors.APIError and err.code == code  # 1xxx codes are neither ClientError nor ServerError
    assert "Internal error encountered." in str(err)


@pytest.mark.parametrize("raw", [{"somethingNew": {}}, {"server_content": {"turnComplete": True}}])
def test_unknown_or_snake_case_top_level_key_raises_type_error(raw):
    async def scenario():
        async with LiveDouble() as double:
            async with client_for(double).aio.live.connect(model=MODEL, config=PTT_CONFIG) as session:
                conn = await double.wait_for_connection()
                await conn.send_raw(raw)
                with pytest.raises(TypeError):  # APIError.raise_error(None, ...) compares None with 400
                    await collect_turn(session)

    run(scenario())


def test_abort_without_close_frame_surfaces_as_1006():
    async def scenario():
        async with LiveDouble() as double:
            async with client_for(double).aio.live.connect(model=MODEL, config=PTT_CONFIG) as session:
                conn = await double.wait_for_connection()
                await conn.abort()
                with pytest.raises(errors.APIError) as info:
                    await collect_turn(session)
            await conn.wait_closed()
            return info.value, double

    err, double = run(scenario())
    assert err.code == 1006 and double.errors == []


def test_bad_api_key_closes_1008_after_setup():
    async def scenario():
        async with LiveDouble(api_keys={"right-key"}) as double:
            with pytest.raises(errors.APIError) as info:
                async with client_for(double, key="wrong-key").aio.live.connect(model=MODEL, config=PTT_CONFIG):
                    pass
            return info.value, double

    err, double = run(scenario())
    assert err.code == 1008 and "API key not valid" in str(err)
    assert double.connections[0].api_key == "wrong-key" and double.kinds() == ["setup"]


def test_bad_api_key_http_rejection_raises_invalid_status():
    async def scenario():
        async with LiveDouble(api_keys={"right-key"}, bad_key_http_status=403) as double:
            with pytest.raises(InvalidStatus) as info:
                async with client_for(double, key="wrong-key").aio.live.connect(model=MODEL, config=PTT_CONFIG):
                    pass
            return info.value, double

    err, double = run(scenario())
    assert err.response.status_code == 403 and double.connections == [] and double.rejected[0][2] == 403


def test_unknown_model_and_unserved_api_version():
    async def scenario():
        async with LiveDouble(models={MODEL}) as double:
            with pytest.raises(errors.APIError) as info:
                async with client_for(double).aio.live.connect(model="gemini-0-nope", config=PTT_CONFIG):
                    pass
            with pytest.raises(InvalidStatus) as v1:
                async with client_for(double, api_version="v1").aio.live.connect(model=MODEL, config=PTT_CONFIG):
                    pass
            return info.value, v1.value

    err, v1 = run(scenario())
    assert err.code == 1008 and "models/gemini-0-nope is not found" in str(err)
    assert v1.response.status_code == 404


def test_setup_modes_close_never_and_delay():
    async def scenario():
        async with LiveDouble(setup_mode="close") as double:
            with pytest.raises(errors.APIError) as info:
                async with client_for(double).aio.live.connect(model=MODEL, config=PTT_CONFIG):
                    pass
            double.setup_mode = "never"
            with pytest.raises(asyncio.TimeoutError):
                async with asyncio.timeout(0.3):
                    async with client_for(double).aio.live.connect(model=MODEL, config=PTT_CONFIG):
                        pass
            double.setup_mode, double.setup_delay_s = "complete", 0.2
            start = time.monotonic()
            async with client_for(double).aio.live.connect(model=MODEL, config=PTT_CONFIG):
                elapsed = time.monotonic() - start
            await double.wait_for(lambda: all(c.closed for c in double.connections))
            return info.value, elapsed, double

    err, elapsed, double = run(scenario())
    assert err.code == 1011 and elapsed >= 0.2
    assert [c.setup_completed for c in double.connections] == [False, False, True]


def test_realtime_pacing():
    async def scenario():
        async with LiveDouble() as double:
            async with client_for(double).aio.live.connect(model=MODEL, config=PTT_CONFIG) as session:
                conn = await double.wait_for_connection()
                start = time.monotonic()
                await conn.send_audio(tone(0.2), chunk_ms=40, realtime=True)
                elapsed = time.monotonic() - start
                await conn.send_turn_complete()
                await collect_turn(session)
            return elapsed

    assert 0.15 <= run(scenario()) < 0.6  # 5 chunks: the last one goes out at 160 ms


def test_double_in_background_thread_with_client_in_main_thread_and_barge_in():
    with LiveDouble(auto_reply=AutoReply(seconds=2.0, realtime=True)) as double:

        async def client():
            async with client_for(double).aio.live.connect(model=MODEL, config=PTT_CONFIG) as session:
                await session.send_realtime_input(activity_start=types.ActivityStart())
                await session.send_realtime_input(audio=types.Blob(data=b"\1\0" * 320, mime_type="audio/pcm;rate=16000"))
                await session.send_realtime_input(activity_end=types.ActivityEnd())
                await double.wait_for_message("activity_end")  # bridged to the double's loop
                got_audio = False
                async for msg in session.receive():  # barge in after the first audio chunk
                    if msg.server_content.model_turn and not got_audio:
                        got_audio = True
                        await session.send_realtime_input(activity_start=types.ActivityStart())
                    last = msg
                return got_audio, last

        got_audio, last = run(client())
        conn = double.wait_for_connection_sync()
        double.run(conn.wait_closed())
        assert got_audio and last.server_content.turn_complete
        assert double.kinds() == ["setup", "activity_start", "audio", "activity_end", "activity_start"]
        assert double.audio_received() == b"\1\0" * 320
        assert any(m.get("serverContent", {}).get("interrupted") for m in conn.sent if isinstance(m, dict))
        assert 0 < len(conn.audio_sent) < len(tone(2.0)) and double.errors == []


def test_camel_case_and_standard_base64_from_a_raw_client_are_accepted():
    import base64
    import json

    from websockets.asyncio.client import connect

    pcm = bytes(range(256)) * 3  # standard base64 of this contains '+' and '/'

    async def scenario():
        async with LiveDouble(api_keys=None) as double:
            url = f"wss://127.0.0.1:{double.port}/ws/google.ai.generativelanguage.v1alpha.GenerativeService" \
                  ".BidiGenerateContent?key=query-key"
            async with connect(url, ssl=ssl.create_default_context(cafile=double.ca_file)) as ws:
                await ws.send(json.dumps({"setup": {"model": "models/m"}}))
                assert json.loads(await ws.recv()) == {"setupComplete": {}}
                await ws.send(json.dumps({"realtimeInput": {"mediaChunks": [
                    {"mimeType": "audio/pcm;rate=16000", "data": base64.b64encode(pcm).decode()}]}}))
                await ws.send(json.dumps({"realtimeInput": {"audioStreamEnd": True}}))
                await ws.send("not json")
                await double.wait_for_message("other")
            return double

    double = run(scenario())
    conn = double.connections[0]
    assert conn.api_key == "query-key" and conn.api_version == "v1alpha" and conn.model == "models/m"
    assert double.kinds() == ["setup", "audio", "audio_stream_end", "other"]
    assert double.audio_received(conn) == pcm and double.messages_of("audio")[0].mime_type == "audio/pcm;rate=16000"
    assert double.messages_of("setup", since=1) == [] and double.messages[-1].raw == "not json"


def resume_config(handle: str | None) -> types.LiveConnectConfig:
    return PTT_CONFIG.model_copy(update={"session_resumption": types.SessionResumptionConfig(handle=handle)})


@pytest.mark.parametrize("mode", ["accept", "reject_all", "ignore"])
def test_resumption_handles_are_issued_remembered_and_checked(mode):
    async def scenario():
        async with LiveDouble(resume_mode=mode) as double:
            async with client_for(double).aio.live.connect(model=MODEL, config=PTT_CONFIG) as session:
                conn = await double.wait_for_connection()
                await conn.send_resumption_update("handle-x")
                await conn.send_resumption_update(None, resumable=False)
                await conn.send_turn_complete()
                await collect_turn(session)
            outcomes = {}
            for handle in ("handle-x", "handle-unknown"):
                try:
                    async with client_for(double).aio.live.connect(model=MODEL, config=resume_config(handle)):
                        outcomes[handle] = "opened"
                except errors.APIError as exc:
                    outcomes[handle] = (exc.code, exc.details)
            await double.wait_for(lambda: all(c.closed for c in double.connections))
            return double, outcomes

    double, outcomes = run(scenario())
    refused = (1008, "invalid session resumption handle")
    assert double.issued_handles == ["handle-x"] == double.connections[0].handles
    assert [c.resume_handle for c in double.connections] == [None, "handle-x", "handle-unknown"]
    if mode == "accept":
        assert outcomes == {"handle-x": "opened", "handle-unknown": refused}
        assert [c.resumed for c in double.connections] == [False, True, False]
    elif mode == "reject_all":
        assert outcomes == {"handle-x": refused, "handle-unknown": refused}
        assert not any(c.resumed for c in double.connections)
    else:
        assert outcomes == {"handle-x": "opened", "handle-unknown": "opened"}
        assert not any(c.resumed for c in double.connections)
    assert double.connections[2].setup_completed is (mode == "ignore") and double.errors == []


def test_stop_listening_refuses_new_connections_keeps_open_ones_and_listens_again_on_the_port():
    async def scenario():
        async with LiveDouble() as double:
            port = double.port
            async with client_for(double).aio.live.connect(model=MODEL, config=PTT_CONFIG) as session:
                conn = await double.wait_for_connection()
                await double.stop_listening()
                with pytest.raises(ConnectionRefusedError):
                    async with client_for(double).aio.live.connect(model=MODEL, config=PTT_CONFIG):
                        pass
                await conn.send_turn_complete()  # the open session goes on
                assert (await collect_turn(session))[-1].server_content.turn_complete
                await session.send_realtime_input(activity_start=types.ActivityStart())
                await double.wait_for_message("activity_start")
                await double.start_listening()
                assert double.port == port
                async with client_for(double).aio.live.connect(model=MODEL, config=PTT_CONFIG):
                    second = await double.wait_for_connection(2)
            await double.wait_for(lambda: all(c.closed for c in double.connections))
            return double, second

    double, second = run(scenario())
    assert len(double.connections) == 2 and second.setup_completed and double.errors == []


def test_listening_can_be_switched_from_a_plain_thread():
    with LiveDouble() as double:
        double.stop_listening_sync()

        async def connect():
            async with client_for(double).aio.live.connect(model=MODEL, config=PTT_CONFIG):
                pass

        with pytest.raises(ConnectionRefusedError):
            run(connect())
        double.start_listening_sync()
        run(connect())
        assert double.wait_for_connection_sync(1).setup_completed and double.errors == []

"""The model's tool calls, end to end: the real SDK against the Live double (toolCall frames in,
toolResponse frames out), the daemon in-process with real playback through PulseAudio and the
mock button. Every call gets exactly one answer on the connection it came from, or none once the
server cancelled it or the connection is gone."""

from __future__ import annotations

import asyncio
import json

import pytest

from talkie.core.machine import Phase, Reset
from talkie.tools import Registry, Tool, ok
from tests.integration.test_supervisor import KEY, answer, start_rig, stop_rig
from tests.support.daemon import led_states
from tests.support.live_double import AutoReply, LiveDouble, tone
from tests.support.rig import until

pytestmark = pytest.mark.audio


def responses(double, conn=None):
    """Every function response the double received: (connection, id, name, response, raw)."""
    found = []
    for msg in double.messages_of("tool_response", conn):
        body = msg.data["tool_response"]
        for fr in body.get("function_responses", []):
            found.append((msg.conn, fr.get("id"), fr.get("name"), fr.get("response"), fr))
    return found


def by_id(double):
    answers: dict[str, list] = {}
    for conn, call_id, name, response, raw in responses(double):
        answers.setdefault(call_id, []).append((conn, name, response, raw))
    return answers


def run(coro):
    asyncio.run(asyncio.wait_for(coro, 90))


def slow_tool(started: asyncio.Event, finished: list, seconds: float = 30.0) -> Tool:
    async def slow(args, call_id):
        started.set()
        await asyncio.sleep(seconds)
        finished.append(call_id)
        return ok(done=True)

    return Tool("slow_lookup", "A lookup that takes its time.", slow, deadline_s=60.0)


def add_tool(rig, tool: Tool) -> None:
    """A tool the test controls, next to the enabled ones."""
    rig.app.tools.registry = Registry([*rig.app.tools.registry._tools.values(), tool])
    rig.app.tools.calls.registry = rig.app.tools.registry


async def open_session(rig, double):
    """A turn, answered: the session is up and idle."""
    await rig.turn()
    return double.connections[-1]


def test_the_setup_declares_the_enabled_tools_and_google_search(tmp_path, pulse):
    async def main():
        async with LiveDouble(api_keys=(KEY,), auto_reply=answer()) as double:
            rig = await start_rig(tmp_path, pulse, double, extra="google_search = true",
                                  tail="[tools]\nreset = false\n")
            conn = await open_session(rig, double)
            tools = conn.setup["tools"]
            names = [f["name"] for t in tools for f in t.get("function_declarations", [])]
            assert set(names) == {"local_time", "device_status", "speaker_volume", "timers", "look"}
            assert any("google_search" in t for t in tools)
            volume = next(f for t in tools for f in t.get("function_declarations", [])
                          if f["name"] == "speaker_volume")
            assert volume["behavior"] == "NON_BLOCKING"
            assert volume["parameters_json_schema"]["required"] == ["action"]
            await stop_rig(rig)

    run(main())


def test_several_calls_at_once_each_get_one_answer_with_their_id(tmp_path, pulse):
    async def main():
        async with LiveDouble(api_keys=(KEY,), auto_reply=answer()) as double:
            rig = await start_rig(tmp_path, pulse, double)
            conn = await open_session(rig, double)
            await conn.send_tool_calls([
                ("local_time", {}, "t-1"),
                ("speaker_volume", {"action": "set", "level": 0.3}, "v-1"),
                ("no_such_tool", {}, "u-1"),
                ("speaker_volume", {"action": "shout"}, "b-1"),
                ("timers", {"action": "set", "duration_s": 600, "label": "pasta"}, "s-1"),
            ])
            await double.wait_for(lambda: len(responses(double)) >= 5, 10, what="5 answers")
            answers = by_id(double)
            assert sorted(answers) == ["b-1", "s-1", "t-1", "u-1", "v-1"]
            assert all(len(a) == 1 for a in answers.values()), answers
            assert answers["t-1"][0][2]["status"] == "ok" and "time" in answers["t-1"][0][2]
            assert answers["v-1"][0][2] == {"status": "ok", "volume": 0.3, "muted": False}
            unknown = answers["u-1"][0][2]
            assert unknown["status"] == "error" and "no tool named 'no_such_tool'" in unknown["error"]
            bad = answers["b-1"][0][2]
            assert bad["status"] == "error" and bad["error"].startswith("bad arguments: action")
            assert answers["s-1"][0][2]["timer"]["label"] == "pasta"
            assert answers["t-1"][0][3]["scheduling"] == "INTERRUPT"
            assert rig.app.playback.volume == pytest.approx(0.3)
            # kept on disk (written by the volume file's own writer thread)
            await until(lambda: (tmp_path / "volume.json").exists(), what="volume.json")
            saved = json.loads((tmp_path / "volume.json").read_text())
            assert saved["level"] == pytest.approx(0.3)
            # the same call again (a duplicate after an interruption) sets nothing twice
            await conn.send_tool_calls([("timers", {"action": "set", "duration_s": 600,
                                                    "label": "pasta"}, "s-1")])
            await double.wait_for(lambda: len(by_id(double)["s-1"]) == 2, 10)
            assert len(rig.app.tools.alarms.list()) == 1
            await stop_rig(rig)

    run(main())


def test_a_slow_call_the_server_cancels_is_never_answered(tmp_path, pulse):
    async def main():
        async with LiveDouble(api_keys=(KEY,), auto_reply=answer()) as double:
            rig = await start_rig(tmp_path, pulse, double)
            conn = await open_session(rig, double)
            started, finished = asyncio.Event(), []
            add_tool(rig, slow_tool(started, finished))
            await conn.send_tool_calls([("slow_lookup", {}, "slow-1"), ("local_time", {}, "t-2")])
            await asyncio.wait_for(started.wait(), 10)
            await double.wait_for(lambda: "t-2" in by_id(double), 10)
            await conn.send_tool_call_cancellation(["slow-1"])
            await until(lambda: not rig.app.state.calls, what="the call cancelled")
            assert rig.app.tools.calls.running == frozenset()
            await rig.turn()  # the session goes on
            assert "slow-1" not in by_id(double) and finished == []
            await stop_rig(rig)

    run(main())


def test_a_barge_in_answers_the_running_call_as_interrupted(tmp_path, pulse):
    async def main():
        speech = AutoReply(pcm=tone(3.0), chunk_ms=40, realtime=True, delay_s=0.05)
        async with LiveDouble(api_keys=(KEY,), auto_reply=answer()) as double:
            rig = await start_rig(tmp_path, pulse, double)
            conn = await open_session(rig, double)
            started, finished = asyncio.Event(), []
            add_tool(rig, slow_tool(started, finished))
            double.auto_reply = speech
            await rig.press()
            rig.mic.speak(3)
            await rig.release()
            await rig.until_phase(Phase.SPEAKING, after=len(rig.shows.phases))
            await conn.send_tool_calls([("slow_lookup", {}, "slow-2")])
            await asyncio.wait_for(started.wait(), 10)
            await rig.press()  # barge in over the answer
            await double.wait_for(lambda: "slow-2" in by_id(double), 10)
            (answered,) = by_id(double)["slow-2"]
            assert answered[2]["status"] == "error" and "interrupted" in answered[2]["error"]
            assert answered[3]["scheduling"] == "SILENT"
            await rig.release()
            double.auto_reply = answer()
            await rig.until_idle()
            assert finished == [] and len(by_id(double)["slow-2"]) == 1
            await stop_rig(rig)

    run(main())


def test_no_handover_while_a_call_is_pending_then_at_the_safe_point(tmp_path, pulse):
    async def main():
        async with LiveDouble(api_keys=(KEY,), auto_reply=answer()) as double:
            rig = await start_rig(tmp_path, pulse, double)
            conn = await open_session(rig, double)
            started = asyncio.Event()
            gate = asyncio.Event()

            async def held(args, call_id):
                started.set()
                await gate.wait()
                return ok(done=True)

            add_tool(rig, Tool("held_lookup", "Waits for the test.", held, deadline_s=60.0))
            await conn.send_tool_calls([("held_lookup", {}, "h-1")])
            await asyncio.wait_for(started.wait(), 10)
            await conn.send_go_away(50)
            await until(lambda: rig.app.state.handover, what="the handover pending")
            assert len(double.connections) == 1  # not while the call is pending
            gate.set()
            await double.wait_for(lambda: "h-1" in by_id(double), 10)
            await double.wait_for_connection(2, timeout=10)  # then at once: the moment is safe
            assert by_id(double)["h-1"][0][0] == 1  # answered on the connection it came from
            # a goAway with little time left hands over at once: the call is cancelled, unanswered
            gate.clear()
            started.clear()
            conn2 = double.connections[1]
            await until(lambda: rig.app.state.link.value == "up", what="the new session")
            await conn2.send_tool_calls([("held_lookup", {}, "h-2")])
            await asyncio.wait_for(started.wait(), 10)
            await conn2.send_go_away(3)
            await double.wait_for_connection(3, timeout=10)
            await until(lambda: not rig.app.state.calls, what="the call cancelled")
            gate.set()
            await rig.turn()
            assert "h-2" not in by_id(double)
            await stop_rig(rig)

    run(main())


def test_a_timer_survives_a_restart_rings_through_the_speaker_and_a_press_silences_it(
        tmp_path, pulse):
    async def main():
        async with LiveDouble(api_keys=(KEY,), auto_reply=answer()) as double:
            rig = await start_rig(tmp_path, pulse, double, tail="[tools]\nalarm_volume = 0.5\n")
            conn = await open_session(rig, double)
            await conn.send_tool_calls([("timers", {"action": "set", "duration_s": 3,
                                                    "label": "tea"}, "tea-1"),
                                        ("timers", {"action": "set", "duration_s": 3600,
                                                    "label": "bread"}, "bread-1")])
            await double.wait_for(lambda: {"tea-1", "bread-1"} <= set(by_id(double)), 10)
            await stop_rig(rig)  # the daemon restarts before the tea is due
            with pulse.record_speaker() as rec:
                rig = await start_rig(tmp_path, pulse, double,
                                      tail="[tools]\nalarm_volume = 0.5\n")
                await rig.until_phase(Phase.RINGING, timeout=15)
                # the model is asked to say what rings (a session is opened for it)
                notice = await double.wait_for_message("client_content", timeout=10)
                assert 'the timer \\"tea\\"' in notice.raw or 'the timer "tea"' in notice.raw
                await asyncio.to_thread(rec.wait_samples, 48000 * 2, 15)
                heard = rec.samples()
            assert rig.app.tools.ringer.chimes >= 1
            assert int(abs(heard.astype(int)).max()) > 3000  # the chime reached the speaker
            rig.button.drive_low()  # a press silences the ring (and opens no turn)
            await until(lambda: rig.app.state.phase is Phase.IDLE, what="silenced")
            rig.button.drive_high()
            assert not rig.app.tools.ringer.ringing and rig.app.state.phase is Phase.IDLE
            assert "ringing" in led_states(rig.factory)
            await stop_rig(rig)
            # what rang is gone; what is not due yet stays, across another restart
            kept = json.loads((tmp_path / "alarms.json").read_text())
            assert [a["label"] for a in kept["alarms"]] == ["bread"]
            rig = await start_rig(tmp_path, pulse, double)
            assert [a.label for a in rig.app.tools.alarms.list()] == ["bread"]
            assert rig.app.state.phase is Phase.IDLE and Phase.RINGING not in rig.shows.phases
            await stop_rig(rig)

    run(main())


def test_an_mcp_server_s_tools_are_declared_called_and_a_crash_is_answered(tmp_path, pulse):
    import sys
    from pathlib import Path

    server = Path(__file__).resolve().parents[1] / "support" / "mcp_server.py"
    tail = ("[tools]\n[[tools.mcp]]\nname = \"home\"\n"
            f"command = [{json.dumps(sys.executable)}, {json.dumps(str(server))}, \"--stdio\"]\n"
            "allow = [\"echo\", \"crash\", \"lights_on\"]\n")

    async def main():
        async with LiveDouble(api_keys=(KEY,), auto_reply=answer()) as double:
            rig = await start_rig(tmp_path, pulse, double, tail=tail)
            conn = await open_session(rig, double)
            # the first session waited for the server's listing: its tools are declared, prefixed
            names = {f["name"] for t in conn.setup["tools"] for f in t.get("function_declarations", [])}
            assert {"home_echo", "home_crash", "home_lights_on"} <= names
            assert "home_pid" not in names  # not in the allow list
            await conn.send_tool_calls([("home_echo", {"text": "hello"}, "e-1"),
                                        ("home_lights_on", {"room": "kitchen"}, "l-1"),
                                        ("home_echo", {}, "e-2")])
            await double.wait_for(lambda: {"e-1", "l-1", "e-2"} <= set(by_id(double)), 15)
            answers = by_id(double)
            assert answers["e-1"][0][2] == {"status": "ok", "result": "hello"}
            assert "kitchen" in answers["l-1"][0][2]["result"]
            assert answers["e-2"][0][2]["status"] == "error"  # checked against its schema first
            # a duplicated acting call does not switch the lights twice
            await conn.send_tool_calls([("home_lights_on", {"room": "kitchen"}, "l-1")])
            await double.wait_for(lambda: len(by_id(double)["l-1"]) == 2, 10)
            assert by_id(double)["l-1"][1][2] == answers["l-1"][0][2]
            # the server dies mid-call: the call is answered with an error, the daemon carries on
            await conn.send_tool_calls([("home_crash", {}, "c-1")])
            await double.wait_for(lambda: "c-1" in by_id(double), 15)
            crashed = by_id(double)["c-1"][0][2]
            assert crashed["status"] == "error" and crashed["retryable"] is True
            assert "home" in rig.app.status_words()["mcp"]
            # ... and is started again: calls work once it is back
            await until(lambda: rig.app.status_words()["mcp"]["home"] == "up", timeout=20,
                        what="the server back")
            await conn.send_tool_calls([("home_echo", {"text": "again"}, "e-3")])
            await double.wait_for(lambda: "e-3" in by_id(double), 15)
            assert by_id(double)["e-3"][0][2] == {"status": "ok", "result": "again"}
            await rig.turn()  # the session goes on
            # a reload that changes the server: it starts again, and the next session declares
            # what it offers now
            path = tmp_path / "talkie.toml"
            path.write_text(path.read_text().replace('allow = ["echo", "crash", "lights_on"]',
                                                     'allow = ["echo", "pid"]'))
            rig.app.reload()
            await until(lambda: "home_pid" in rig.app.tools.registry.names, timeout=20,
                        what="the new listing")
            assert "home_crash" not in rig.app.tools.registry.names
            rig.app.emit(Reset())
            await until(lambda: rig.app.state.link.value != "up", what="the session closed")
            await rig.turn()
            new = double.connections[-1].setup["tools"]
            names = {f["name"] for t in new for f in t.get("function_declarations", [])}
            assert {"home_echo", "home_pid"} <= names and "home_crash" not in names
            await stop_rig(rig)

    run(main())


def test_look_sends_one_camera_picture_with_its_answer_and_lights_the_privacy_light(tmp_path, pulse):
    import base64

    import simplejpeg
    from gpiozero.pins.mock import MockFactory

    from talkie.shell.factories import Factories
    from talkie.shell.vision import Vision

    tail = ('[vision]\nmode = "off"\ncamera = "synthetic"\nindicator_pin = 22\n'
            '[tools]\nlook = "on"\n')

    async def main():
        async with LiveDouble(api_keys=(KEY,), auto_reply=answer()) as double:
            light = MockFactory()  # the privacy light's pin
            factories = Factories(vision=lambda s, send, fault: Vision(s, send, fault,
                                                                       pin_factory=light))
            rig = await start_rig(tmp_path, pulse, double, tail=tail, factories=factories)
            conn = await open_session(rig, double)
            names = {f["name"] for t in conn.setup["tools"] for f in t.get("function_declarations", [])}
            assert "look" in names  # allowed by [tools] look although the camera does not stream
            videos = len([m for m in double.messages if m.kind == "video"])
            await conn.send_tool_calls([("look", {}, "look-1")])
            await double.wait_for(lambda: "look-1" in by_id(double), 15)
            (_, name, response, raw), = by_id(double)["look-1"]
            assert name == "look" and response["status"] == "ok"
            parts = raw.get("parts", [])
            images = [p["inline_data"] for p in parts if "inline_data" in p]
            assert len(images) == 1 and images[0]["mime_type"] == "image/jpeg"
            rgb = simplejpeg.decode_jpeg(base64.urlsafe_b64decode(images[0]["data"]), colorspace="RGB")
            assert rgb.ndim == 3 and rgb.shape[2] == 3
            # one picture, not a stream: no video frames went out, and the camera is closed again
            assert len([m for m in double.messages if m.kind == "video"]) == videos
            lit = [float(c.state) for c in light.pin(22).states]
            assert max(lit) > 0 and lit[-1] == 0  # lit for the picture, off again
            await stop_rig(rig)

    run(main())

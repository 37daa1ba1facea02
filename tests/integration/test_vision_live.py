"""Vision through the real stack: the synthetic camera (picamera2 cannot exist off a Pi; the test card
goes through the same streamer, JPEG and link code), the real SDK, the Live double."""

from __future__ import annotations

import asyncio
import logging

import pytest
import simplejpeg

from talkie.shell.app import Factories
from talkie.shell.vision import Vision
from talkie.vision import SyntheticSource, read_number
from tests.integration.test_supervisor import KEY, answer, start_rig, stop_rig
from tests.support.live_double import LiveDouble
from tests.support.rig import until

pytestmark = pytest.mark.audio
VISION = '[vision]\nmode = "conversation"\ncamera = "synthetic"\nfps = 2.0\n'


def frames(double, since=0):
    return [m for m in double.messages[since:] if m.kind == "video"]


def with_vision(tmp_path, extra=VISION):
    """write_config() has no [vision]: add it to the file the rig writes."""
    import tests.support.daemon as daemon

    original = daemon.write_config

    def write(*args, **kw):
        path = original(*args, **kw)
        path.write_text(path.read_text() + "\n" + extra)
        return path

    return write


def test_frames_flow_at_2_fps_while_talking_and_never_while_idle(tmp_path, pulse, monkeypatch):
    import tests.integration.test_supervisor as sup

    monkeypatch.setattr(sup, "write_config", with_vision(tmp_path))

    async def main():
        async with LiveDouble(api_keys=(KEY,), auto_reply=answer()) as double:
            rig = await start_rig(tmp_path, pulse, double)
            await asyncio.sleep(1.0)  # idle with no session: the camera stays off
            assert frames(double) == [] and not rig.app.vision.streamer
            await rig.turn()
            first = len(frames(double))
            await double.wait_for(lambda: len(frames(double)) >= first + 21, timeout=20)
            window = frames(double)[first:first + 21]
            rate = 20 / (window[-1].t - window[0].t)
            numbers = []
            for m in window:
                assert m.mime_type == "image/jpeg"
                rgb = simplejpeg.decode_jpeg(m.blob, colorspace="RGB")
                assert rgb.shape == (576, 768, 3)
                numbers.append(read_number(rgb))
            rig.clock.advance(300)  # the conversation goes idle: the session closes
            await until(lambda: not rig.app.vision.streamer.running)
            await double.wait_for(lambda: double.connections[0].closed)
            quiet = len(double.messages)
            await asyncio.sleep(2.0)
            idle_frames = len(frames(double, quiet))
            await stop_rig(rig)
            return rate, numbers, idle_frames, rig

    rate, numbers, idle_frames, rig = asyncio.run(asyncio.wait_for(main(), 90))
    assert 1.9 <= rate <= 2.1
    assert numbers == sorted(set(numbers))  # increasing, no duplicates
    assert idle_frames == 0
    assert not rig.app.vision.streamer.running


def test_a_mode_switch_on_reload_takes_effect_at_the_next_frame(tmp_path, pulse, monkeypatch,
                                                               caplog):
    import tests.integration.test_supervisor as sup

    monkeypatch.setattr(sup, "write_config", with_vision(tmp_path))

    async def main():
        async with LiveDouble(api_keys=(KEY,), auto_reply=answer()) as double:
            rig = await start_rig(tmp_path, pulse, double)
            await rig.turn()
            await double.wait_for(lambda: len(frames(double)) >= 2, timeout=10)
            path = tmp_path / "talkie.toml"
            path.write_text(path.read_text().replace('mode = "conversation"', 'mode = "off"'))
            rig.app.reload()
            await until(lambda: not rig.app.vision.wanted)
            mark = len(double.messages)
            await asyncio.sleep(1.5)  # three frame periods
            after = len(frames(double, mark))
            await stop_rig(rig)
            return after

    with caplog.at_level(logging.INFO, logger="talkie"):
        after = asyncio.run(asyncio.wait_for(main(), 60))
    assert after <= 1  # at most a frame already on its way
    assert any(r.getMessage().endswith(": vision.mode") for r in caplog.records
               if r.getMessage().startswith("reloaded "))


def test_a_failing_camera_leaves_the_conversation_working(tmp_path, pulse, monkeypatch, caplog):
    import tests.integration.test_supervisor as sup

    monkeypatch.setattr(sup, "write_config", with_vision(tmp_path))
    sources = []

    def failing(vision):
        sources.append(SyntheticSource(fail_after=2))
        return sources[-1]

    async def main():
        async with LiveDouble(api_keys=(KEY,), auto_reply=answer()) as double:
            factories = Factories(vision=lambda s, send, fault: Vision(
                s, send, fault, make_source=failing))
            rig = await start_rig(tmp_path, pulse, double, factories=factories)
            first = await rig.turn()
            await until(lambda: rig.app.vision.stats.get("faults", 0) >= 1, timeout=10)
            second = await rig.turn()  # talking goes on
            turns = [seqs for _, seqs in sup.complete_turns(double)]
            await stop_rig(rig)
            return first, second, turns

    with caplog.at_level(logging.INFO, logger="talkie"):
        first, second, turns = asyncio.run(asyncio.wait_for(main(), 60))
    assert turns == [first, second]
    faults = [r for r in caplog.records if r.getMessage().startswith("camera: capture failed")]
    assert len(faults) == 1 and faults[0].levelno == logging.WARNING

"""Barge-in through the real audio path: the answer plays through PortAudio into PulseAudio's speaker
sink, an echo room (:class:`EchoRoom`: delay, coupling, reverb) feeds it back into the microphone
sink, and the daemon (real config, real SDK, Live double over TLS) listens with its echo canceller
and voice detector.

* Its own voice, several seconds of it at -6 dB coupling, does not stop the answer.
* The user speaking over it does: the LED goes to listening, the double sees a new turn
  (activity_start interrupts the reply), the turn holds the user's words from before the detection
  on (the pre-roll: the first syllable is there) and ends by itself when the user stops.
* With ``echo = "half_duplex"`` the microphone is not consulted while the speaker plays: the same
  speech does not stop the answer.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from support.pulse import align, write_wav
from talkie import config
from talkie.shell.app import App, Factories
from talkie.core.machine import Phase
from talkie.config.credentials import load_api_key
from tests.support import corpus as c
from tests.support.daemon import BUTTON, Shows, write_config
from tests.support.echo_room import EchoRoom
from tests.support.live_double import AutoReply, LiveDouble

pytestmark = pytest.mark.audio

KEY = "AIzaSy-barge-in-0123456789abcdef"
#: How long the answer plays over its own echo before the user speaks (at least).
ECHO_ONLY_S = 3.0
#: ... and how much longer the user waits, at most, for the echo to be found (a loaded machine
#: delays PulseAudio's streams; until the delay is measured the microphone is not consulted).
FIND_S = 6.0


def _answer(seconds: float) -> bytes:
    """The assistant's voice at 24 kHz, ``seconds`` long."""
    import soxr

    talk = c.assistant_talk(seconds, seed=5)
    return c.to_s16(soxr.resample(talk, c.RATE, 24000).astype(np.float32)).tobytes()


def _run(tmp_path, pulse, audio: str):
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    from talkie.panel import open_panel

    factory = MockFactory(pin_class=MockPWMPin)
    question = write_wav(tmp_path / "question.wav",
                         c.to_s16(c.scale_to(c.speech(c.USER_LINES[5], c.USER_VOICES[1]), -24)), 16000)
    user = c.to_s16(c.scale_to(c.speech(c.USER_LINES[0], c.USER_VOICES[0]), -16))
    over = write_wav(tmp_path / "over.wav", user, 16000)

    async def main(double):
        settings = config.load(write_config(tmp_path, double, pulse, KEY, audio=audio))
        shows = Shows()

        def panel(s, **kw):
            return open_panel(s.panel, pin_factory=factory, **kw)

        app = App(settings, load_api_key(settings.live.api_key_file, env={}),
                  factories=Factories(panel=panel), on_show=shows,
                  control_path=str(tmp_path / "control"))
        task = asyncio.create_task(app.run())
        await asyncio.wait_for(app.ready.wait(), 10)
        button = factory.pin(BUTTON)
        with EchoRoom(pulse, delay_ms=20, gain_db=-10, seed=1) as room:
            button.drive_low()
            await pulse.aplay_into_mic(question)
            button.drive_high()
            await shows.until(lambda p: p[-1] is Phase.SPEAKING)
            await asyncio.sleep(ECHO_ONLY_S)
            reference = app.chain.reference
            for _ in range(int(FIND_S * 10)):
                if reference is None or reference.aligned:
                    break
                await asyncio.sleep(0.1)
            echo_only = list(shows.phases)
            since = len(shows.phases)
            await pulse.aplay_into_mic(over)
            try:
                await shows.until(lambda p: Phase.THINKING in p[since:], timeout=5)
            except TimeoutError:
                pass
            after = shows.phases[since:]
            echoed = room.blocks
            cuts = app.audio.playback.cuts  # before the stop cuts what still plays
        app.stop()
        await asyncio.wait_for(task, 10)
        return app, echo_only, after, echoed, cuts

    answer = AutoReply(pcm=_answer(ECHO_ONLY_S + FIND_S + 6.0), chunk_ms=40, delay_s=0.1)
    with LiveDouble(api_keys=(KEY,), auto_reply=answer) as double:
        app, echo_only, after, echoed, cuts = asyncio.run(asyncio.wait_for(main(double), 90))
        messages = double.messages
        assert double.errors == []
    return app, echo_only, after, echoed, cuts, messages, user


def _turns(messages) -> list[np.ndarray]:
    turns, current = [], None
    for m in messages:
        if m.kind == "activity_start":
            current = []
        elif m.kind == "audio" and current is not None:
            current.append(m.blob)
        elif m.kind == "activity_end" and current is not None:
            turns.append(np.frombuffer(b"".join(current), dtype=np.int16))
            current = None
    if current is not None:
        turns.append(np.frombuffer(b"".join(current), dtype=np.int16))
    return turns


def test_speaking_over_the_answer_stops_it_and_its_own_voice_does_not(tmp_path, pulse):
    app, echo_only, after, echoed, cuts, messages, user = _run(tmp_path, pulse, "")
    assert echoed > ECHO_ONLY_S * 100  # the room really fed the answer back into the microphone
    # Its own voice through the room did not stop the answer.
    assert echo_only[-1] is Phase.SPEAKING
    assert Phase.LISTENING not in echo_only[echo_only.index(Phase.SPEAKING):]
    # The user's voice did, and the turn ended by itself when the user stopped.
    assert after[:2] == [Phase.LISTENING, Phase.THINKING], after
    assert cuts >= 1
    # The echo delay was measured on the real streams (the room's 20 ms plus PulseAudio's buffers
    # beyond what PortAudio's timestamps say), within the estimator's 400 ms reach.
    reference = app.chain.reference
    print(f"echo delay beyond the timestamps: {reference.extra_delay_s * 1000:.0f} ms; residual echo "
          f"gain {app.chain.gate.residual_gain_db:.1f} dB; {reference.resyncs} resyncs, found {reference.found}")
    # PulseAudio's timestamps may also overstate its latency a little (its latency is an estimate,
    # and under load it was seen 5-9 ms over): an echo found up to 20 ms sooner is the same room.
    assert reference.aligned and -0.02 <= reference.extra_delay_s <= 0.4
    turns = _turns(messages)
    assert len(turns) == 2
    sent = turns[1]
    lag, corr = align(user, sent)
    print(f"barge-in: user speech at {lag} samples into the turn ({len(sent)} samples), corr {corr:.2f}")
    # The words, from before the voice began on: the user's first sample lies inside the turn,
    # after at least 50 ms of pre-roll (so the first syllable is not lost) and at most the
    # pre-roll plus half a second (the voice's onset is found in the words, not in the echo
    # before them), and all of the speech is there.
    assert corr >= 0.5, corr
    assert 800 <= lag <= app.settings.audio.preroll_ms * 16 + 8000, lag
    assert lag + len(user) <= len(sent)


def test_half_duplex_does_not_listen_while_the_speaker_plays(tmp_path, pulse):
    app, echo_only, after, echoed, cuts, messages, _ = _run(tmp_path, pulse, 'echo = "half_duplex"')
    assert echoed > ECHO_ONLY_S * 100
    assert Phase.LISTENING not in after and Phase.THINKING not in after
    assert len(_turns(messages)) == 1 and cuts == 0

"""The barge-in DSP chain on arrays (fast, deterministic): the echo canceller, the speech gate, the
microphone chain (chunks, pre-roll, the canceller switching in and out), the echo reference's
alignment and delay estimate, and the whole chain in the simulated room."""

from __future__ import annotations

import numpy as np
import pytest

from talkie.audio.echo import SpeexEcho
from talkie.audio.ring import Ring
from talkie.audio.reference import EchoDelay, EchoReference
from talkie.audio.uplink_chain import MicChain
from talkie.audio import vad
from talkie.audio.vad import END, START, SpeechGate, level_db
from tests.support import bargein_sim as sim
from tests.support import corpus as c

pytestmark = pytest.mark.skipif(not c.available(), reason="needs espeak-ng")
RATE = 16000


def user_clip(k: int = 4, level_db: float = -24.0) -> np.ndarray:
    return c.to_s16(c.scale_to(c.speech(c.USER_LINES[k], c.USER_VOICES[k]), level_db))


def blocks(x: np.ndarray, n: int = 160):
    for i in range(0, len(x) - n + 1, n):
        yield x[i:i + n]


# ---- the echo canceller


def test_the_canceller_takes_the_echo_out_of_the_microphone():
    speaker = c.assistant_talk(12.0, seed=2)
    mic = c.to_s16(sim.room_mic(speaker, delay_ms=30, gain_db=0, seed=2, noise_db=-60))
    ref = c.to_s16(speaker)
    aec = SpeexEcho(filter_ms=200)
    out = np.concatenate([aec.process(m, r).copy() for m, r in zip(blocks(mic), blocks(ref))])
    tail = slice(4 * RATE, len(out))  # after it has converged
    erle = 10 * np.log10(np.mean(mic[tail].astype(float) ** 2) / np.mean(out[tail].astype(float) ** 2))
    assert erle > 20, erle


def test_the_residual_echo_suppressor_takes_out_what_the_linear_filter_leaves():
    # a small speaker driven into clipping: an echo no linear filter takes out entirely
    from tests.support.hard_room import soft_clip

    speaker = c.assistant_talk(12.0, seed=2)
    mic = c.to_s16(sim.room_mic(soft_clip(speaker, 0.7), delay_ms=30, gain_db=0, seed=2,
                                noise_db=-60))
    ref = c.to_s16(speaker)

    def erle(aec):
        out = np.concatenate([aec.process(m, r).copy() for m, r in zip(blocks(mic), blocks(ref))])
        tail = slice(4 * RATE, len(out))
        return 10 * np.log10(np.mean(mic[tail].astype(float) ** 2)
                             / np.mean(out[tail].astype(float) ** 2))

    # the preprocessor applies its gains only with its denoiser on: the suppressor must act
    assert erle(SpeexEcho()) > erle(SpeexEcho(suppress_db=0, suppress_active_db=0)) + 3


def test_without_a_reference_the_canceller_only_delays_the_microphone_by_a_frame():
    x = np.concatenate([np.zeros(800, np.int16), user_clip(), np.zeros(800, np.int16)])
    aec = SpeexEcho()
    out = np.concatenate([aec.process(m, np.zeros(160, np.int16)).copy() for m in blocks(x)])
    n = len(out) - 160
    assert np.corrcoef(out[160:160 + n], x[:n])[0, 1] > 0.95


# ---- the speech gate


def gate_run(gate: SpeechGate, x: np.ndarray, ref_db: float = -120.0,
             busy: bool = False) -> list[tuple[int, int]]:
    return [(i, d) for i, f in enumerate(blocks(x)) if (d := gate.feed(f, ref_db, busy=busy))]


def test_the_gate_hears_speech_start_soon_and_end_after_the_silence():
    clip = user_clip(4)  # "Okay, thank you, that's enough."
    x = np.concatenate([c.to_s16(c.fan_noise(1.0, -60, seed=1)), clip,
                        c.to_s16(c.fan_noise(1.5, -60, seed=2))])
    events = gate_run(SpeechGate(end_ms=700), x)
    assert [d for _, d in events] == [START, END]
    onset = 100  # frames: the clip starts after 1 s of fan
    assert onset + 1 <= events[0][0] <= onset + 6  # 20 to 60 ms after the first sample
    last = onset + len(clip) // 160
    assert last + 70 - 1 <= events[1][0] <= last + 70 + 5  # 700 ms after the last word


def test_the_gate_ignores_a_fan_and_quiet_far_away_talk():
    for x in (c.fan_noise(10.0, -40, seed=3), c.babble(10.0, -60, seed=3)):
        assert gate_run(SpeechGate(), c.to_s16(x)) == []


def test_in_the_pause_of_an_answer_a_voice_across_the_room_does_not_start_a_turn():
    # a TV across the room, its talk at -50 dBFS over a quiet fan; the reference has fallen silent
    # (a pause between two sentences) but the answer is under way
    room = c.to_s16(c.fan_noise(1.0, -65, seed=4))
    tv = np.concatenate([room, user_clip(2, -50.0), room])
    user = np.concatenate([room, user_clip(2, -32.0), room])
    assert [d for _, d in gate_run(SpeechGate(), tv)] == [START, END]  # idle: that is a voice
    assert gate_run(SpeechGate(), tv, busy=True) == []  # in an answer's pause: not a barge-in
    assert [d for _, d in gate_run(SpeechGate(), user, busy=True)] == [START, END]  # the user is


def test_the_residual_in_the_reference_s_tails_is_learnt_apart():
    # While the reference sounds, the canceller leaves little (-35 dB of it); in its tails (a pause,
    # the end of a word: the reference well below its envelope) the room's late reverberation,
    # which it takes out much less of, is heard (-12 dB of the envelope).
    rng = np.random.default_rng(5)

    def noise(db):
        return c.to_s16(c.scale_to(rng.standard_normal(160).astype(np.float32), db))

    gate = SpeechGate()
    for k in range(600):
        if k % 3:
            gate.feed(noise(-55.0), -20.0, -20.0, True, -20.0)
        else:
            gate.feed(noise(-32.0), -20.0, -20.0, True, -120.0)
    assert gate.residual_gain_db <= -29.0 and gate.tail_gain_db > -16.0
    # so a voice at the tails' level is not heard in a tail, and one above it is
    quiet, loud = user_clip(4, -33.0), user_clip(4, -8.0)
    assert START not in [gate.feed(f, -20.0, level_db(f), True, -120.0) for f in blocks(quiet)]
    assert START in [gate.feed(f, -20.0, level_db(f), True, -120.0) for f in blocks(loud)]


def _taught_gate(**kw) -> SpeechGate:
    """A gate that has learnt a residual 30 dB under an answer at -20 dBFS (predicted: -50)."""
    rng = np.random.default_rng(5)
    gate = SpeechGate(**kw)
    for _ in range(600):
        noise = c.to_s16(c.scale_to(rng.standard_normal(160).astype(np.float32), -55.0))
        gate.feed(noise, -20.0, -20.0, True, -20.0)
    assert gate.residual_gain_db == pytest.approx(-30.0)
    return gate


def test_a_voice_steadily_over_the_residual_is_heard_in_time_though_under_the_guard(monkeypatch):
    # -30 dBFS: 20 dB over the residual predicted, far under a 40 dB guard
    clip = list(blocks(user_clip(4, -30.0)))
    gate = _taught_gate(guard_db=40.0)
    decisions = [gate.feed(f, -20.0, level_db(f), True, -20.0) for f in clip]
    assert START in decisions
    assert decisions.index(START) >= 8  # evidence of nine frames at least: no frame decides alone
    monkeypatch.setattr(vad, "EVIDENCE_START", 1e9)  # the guard alone
    gate = _taught_gate(guard_db=40.0)
    assert START not in [gate.feed(f, -20.0, level_db(f), True, -20.0) for f in clip]


def test_bursts_of_residual_echo_add_no_evidence_over_time():
    # two frames 28 dB over the residual predicted, then three of what the canceller leaves,
    # for 20 s: each burst clears the guard, but neither the window nor the evidence fills
    rng = np.random.default_rng(6)
    voiced = [f for f in blocks(user_clip(4, -22.0)) if level_db(f) > -26.0]
    gate = _taught_gate()
    starts = 0
    for k in range(400):
        at = (2 * k) % (len(voiced) - 2)
        for f in voiced[at:at + 2]:
            starts += gate.feed(f, -20.0, -20.0, True, -20.0) == START
        for _ in range(3):
            rest = c.to_s16(c.scale_to(rng.standard_normal(160).astype(np.float32), -55.0))
            starts += gate.feed(rest, -20.0, -20.0, True, -20.0) == START
    assert starts == 0


def test_frames_that_add_evidence_are_not_learnt_as_residual_echo():
    # the voiced frames 15-24 dB over the residual predicted: evidence, not the echo's
    gate = _taught_gate(guard_db=40.0)
    frames = [f for f in blocks(user_clip(4, -30.0)) if -35.0 <= level_db(f) <= -26.0]
    assert len(frames) >= 20
    for f in frames[:8]:  # (fewer than would start speech)
        gate.feed(f, -20.0, level_db(f), True, -20.0)
    assert gate.evidence > 0.0
    assert gate.residual_gain_db == pytest.approx(-30.0)


def test_the_gate_needs_start_frames_of_the_window():
    clip = user_clip(4)
    x = np.concatenate([np.zeros(1600, np.int16), clip])
    fast = gate_run(SpeechGate(start_frames=1, window_frames=1), x)[0][0]
    slow = gate_run(SpeechGate(start_frames=5, window_frames=6), x)[0][0]
    assert fast < slow
    with pytest.raises(ValueError):
        SpeechGate(start_frames=4, window_frames=3)


def test_over_the_speaker_the_gate_is_deaf_until_it_has_learnt_the_residual_echo():
    gate = SpeechGate()
    clip = user_clip(4, -30)
    # As if nothing were cancelled yet: speech at the echo's level is not the user.
    assert gate_run(gate, clip, ref_db=-25.0) == []


# ---- the microphone chain


def chain(echo="off", barge_in=False, speaker=None, **kw):
    out, speech = [], []
    ch = MicChain(on_chunk=out.append, on_speech=speech.append, echo=echo, barge_in=barge_in,
                  gate=SpeechGate() if barge_in else None,
                  canceller=SpeexEcho() if echo == "aec" else None,
                  reference=sim.ArrayReference(speaker) if speaker is not None else None, **kw)
    return ch, out, speech


def feed(ch, x, block=160):
    for i in range(0, len(x) - block + 1, block):
        ch.push(x[i:i + block].tobytes(), i / RATE)


def test_with_nothing_to_do_blocks_pass_untouched():
    ch, out, _ = chain()
    ch.push(b"\x01\x02" * 320)
    assert out == [b"\x01\x02" * 320]


def test_blocks_become_chunks_every_sample_once_and_the_last_part_is_flushed():
    x = user_clip()
    ch, out, _ = chain(barge_in=True, chunk_ms=20)
    feed(ch, x, block=100)  # blocks that are no multiple of a frame
    ch.flush()
    sent = np.frombuffer(b"".join(out), dtype=np.int16)
    assert {len(o) for o in out[:-1]} == {640}
    assert np.array_equal(sent, x[:len(sent)]) and len(x) - len(sent) < 160


def test_the_canceller_switches_in_and_out_and_the_stream_stays_whole():
    talk = np.zeros(8 * RATE, np.float32)
    talk[RATE:6 * RATE] = c.assistant_talk(5.0, seed=1)
    speaker = c.to_s16(talk)
    mic = c.to_s16(sim.room_mic(talk, delay_ms=20, gain_db=-10, seed=1, noise_db=-60))
    ch, out, _ = chain(echo="aec", speaker=speaker)
    feed(ch, mic)
    sent = np.frombuffer(b"".join(out), dtype=np.int16)
    assert len(sent) == len(mic) // 640 * 640  # every sample once, in 20 ms chunks
    # Before the speaker plays and after its echo has died away, the microphone passes untouched.
    assert np.array_equal(sent[:RATE // 2], mic[:RATE // 2])
    assert np.array_equal(sent[7 * RATE:], mic[7 * RATE:len(sent)])
    # While it plays, the echo is taken out (once the canceller has converged).
    during = slice(4 * RATE, 6 * RATE)
    assert np.mean(sent[during].astype(float) ** 2) < 0.1 * np.mean(mic[during].astype(float) ** 2)


def test_without_a_voice_start_the_pre_roll_is_the_last_300_ms_and_nothing_is_sent_twice():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(2 * RATE) * 30).astype(np.int16)  # a quiet room, nobody speaking
    ch, out, speech = chain(barge_in=True, preroll_ms=300)
    feed(ch, x[:RATE])
    out.clear()
    pre = ch.preroll()
    feed(ch, x[RATE:])
    sent = np.frombuffer(b"".join(pre + out), dtype=np.int16)
    assert speech == []
    assert np.array_equal(sent[:4800], x[RATE - 4800:RATE])
    assert np.array_equal(sent[4800:], x[RATE:RATE + len(sent) - 4800])


def test_a_voice_start_sends_from_300_ms_before_the_voice_began_and_nothing_twice():
    x = np.concatenate([np.zeros(RATE, np.int16), user_clip()])
    began = RATE + int(np.argmax(np.abs(x[RATE:]) > 300))  # the first sound of the voice
    ch, out, speech = chain(barge_in=True, preroll_ms=300)
    i = 0
    while not speech:  # up to the frame the voice is found in
        ch.push(x[i:i + 160].tobytes(), i / RATE)
        i += 160
    out.clear()
    pre = ch.preroll()
    feed(ch, x[i:i + RATE])
    sent = np.frombuffer(b"".join(pre + out), dtype=np.int16)
    start = i - sum(len(p) for p in pre) // 2
    assert np.array_equal(sent, x[start:start + len(sent)])  # the stream, every sample once
    assert began - 4800 - 320 <= start <= began - 4800 + 320  # 300 ms before its first sound


def test_a_voice_held_back_by_the_guard_is_sent_from_where_it_began():
    """Over a loud answer the guard may let only the loudest syllables through: the detection
    comes late, and the turn still starts 300 ms before the voice began."""
    voice = user_clip(level_db=-18.0).astype(np.float32)
    # the guard holds its first half back (-42 dBFS: 8 dB over the residual predicted, too little
    # to add evidence over time either)
    voice[: len(voice) // 2] *= 10 ** (-24 / 20)
    x = np.concatenate([np.zeros(RATE // 2, np.int16), voice.astype(np.int16)])
    began = RATE // 2 + int(np.argmax(np.abs(voice) > 100))
    gate = SpeechGate()
    starts = []
    for i, frame in enumerate(blocks(x)):
        # an answer at -50 dBFS: loud enough for the guard (-25 dBFS), too quiet to learn from
        if gate.feed(frame, ref_db=-50.0) == START:
            starts.append((i, gate.onset_frames))
    assert starts, "the loud voice is heard"
    at, onset = starts[0]
    assert at * 160 > RATE // 2 + len(voice) // 2  # detected late, in the loud part
    assert abs((at + 1 - onset) * 160 - began) <= 0.15 * RATE, (at, onset, began)


def test_half_duplex_does_not_listen_while_the_speaker_is_busy():
    x = np.concatenate([np.zeros(1600, np.int16), user_clip()])
    busy = [True]
    ch, _, speech = chain(echo="half_duplex", barge_in=True, speaker_busy=lambda: busy[0])
    feed(ch, x)
    assert speech == []
    busy[0] = False
    feed(ch, np.zeros(6000, np.int16))  # the speaker's sound dies away
    feed(ch, x)
    assert speech[:1] == [True]


def test_without_echo_control_the_device_hears_its_own_voice_and_with_it_does_not():
    speaker = c.assistant_talk(20.0, seed=4)
    heard = {}
    for echo in ("off", "aec"):
        ch = sim.Chain(echo=echo).build(c.to_s16(speaker))
        ch.run(c.to_s16(sim.room_mic(speaker, delay_ms=20, gain_db=-3, seed=4, noise_db=-60)))
        heard[echo] = sum(1 for _, s in ch.events if s)
    assert heard["off"] > 0 and heard["aec"] == 0, heard


# ---- the echo reference


class FakePlayback:
    """What the reference reads of a playback: its history ring and its latest DAC stamp."""

    def __init__(self, rate):
        self.device_rate = rate
        self.history = Ring(2 * rate)
        self.dac_stamp = None

    def played(self, x, dac):
        at = self.history.written
        self.history.push(np.asarray(x, dtype=np.int16))
        self.dac_stamp = (at, dac)


def test_the_reference_is_what_was_played_lead_ms_after_the_microphone_instant():
    pb = FakePlayback(16000)
    signal = (np.arange(16000) % 1000).astype(np.int16)
    pb.played(signal, dac=10.0)  # sample 0 reached the DAC at t = 10 s
    ref = EchoReference(pb, 16000, lead_ms=20)
    ref.estimator = None
    block = ref.take(160, adc_time=10.25)
    assert np.array_equal(block, signal[4000 + 320:4000 + 480])
    block = ref.take(160, adc_time=10.26)  # continuous
    assert np.array_equal(block, signal[4480:4640])
    block = ref.take(160, adc_time=10.5)  # a jump: re-synchronised
    assert np.array_equal(block, signal[8320:8480]) and ref.resyncs == 1


def test_microphone_samples_skipped_unread_are_counted_and_the_reference_keeps_its_place():
    pb = FakePlayback(16000)
    signal = (np.arange(16000) % 1000).astype(np.int16)
    pb.played(signal, dac=10.0)
    ref = EchoReference(pb, 16000, lead_ms=20)
    ref.estimator = None
    ref.take(160, adc_time=10.25)  # reads from sample 4320 (lead 20 ms)
    ref.skip(1600)  # 100 ms the microphone did not hand over (the audio was not wanted)
    block = ref.take(160, adc_time=10.36)  # the next block it does hand over
    assert np.array_equal(block, signal[4480 + 1600:4640 + 1600]) and ref.resyncs == 0


def test_the_reference_is_resampled_from_the_device_rate():
    pb = FakePlayback(24000)
    t = np.arange(48000) / 24000
    pb.played((8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)[:48000], dac=0.0)
    ref = EchoReference(pb, 16000, lead_ms=0)
    ref.estimator = None
    got = np.concatenate([ref.take(160, 0.5 + k * 0.01) for k in range(50)])
    want = (8000 * np.sin(2 * np.pi * 440 * (0.5 + np.arange(8000) / 16000))).astype(np.int16)
    lags = range(-40, 41)
    lag = lags[int(np.argmax([np.dot(got[100:7000].astype(float), want[100 + d:7000 + d])
                              for d in lags]))]
    assert np.corrcoef(got[100:7000], want[100 + lag:7000 + lag])[0, 1] > 0.99
    assert abs(lag) <= 16  # within 1 ms: the resampler's own delay


def test_the_echo_delay_is_found_to_a_fraction_of_a_sample_and_noise_is_not_an_echo():
    speech = c.assistant_talk(1.0, seed=3)
    ref = c.to_s16(c.scale_to(speech, -20.0))
    true_lag = 700.3  # the echo 43.8 ms after the reference
    h = np.zeros(3000, dtype=np.float32)
    k = np.arange(-40, 41)
    h[700 + k] = (np.sinc(k - 0.3) * np.hamming(81)) * 0.5  # a fractional delay ...
    h[1400:3000] += np.random.default_rng(1).standard_normal(1600).astype(np.float32) * 0.003
    echo = c.through_room(ref.astype(np.float32), h)  # ... and a reverb tail
    noise = np.random.default_rng(2).standard_normal(len(ref)) * 60
    mic = np.clip(echo + noise, -32768, 32767).astype(np.int16)
    est = EchoDelay(16000)
    found = None
    for i in range(0, len(ref) - 160, 160):
        est.push(mic[i:i + 160], ref[i:i + 160])
        if i >= 16000 * 0.6 and found is None:
            found = est.search()
    assert found is not None and abs(found[0] - true_lag) < 0.5 and found[1] > 8
    # in double precision: the reference's positions are counted from it into the millions
    assert isinstance(found[0], float) and isinstance(found[1], float)
    unrelated = EchoDelay(16000)
    other = c.to_s16(c.scale_to(c.assistant_talk(1.0, seed=9), -20.0))
    for i in range(0, len(ref) - 160, 160):
        unrelated.push(other[i:i + 160], ref[i:i + 160])
    got = unrelated.search()
    assert got is not None and got[1] < 8  # another voice in the room is not the echo


def test_the_reference_leads_the_echo_half_a_second_into_the_first_answer():
    from dataclasses import replace

    from tests.support import hard_room as hr

    cond = replace(hr.Condition(), hidden_ms=25.0, coupling_db=-6.0, jitter_ms=0.3)
    sc = hr.scene(cond, 4.0)
    result = hr.run_chain(sc, "aec")
    assert result["aligned_at"] is not None
    assert result["aligned_at"] - sc.first_answer_s <= 0.5


# ---- the whole chain in the simulated room


def test_barge_in_trials_are_heard_and_never_before_the_user_speaks():
    results = [sim.trial(k) for k in range(6)]
    assert all(r["detected"] is not None and not r["early"] for r in results), results
    # the fourth of six within 150 ms (86 ms with an envelope falling as in a 0.6 s room: 132 now
    # that it falls as in a 0.8 s one, where the user begins in a word's tail)
    assert sorted(r["detect_samples"] for r in results)[3] <= 0.15 * RATE


def test_a_minute_of_its_own_voice_at_0_db_coupling_never_barges_in():
    run = sim.echo_only(60.0, gain_db=0.0, seed=7)
    assert run["false"] == 0 and run["erle_db"] > 15, run


def _positions(ref, pb, *, jitter_ms, drift_ppm, seconds, seed=0):
    """Where the reference reads (history positions) block by block, with the playback's DAC
    stamps jittering by ``jitter_ms`` and its clock ``drift_ppm`` fast; and where it should."""
    rng = np.random.default_rng(seed)
    rate = pb.device_rate
    true_rate = rate * (1 + drift_ppm * 1e-6)
    pb.history.push(np.zeros(rate, dtype=np.int16))
    got, want = [], []
    for k in range(int(seconds * 100)):
        t = 1.0 + k * 0.01
        # the playback's latest callback: block j left the DAC at its true time, stamped with jitter
        j = int((t + 0.03 - 1.0) * true_rate // 480)
        at = j * 480
        while pb.history.written < at + 480:
            pb.history.push(np.zeros(480, dtype=np.int16))
        dac = 1.0 + at / true_rate + rng.uniform(-jitter_ms, jitter_ms) / 1000
        pb.dac_stamp = (at, dac)
        ref.take(160, t)
        got.append(ref._next - 160 * rate / 16000)  # where this block was read from
        want.append((t - 1.0) * true_rate + ref.lead_ms / 1000 * rate)
    return np.array(got), np.array(want)


def test_jittering_timestamps_do_not_wobble_the_reference_and_drift_is_followed():
    pb = FakePlayback(48000)
    ref = EchoReference(pb, 16000)
    ref.estimator = None
    got, want = _positions(ref, pb, jitter_ms=0.5, drift_ppm=200, seconds=60)
    steps = np.diff(got[100:])  # the read position moves on by one block each time ...
    assert np.std(steps) < 0.2  # ... smoothly: 0.5 ms of jitter is 24 samples, not followed
    err_ms = (got - want) / 48  # ... and stays with the drifting clock (12 ms over the minute)
    assert np.max(np.abs(err_ms[1000:])) < 1.5 and ref.resyncs == 0


def _erle(sc, out) -> float:
    busy = np.repeat(sc.busy, 160)[: len(out)]
    busy[: 16000 * 8] = False  # once the canceller has converged
    mic = sc.mic[: len(out)].astype(np.float64)
    return 10 * np.log10(np.mean(mic[busy] ** 2) / np.mean(out[busy].astype(np.float64) ** 2))


@pytest.mark.parametrize("stamps_drift", [False, True])
def test_the_reference_is_counted_at_the_clocks_drift_even_where_the_timestamps_hide_it(
    stamps_drift, monkeypatch
):
    from dataclasses import replace

    from tests.support import hard_room as hr

    cond = replace(hr.Condition(), drift_ppm=-180.0, stamps_drift=stamps_drift, jitter_ms=0.4,
                   hidden_ms=12.0, coupling_db=-6.0, clip=0.0, rt60_s=0.3, noise_db=-65.0)
    sc = hr.scene(cond, 30.0)
    locked = hr.run_chain(sc, "aec")
    ref = locked["reference"]
    # the measured delays give the drift, to a few ppm, with no step on the way (no resync)
    assert ref.drift == pytest.approx(-180e-6, abs=10e-6) and ref.resyncs == 0
    # counted smoothly, 1.4 million samples in: each frame reads on from the last by the clocks'
    # ratio to a small fraction of a sample (not in the steps of a single-precision position)
    steps = np.diff(ref._pos.latest(64))
    assert np.std(steps) < 0.01 and steps.mean() == pytest.approx(3 * 160 * (1 - 180e-6), abs=0.02)
    # and the canceller keeps the echo: against the same room with the drift left to the
    # timestamps. Where they hide it, it is not followed at all then: the count gains several dB;
    # where they show it, their average over seconds is as good (the count costs about 2 dB in
    # this quiet room, the measurements' own noise)
    monkeypatch.setattr(EchoReference, "TRACK_FRAMES", 10**9)
    stamped = hr.run_chain(sc, "aec")
    assert stamped["reference"].drift == 0.0
    gain = _erle(sc, locked["out"]) - _erle(sc, stamped["out"])
    assert gain > (6.0 if not stamps_drift else -3.0), gain


def test_once_the_drift_is_measured_the_reference_slides_onto_it_slowly(monkeypatch):
    # The timestamps hide a 180 ppm drift: until the line through the measured delays is known
    # (seconds into the answer) the reference has slid tens of samples off it, and the canceller
    # has followed it there. Moving it back at once would lose the room: it glides, never faster
    # than EchoReference.GLIDE.
    from dataclasses import replace

    from tests.support import hard_room as hr

    cond = replace(hr.Condition(), drift_ppm=-180.0, stamps_drift=False, jitter_ms=0.0,
                   hidden_ms=5.0, coupling_db=-6.0, clip=0.0, rt60_s=0.3, noise_db=-65.0)
    sc = hr.scene(cond, 20.0)
    read: list[float] = []
    take = EchoReference.take

    def recorded(self, n, adc_time):
        block = take(self, n, adc_time)
        read.append(float(self._pos.latest(1)[0]) if self._line is not None else np.nan)
        return block

    monkeypatch.setattr(EchoReference, "take", recorded)
    hr.run_chain(sc, "aec")
    locked = np.array([p for p in read if not np.isnan(p)])
    assert len(locked) > 500  # the line was known for seconds
    steps = np.diff(locked)
    steps -= steps[-100:].mean()  # beyond the clocks' own rate, once it is on the line
    # (the line's slope is re-measured every second: a few ppm, 0.005 samples a frame)
    assert np.max(np.abs(steps)) <= EchoReference.GLIDE * 480 + 0.005
    assert abs(np.sum(steps)) > 5  # and it did have a way to go

"""Capture / Playback / find_device through real PortAudio + ALSA + PulseAudio null sinks.

Every check is made on recorded samples; waits are bounded waits on events or on sample counts,
never assertions about wall-clock durations.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from tests.support.rig import until

from support.pulse import align, correlation_at, read_wav
from talkie.audio.capture import Capture, apply_gain
from talkie.audio.devices import AudioError, find_device
from talkie.audio.playback import Playback

pytestmark = pytest.mark.audio

SPK_RATE = 24000
RECORDER_SLACK = 240  # parecord --latency-msec=10: the recording may trail the sink by a fragment


def noise(seconds: float, seed: int = 1, rate: int = SPK_RATE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(rate * seconds)) * 5000).clip(-32000, 32000).astype(np.int16)


async def wait_for(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    """Bounded wait for a condition that another thread or process makes true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class Collector:
    """on_audio sink that resolves futures when a given number of samples has arrived."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.chunks: list[bytes] = []
        self.samples = 0
        self._waiters: list[tuple[int, asyncio.Future]] = []

    def __call__(self, pcm: bytes) -> None:
        self.chunks.append(pcm)
        self.samples += len(pcm) // 2
        for target, fut in list(self._waiters):
            if self.samples >= target and not fut.done():
                fut.set_result(None)

    async def until(self, samples: int, timeout: float = 10.0) -> None:
        if self.samples >= samples:
            return
        fut = self.loop.create_future()
        self._waiters.append((samples, fut))
        await asyncio.wait_for(fut, timeout)

    def audio(self) -> np.ndarray:
        return np.frombuffer(b"".join(self.chunks), dtype=np.int16)


async def capture_playing(pulse, wav, **kwargs) -> tuple[Capture, Collector]:
    loop = asyncio.get_running_loop()
    sink = Collector(loop)
    cap = Capture(pulse.mic_device, loop=loop, on_audio=sink, **kwargs)
    cap.start()
    try:
        await sink.until(1)  # the stream is delivering: everything played from now on is captured
        await pulse.aplay_into_mic(wav)
        await sink.until(sink.samples + 8000)  # 0.5 s more for the monitor and input latency
    finally:
        cap.stop()
    return cap, sink


# -- find_device -------------------------------------------------------------------------------
def test_find_device_by_substring_index_default_and_missing(pulse):
    mic = find_device("MIC", "input")
    assert mic.name == "talkie_mic" and mic.default_rate > 0
    spk = find_device("talkie_spk", "output")
    assert spk.name == "talkie_spk"
    assert find_device(spk.index, "output") == spk
    default = find_device("", "input")  # ALSA "default" is PulseAudio's default (mic.monitor)
    assert default.index is not None and default.name
    with pytest.raises(AudioError) as err:
        find_device("no-such-card", "input")
    assert "no-such-card" in str(err.value) and "'talkie_mic'" in str(err.value)
    with pytest.raises(AudioError) as err:
        find_device(10_000, "output")
    assert "10000" in str(err.value) and "'talkie_spk'" in str(err.value)


RELEASE_CHILD = """
import json, sys, time
import sounddevice as sd
from talkie.audio.devices import release_alsa_plugins

def plugins():
    return sorted({line.split()[-1].rsplit("/", 1)[-1] for line in open("/proc/self/maps")
                   if "/alsa-lib/libasound_module_" in line})

blocks = []
mic = sd.RawInputStream(device=sys.argv[1], samplerate=16000, channels=1, dtype="int16",
                        blocksize=160, callback=lambda data, frames, when, status: blocks.append(frames))
mic.start()
before = plugins()
released = release_alsa_plugins()
after = plugins()
seen, deadline = len(blocks), time.monotonic() + 10
while len(blocks) < seen + 50 and time.monotonic() < deadline:
    time.sleep(0.01)
spk = sd.RawOutputStream(device=sys.argv[2], samplerate=24000, channels=1, dtype="int16")
spk.start(); spk.write(bytes(4800)); spk.stop(); spk.close()
print(json.dumps(dict(before=before, after=after, released=released,
                      blocks_after=len(blocks) - seen)))
"""


def test_the_plugins_only_the_device_scan_used_are_unloaded_and_the_streams_go_on(pulse):
    """PortAudio's scan opens every PCM of ALSA's configuration: with libasound2-plugins (which
    the rig's pulse plugin comes in) that loads the a52, jack, oss, ... plugins and what they link.
    Released, those go; the pulse plugin an open stream uses stays, the stream goes on delivering,
    and a new stream opens (ALSA reads its configuration again)."""
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", RELEASE_CHILD, pulse.mic_device,
                           pulse.speaker_device], env=pulse.env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.splitlines()[-1])
    assert got["released"] is True
    pulse_plugin = "libasound_module_pcm_pulse.so"
    assert pulse_plugin in got["before"] and pulse_plugin in got["after"]
    assert set(got["after"]) < set(got["before"]), got
    assert got["blocks_after"] >= 50


def test_without_alsa_loaded_nothing_is_released():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "from talkie.audio.devices import "
                           "release_alsa_plugins as r; print(r())"], capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr[-2000:]


# -- capture -----------------------------------------------------------------------------------
def test_capture_records_speech_played_into_the_mic(pulse, speech_wav):
    rate, speech = read_wav(speech_wav)
    assert rate == 16000
    cap, sink = asyncio.run(capture_playing(pulse, speech_wav))
    assert cap.device_rate == 16000
    assert {len(c) for c in sink.chunks} == {640}  # 20 ms blocks of s16le at 16 kHz
    lag, corr = align(speech, sink.audio())
    print(f"capture 16k: correlation {corr:.4f} lag {lag} xruns {cap.xruns} overflows {cap.overflows}")
    assert corr >= 0.9
    assert cap.overflows == 0
    assert cap.last_callback > 0


def test_capture_resamples_when_the_device_refuses_16k(pulse, speech_wav, monkeypatch):
    import sounddevice as sd

    real_check = sd.check_input_settings

    def only_native_rate(*args, samplerate=None, **kwargs):  # like a USB mic that only does 44.1/48k
        if samplerate == 16000:
            raise sd.PortAudioError("Invalid sample rate")
        return real_check(*args, samplerate=samplerate, **kwargs)

    monkeypatch.setattr(sd, "check_input_settings", only_native_rate)
    _, speech = read_wav(speech_wav)
    cap, sink = asyncio.run(capture_playing(pulse, speech_wav, gain_db=-6.0206))
    assert cap.device_rate != 16000
    assert {len(c) for c in sink.chunks} == {640}
    got = sink.audio()
    lag, corr = align(speech, got)
    segment = got[max(lag, 0): lag + len(speech)].astype(float)
    ratio = np.sqrt(np.mean(segment**2) / np.mean(speech.astype(float) ** 2))
    print(f"capture {cap.device_rate}->16k: correlation {corr:.4f} gain ratio {ratio:.3f}")
    assert corr >= 0.9
    assert ratio == pytest.approx(0.5, rel=0.05)


def test_gain_clips_instead_of_wrapping():
    samples = np.array([1000, -1000, 100, -30000, 30000], dtype=np.int16)
    assert apply_gain(samples, 10.0).tolist() == [10000, -10000, 1000, -32768, 32767]
    assert apply_gain(samples, 0.5).tolist() == [500, -500, 50, -15000, 15000]


# -- playback ----------------------------------------------------------------------------------
async def play_turn(pulse, signal: np.ndarray, chunk: int = 960, **kwargs):
    """Play ``signal`` as one turn and record it; returns (playback, recording, count at drained, drains)."""
    loop = asyncio.get_running_loop()
    drains: list[int] = []
    drained = loop.create_future()
    with pulse.record_speaker() as rec:

        def on_drained():
            drains.append(rec.count())
            if not drained.done():
                drained.set_result(None)

        pb = Playback(pulse.speaker_device, loop=loop, on_drained=on_drained, **kwargs)
        pb.start()
        try:
            for i in range(0, len(signal), chunk):
                pb.play(signal[i:i + chunk].tobytes())
            pb.finish()
            await asyncio.wait_for(drained, 15)
            await rec.wait_samples_async(drains[0] + SPK_RATE // 4)  # 250 ms more: any late drain?
        finally:
            pb.stop()
        recording = rec.stop()
    return pb, recording, drains


def test_playback_plays_everything_and_reports_drained_once(pulse):
    signal = noise(2.0)
    pb, rec, drains = asyncio.run(play_turn(pulse, signal))
    lag, corr = align(signal, rec)
    end = lag + len(signal)  # recording index just past the last source sample
    tail = signal[-480:]  # the last 20 ms
    tail_corr = correlation_at(tail, rec, end - 480)
    print(f"playback: correlation {corr:.4f} bit-exact {np.array_equal(rec[lag:end], signal)} "
          f"tail {tail_corr:.4f} latency {pb.latency * 1000:.1f} ms block {pb.max_block} "
          f"drained {drains[0] - end} samples after the last sample was recorded")
    assert corr >= 0.9
    assert tail_corr >= 0.99
    assert len(drains) == 1
    assert drains[0] >= end - RECORDER_SLACK  # not before the last sample reached the sink
    assert pb.played_samples == len(signal)
    assert pb.underruns == 0 and pb.overflows == 0


def test_flush_stops_the_sound_within_one_callback_and_cancels_finish(pulse):
    async def run():
        loop = asyncio.get_running_loop()
        drains, drained = [], loop.create_future()
        signal = noise(3.0, seed=2)
        with pulse.record_speaker() as rec:

            def on_drained():
                drains.append(rec.count())
                drained.set_result(None)  # a second call would raise InvalidStateError

            pb = Playback(pulse.speaker_device, loop=loop, on_drained=on_drained)
            pb.start()
            try:
                start = rec.count()
                for i in range(0, len(signal), 960):
                    pb.play(signal[i:i + 960].tobytes())
                pb.finish()  # pending when the flush comes: must never fire
                await rec.wait_samples_async(start + SPK_RATE)  # about 1 s into the turn
                handed, at_rec = pb.played_samples, rec.count()
                pb.flush()
                await rec.wait_samples_async(at_rec + SPK_RATE // 2)
                assert drains == []
                # A new turn after the flush still drains exactly once.
                second = noise(0.3, seed=3)
                pb.play(second.tobytes())
                pb.finish()
                await asyncio.wait_for(drained, 10)
                await rec.wait_samples_async(rec.count() + SPK_RATE // 10)
            finally:
                pb.stop()
            return pb, signal, second, rec.stop(), handed, at_rec, drains

    pb, signal, second, rec, handed, at_rec, drains = asyncio.run(run())
    # Align on 200 ms recorded shortly before flush() (a glitch earlier on cannot matter):
    # rec[i + off] is signal[i].
    probe_at = at_rec - SPK_RATE // 10 - 4800
    start, corr = align(rec[probe_at:probe_at + 4800], signal)
    assert corr > 0.99
    off = probe_at - start
    n = min(len(signal), len(rec) - off) - start
    # The path is bit-exact: the source plays until the first run of 48 mismatching samples
    # (a lone match later on is chance: noise and silence agree now and then).
    differs = np.abs(rec[start + off:start + off + n].astype(int) - signal[start:start + n]) > 2
    runs = np.convolve(differs, np.ones(48, dtype=int), mode="valid")
    assert runs.max() == 48 and not differs[:int(np.argmax(runs == 48))].any()
    last = start + int(np.argmax(runs == 48))  # source samples that made it to the speaker
    after_handed = last - handed
    in_recording = last + off - at_rec
    print(f"flush: {after_handed} samples beyond those handed to PortAudio at flush() "
          f"(callback block {pb.max_block}); sound stopped {in_recording} samples "
          f"({in_recording / SPK_RATE * 1000:.1f} ms) after the recording position at flush(); "
          f"output latency {pb.latency * SPK_RATE:.0f} samples")
    # The flush cut what PortAudio held as well: the speaker stopped before the samples handed
    # to PortAudio at flush() ran out, and within one callback period of the flush (what the
    # recorder shows later than the speaker plays is its own slack).
    assert after_handed <= pb.max_block and pb.cuts == 1
    assert in_recording <= pb.max_block + RECORDER_SLACK
    # After the flush point the turn's audio is gone: silence until the second turn.
    lag2, corr2 = align(second, rec)
    assert corr2 > 0.99
    assert not np.any(rec[last + off: lag2])
    assert len(drains) == 1 and drains[0] >= lag2 + len(second) - RECORDER_SLACK
    assert pb.underruns == 0


def test_playback_resamples_when_the_device_refuses_24k(pulse, monkeypatch):
    import sounddevice as sd

    real_check = sd.check_output_settings

    def only_native_rate(*args, samplerate=None, **kwargs):
        if samplerate == SPK_RATE:
            raise sd.PortAudioError("Invalid sample rate")
        return real_check(*args, samplerate=samplerate, **kwargs)

    monkeypatch.setattr(sd, "check_output_settings", only_native_rate)
    t = np.arange(SPK_RATE) / SPK_RATE  # 1 s: a chirp sweeping the speech band
    signal = np.rint(8000 * np.sin(2 * np.pi * (200 * t + 1900 * t**2))).astype(np.int16)
    pb, rec, drains = asyncio.run(play_turn(pulse, signal, chunk=1000, volume=0.5))
    assert pb.device_rate != SPK_RATE
    lag, corr = align(signal, rec)
    end = lag + len(signal)
    seg = rec[lag:end].astype(float)
    ratio = np.sqrt(np.mean(seg**2) / np.mean(signal.astype(float) ** 2))
    print(f"playback 24k->{pb.device_rate}: correlation {corr:.4f} volume ratio {ratio:.3f}")
    assert corr >= 0.9
    assert ratio == pytest.approx(0.5, rel=0.05)
    assert correlation_at(signal[-480:], rec, end - 480) >= 0.9  # the resampler tail was drained
    assert len(drains) == 1 and drains[0] >= end - RECORDER_SLACK


def test_stop_lets_queued_audio_play_out(pulse):
    async def run():
        loop = asyncio.get_running_loop()
        signal = noise(0.5, seed=4)
        with pulse.record_speaker() as rec:
            pb = Playback(pulse.speaker_device, loop=loop, on_drained=lambda: None)
            pb.start()
            pb.play(signal.tobytes())
            pb.stop()  # blocks until played out (bounded)
            assert not pb.active
            done = rec.count()
            await rec.wait_samples_async(done + SPK_RATE // 10)
            return signal, rec.stop(), done

    signal, rec, done = asyncio.run(run())
    lag, corr = align(signal, rec)
    assert corr >= 0.9
    assert correlation_at(signal[-480:], rec, lag + len(signal) - 480) >= 0.99
    assert lag + len(signal) <= done + RECORDER_SLACK  # it was all out before stop() returned


def test_an_idle_speaker_stream_pauses_and_the_next_sound_plays_in_full(pulse):
    """Idle, the stream stops (no callbacks, no CPU) but counts as alive; the next play starts it
    again and plays everything; after it, it pauses again."""
    signal = noise(0.5)

    async def run():
        loop = asyncio.get_running_loop()
        drained = loop.create_future()
        with pulse.record_speaker() as rec:
            pb = Playback(pulse.speaker_device, loop=loop, idle_pause_s=0.2,
                          on_drained=lambda: drained.done() or drained.set_result(None))
            pb.start()
            try:
                await until(lambda: pb.paused, 5, "the idle stream pausing")
                calls = pb._last_callback
                await asyncio.sleep(0.3)  # a span of callbacks (10 ms each) that must not come
                quiet = pb._last_callback == calls  # no callback while paused
                alive = time.monotonic() - pb.last_callback < 0.1  # the watch sees no stall
                for i in range(0, len(signal), 960):
                    pb.play(signal[i:i + 960].tobytes())
                resumed = not pb.paused
                pb.finish()
                await asyncio.wait_for(drained, 10)
                await until(lambda: pb.paused, 5, "the stream pausing after the sound")
            finally:
                pb.stop()
            recording = rec.stop()
        return quiet, alive, resumed, pb.pauses, recording

    quiet, alive, resumed, pauses, recording = asyncio.run(run())
    assert quiet and alive and resumed and pauses == 2
    lag, corr = align(signal, recording)
    assert corr >= 0.9 and np.array_equal(recording[lag:lag + len(signal)], signal)

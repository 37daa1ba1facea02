"""The barge-in bench's world (tests/support/hard_room.py) does what it says to the signals: the
coupling, the user's level, the clocks and their timestamps."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.support import corpus
from tests.support import hard_room as hr

pytestmark = pytest.mark.skipif(not corpus.available(), reason="espeak-ng is needed")

BASE = hr.Condition(noise_db=-90.0, jitter_ms=0.4, drift_ppm=150.0, hidden_ms=12.0, seed=5)


def db(x):
    return 20 * np.log10(float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2))) + 1e-12)


@pytest.mark.parametrize("coupling", [-12.0, 0.0, 6.0])
def test_the_echo_comes_back_at_the_coupling_asked_for(coupling):
    sc = hr.scene(replace(BASE, coupling_db=coupling), 6.0)
    busy = np.repeat(sc.busy, hr.BLOCK)[:len(sc.echo_only)]
    played = corpus.scale_to(np.ones(1), -20.0)  # the answer is played at -20 dBFS RMS
    assert db(sc.echo_only[busy]) - db(played) == pytest.approx(coupling, abs=1.0)


def test_the_user_is_heard_at_the_level_asked_for_and_the_onset_is_the_first_sound():
    quiet = hr.scene(replace(BASE, coupling_db=-90.0), 8.0)
    sc = hr.scene(replace(BASE, coupling_db=-90.0, user_db=-38.0), 8.0, user_at=4.0)
    user = sc.mic.astype(np.float64) - quiet.mic
    assert sc.onset is not None and 4.0 * hr.RATE < sc.onset < 4.1 * hr.RATE
    assert np.max(np.abs(user[:sc.onset])) <= 4  # nothing of the user before the onset
    voiced = user[sc.onset:sc.onset + hr.RATE]
    loud = np.abs(voiced) > 0.02 * np.max(np.abs(voiced))
    assert db(voiced[loud] / 32768) == pytest.approx(-38.0, abs=3.0)


def test_the_timestamps_jitter_and_hide_the_output_delay():
    sc = hr.scene(BASE, 6.0)
    seen_true = sc.dac_true - BASE.hidden_ms / 1000  # what the stamps should say, but for jitter
    off = (sc.dac_seen - seen_true) * 1000
    assert np.max(np.abs(off)) <= BASE.jitter_ms + 1e-9 and np.std(off) > BASE.jitter_ms / 4
    adc = (sc.adc_seen - np.arange(len(sc.adc_seen)) * hr.BLOCK / hr.RATE) * 1000
    assert np.max(np.abs(adc)) <= BASE.jitter_ms + 1e-9


def test_the_dac_clock_drifts_and_stamps_may_not_show_it():
    shown = hr.scene(BASE, 10.0)
    hidden = hr.scene(replace(BASE, stamps_drift=False), 10.0)
    # the true DAC clock runs 150 ppm fast: 10 s of blocks take 1.5 ms less
    span = shown.dac_true[-1] - shown.dac_true[0]
    nominal = (len(shown.dac_true) - 1) * hr.OUT_BLOCK / hr.DEVICE_RATE
    assert (nominal - span) * 1000 == pytest.approx(nominal * 0.15, rel=0.01)
    # stamps that follow the nominal rate drift away from the truth by as much
    gap = (hidden.dac_seen - (hidden.dac_true - BASE.hidden_ms / 1000)) * 1000
    assert gap[-200:].mean() - gap[:200].mean() == pytest.approx(nominal * 0.15, abs=0.3)


def test_speaking_is_when_an_answer_plays_not_between_answers():
    sc = hr.scene(BASE, 12.0, answers=[(0.0, 4.0), (7.0, 4.0)])
    start = sc.dac_true[0]
    assert hr.speaking_at(sc, int((start + 2.0) * hr.RATE))
    assert not hr.speaking_at(sc, int((start + 5.5) * hr.RATE))
    assert hr.speaking_at(sc, int((start + 8.0) * hr.RATE))


def test_soft_clipping_keeps_the_peak_and_flattens_the_top():
    x = np.sin(np.linspace(0, 20, 4000)).astype(np.float32) * 0.5
    y = hr.soft_clip(x, 1.0)
    assert np.max(np.abs(y)) == pytest.approx(0.5, rel=1e-3)
    assert np.mean(np.abs(y)) > np.mean(np.abs(x)) * 1.2  # the waveform is squarer
    assert np.array_equal(hr.soft_clip(x, 0.0), x)

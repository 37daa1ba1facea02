"""A perfect echo reference for the hard rooms (tests/support/hard_room.py): what the speaker
truly emitted, on the microphone's clock, leading its echo by the reference's ``lead_ms`` from
the first sample on. It stands where :class:`talkie.audio.reference.EchoReference` does, so a
bench can tell what the daemon's reference costs the canceller (``tests/bench/reference_oracle.py``,
``tests/bench/barge_in_room.py --reference oracle``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from tests.support import corpus as c
from tests.support import hard_room as hr


class OracleReference:
    """The true emitted sound, ``lead_ms`` ahead of the microphone sample it goes with."""

    def __init__(self, emitted: np.ndarray, lead_ms: float) -> None:
        self.signal = c.to_s16(emitted)
        self.lead = round(lead_ms * hr.RATE / 1000)
        self.lead_ms = lead_ms
        self.aligned = self.found = True
        self.extra_delay_s, self.resyncs, self._m = 0.0, 0, 0

    def take(self, n: int, adc_time: float) -> np.ndarray:
        start = self._m + self.lead
        self._m += n
        block = self.signal[start:start + n]
        return np.pad(block, (0, n - len(block)))

    def skip(self, n: int) -> None:
        self._m += n

    def microphone(self, mic: np.ndarray) -> None:
        pass


def installer(sc: hr.Scene, cond: hr.Condition):
    """An ``on_chain`` for :func:`hard_room.run_chain` that puts the oracle in the chain's
    reference's place: the DAC's samples on the drifting clock, re-timed onto the microphone's,
    before the speaker's clipping (which is the room's, not the reference's)."""
    played = sc.played.astype(np.float32) / 32767
    emitted = hr._emitted(played, sc.dac_true, replace(cond, clip=0.0), len(sc.mic))

    def install(chain) -> None:
        chain.reference = OracleReference(emitted, chain.reference.lead_ms)

    return install

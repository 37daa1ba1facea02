"""The ring of a timer or an alarm: the chime (:mod:`talkie.audio.chime`) through the speaker,
again and again while the machine is ``ringing``, at ``[tools] alarm_volume`` whatever the
speaker's volume or mute.

Between two chimes the speaker may say what rings (the model's announcement, played as it comes):
a chime starts only when the speaker has nothing else left to play, so the two never overlap.
Nothing runs while nothing rings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from talkie.config.settings import OUTPUT_RATE
from talkie.shell import ports

#: How often, while ringing, the speaker is looked at for the next chime to start.
LOOK_S = 0.25


class Ringer:
    """Rings through whatever speaker ``playback()`` gives (the devices may be rebuilt)."""

    def __init__(
        self,
        playback: Callable[[], ports.Playback | None],
        volume: float,
        *,
        call_later: Callable[[float, Callable[[], None]], asyncio.TimerHandle] | None = None,
    ) -> None:
        self.playback = playback
        self.volume = volume
        self.chimes = 0
        self._call_later = call_later
        self._handle: asyncio.TimerHandle | None = None
        self._pcm = b""

    @property
    def ringing(self) -> bool:
        return self._handle is not None

    def ring(self, on: bool) -> None:
        """Start or stop ringing (the machine's ``Ring`` effect; its ``FlushPlayback`` silences
        what is already queued)."""
        if not on:
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None
            return
        if self._handle is None:
            from talkie.audio.chime import chime

            self._pcm = chime(self.volume, OUTPUT_RATE)
            self._tick()

    def _tick(self) -> None:
        speaker = self.playback()
        if speaker is not None and speaker.buffered_samples == 0:
            try:
                speaker.play(self._pcm, gain=1.0)
                self.chimes += 1
            except Exception:  # noqa: BLE001 - no speaker: the LED still shows the ring
                pass
        later = self._call_later or asyncio.get_running_loop().call_later
        self._handle = later(LOOK_S, self._tick)

"""When is the user speaking? webrtcvad on 10 ms frames, gated and smoothed.

webrtcvad alone calls a fan, a door or the device's own speaker "speech". :class:`SpeechGate`
counts a frame as the user's voice only when all of these hold:

* webrtcvad (``aggressiveness`` 0-3) says speech, on the echo-cancelled signal;
* it is louder than ``min_level_db`` dBFS (``far_min_level_db`` while the speaker plays: a person
  talking over a loudspeaker speaks up) and ``snr_db`` above the tracked noise floor. While an
  answer is under way (``busy``) the louder floor holds in its pauses too, when the reference has
  fallen silent: a TV or people across the room, quieter than that, do not cut the answer off
  between two of its sentences;
* while the speaker plays, the **double-talk guard**: the frame is ``guard_db`` louder than the
  residual echo predicted from the reference's recent level (``ref_db``) and the residual gain
  learnt on the frames that were not the user (reference -> what is left after echo control), one
  while the reference sounds and one for its tails (the room's late reverberation). That
  gain starts at ``start_residual_db`` (0 dB: as if nothing were cancelled), rises by up to
  ``RISE_DB`` and falls by ``learn_db`` a frame, never below ``residual_floor_db`` (learnt only
  while the reference is loud), so a canceller that has not converged yet, or an echo path that just
  changed, makes the gate deaf to speech over the speaker rather than fooled by it; and echo control
  took at most ``removed_db`` off the frame (a frame that is mostly the user loses little to it; a
  burst of residual echo, as when a new voice excites bands the canceller has not learnt yet, has
  lost more); and what the canceller left is not still the echo (its ``coherence`` with the
  reference below ``COHERENT``: :mod:`talkie.audio.coherence`).

Hysteresis: speech **starts** when ``start_frames`` of the last ``window_frames`` frames are voiced
and **ends** after ``end_ms`` without a voiced frame.

**Evidence over time**, while the speaker plays: a user quieter than the guard asks may still be
steadily over the residual echo, where a burst of what the canceller left lasts a few frames. A
frame that passes every test but the guard adds how far it lies over the predicted residual beyond
``EVIDENCE_DB``, at most ``EVIDENCE_CAP_DB`` (a frame nearer takes off up to ``EVIDENCE_MISS_DB``,
one that fails another test that much), and the sum, never below 0, reaching ``EVIDENCE_START``
starts speech too: at least nine frames, none of them alone deciding. A frame that adds to it is
not learnt as residual echo (it is likely the user's).

Where it began: over a loud answer the guard may hold a voice back for a while (until its loudest
syllables clear it), so at a start the gate also says how many frames ago the voice began
(``onset_frames``): the run of frames, with gaps of at most ``ONSET_GAP`` frames, that would have
been voiced with the guard ``ONSET_DB`` lower (the level and noise criteria unchanged), at most
``ONSET_MAX`` frames back. The pre-roll reaches back that far, so a late detection still sends the
user's first words. Pure computation on arrays (no I/O); one
``webrtcvad.Vad`` per gate.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import numpy as np

FRAME_MS = 10
START, END = 1, -1
#: A reference quieter than this (dBFS) means the speaker is silent.
FAR_DB = -65.0
#: The residual echo is learnt only while the reference is louder than this (not in pauses).
LEARN_DB = -45.0
#: Frames quieter than this are gated off, not the room's noise.
SILENCE_DB = -85.0
#: How fast the learnt residual gain may rise, in dB a frame.
RISE_DB = 0.3
#: A reference this far below its envelope is in a tail (a pause, the end of a word).
TAIL_DB = 6.0
#: The onset of a voice: frames that clear the guard lowered by this much (dB) ...
ONSET_DB = 16.0
#: ... with gaps of at most this many frames between them, at most this many frames back.
ONSET_GAP = 30
ONSET_MAX = 100
#: What the canceller left, this coherent with the reference (0-1), is the echo's, not a voice.
COHERENT = 0.6
#: Evidence over time (see above): a frame this far (dB) over the predicted residual adds what it
#: lies beyond it, at most ``EVIDENCE_CAP_DB``; nearer, or failing another test, it takes off up to
#: ``EVIDENCE_MISS_DB``; speech starts when the sum reaches ``EVIDENCE_START`` (dB x frames).
EVIDENCE_DB = 14.0
EVIDENCE_CAP_DB = 4.0
EVIDENCE_MISS_DB = 6.0
EVIDENCE_START = 34.0


def level_db(frame: np.ndarray) -> float:
    """RMS of an int16 frame in dBFS (-120 for digital silence)."""
    x = frame.astype(np.float32)
    power = float(np.dot(x, x)) / max(1, len(x))
    return 10.0 * math.log10(power / (32768.0 * 32768.0)) if power > 0.0 else -120.0


class SpeechGate:
    """Feed it 10 ms frames; it says when the user's speech starts and ends."""

    def __init__(
        self,
        rate: int = 16000,
        *,
        aggressiveness: int = 3,
        start_frames: int = 3,
        window_frames: int = 4,
        end_ms: int = 700,
        min_level_db: float = -55.0,
        snr_db: float = 9.0,
        guard_db: float = 25.0,
        start_residual_db: float = 0.0,
        learn_db: float = 0.2,
        residual_floor_db: float = -30.0,
        far_min_level_db: float = -42.0,
        removed_db: float = 6.0,
    ) -> None:
        import webrtcvad

        if not 1 <= start_frames <= window_frames:
            raise ValueError("need 1 <= start_frames <= window_frames")
        self.rate = int(rate)
        self.frame = self.rate * FRAME_MS // 1000
        self._vad = webrtcvad.Vad(int(aggressiveness))
        self.start_frames = int(start_frames)
        self.end_frames = max(1, int(end_ms) // FRAME_MS)
        self.min_level_db = float(min_level_db)
        self.snr_db = float(snr_db)
        self.learn_db = float(learn_db)
        self.guard_db = float(guard_db)
        self.residual_floor_db = float(residual_floor_db)
        self.far_min_level_db = float(far_min_level_db)
        self.removed_db = float(removed_db)
        self._window: deque[bool] = deque(maxlen=int(window_frames))
        self.speaking = False
        self.noise_db = -70.0
        #: Residual echo relative to the reference's envelope (dB), learnt while the speaker
        #: plays: while the reference sounds, and in its tails (``tail_gain_db``: the reference
        #: ``TAIL_DB`` below its envelope, what is heard is mostly the room's late reverberation,
        #: which the canceller takes out much less of).
        self.residual_gain_db = float(start_residual_db)
        self.tail_gain_db = float(start_residual_db)
        self._silent_frames = 0
        #: Frames since the last one that would have been voiced under the lowered guard, and the
        #: length in frames of the run that ended in it (see ``onset_frames``).
        self._since_onset_voice = ONSET_GAP + 1
        self._onset_run = 0
        #: At a START: how many frames back (the START's own included) the voice began.
        self.onset_frames = 0
        #: Frames fed so far.
        self.frames = 0
        #: The evidence summed while the speaker plays (0 while it is silent).
        self.evidence = 0.0

    def reset(self) -> None:
        """Forget the current decision (not the noise floor or residual echo learnt)."""
        self._window.clear()
        self.speaking = False
        self._silent_frames = 0
        self._since_onset_voice = ONSET_GAP + 1
        self._onset_run = 0
        self.evidence = 0.0

    def voiced_frame(
        self,
        out: np.ndarray,
        ref_db: float = -120.0,
        mic_db: float = -120.0,
        busy: bool = False,
        ref_now_db: float | None = None,
        coherence: Callable[[], float] | None = None,
    ) -> bool:
        """Is this (echo-cancelled) frame the user's voice? ``ref_db``: the reference's level over
        the last echo tail (-120 while the speaker is silent); ``busy``: an answer is under way
        (its pauses included); ``ref_now_db``: the reference's level in this frame (None: as
        ``ref_db``); ``coherence``: measures what the canceller left against the reference
        (asked only for a frame that would otherwise be voiced). Updates the trackers."""
        tail = ref_now_db is not None and ref_now_db < ref_db - TAIL_DB
        gain = self.tail_gain_db if tail else self.residual_gain_db
        out_db = level_db(out)
        if self.frames <= 1 and out_db > SILENCE_DB:
            self.noise_db = out_db  # the first sound heard is the room's
        need = max(self.min_level_db, self.noise_db + self.snr_db)
        if busy:  # an answer's pause: a barge-in, not the room, may start a turn
            need = max(need, self.far_min_level_db)
        lenient = base = need
        playing = ref_db > FAR_DB
        if playing:
            guard = ref_db + gain + self.guard_db
            lenient = max(need, guard - ONSET_DB)
            base = max(need, self.far_min_level_db, mic_db - self.removed_db)  # all but the guard
            need = max(base, guard)
        # webrtcvad adapts to what it hears: it sees every frame, not only the loud ones
        said = self._vad.is_speech(out.tobytes(), self.rate)
        if said and out_db >= lenient and playing and coherence is not None:
            said = coherence() <= COHERENT  # else what the canceller left is still the echo
        speech = out_db >= need and said
        # this frame's evidence: how far it lies over the predicted residual, beyond EVIDENCE_DB
        share = 0.0
        if playing:
            over = out_db - (ref_db + gain) - EVIDENCE_DB if said and out_db >= base else -99.0
            share = max(-EVIDENCE_MISS_DB, min(EVIDENCE_CAP_DB, over))
        self.evidence = max(0.0, self.evidence + share) if playing else 0.0
        self._track_onset(said and out_db >= lenient)
        if not speech and share <= 0.0:
            if ref_db > LEARN_DB:  # what the echo leaves: learnt while the speaker is loud
                # (above the noise floor: noise in a pause is not residual echo)
                excess = 10 ** (out_db / 10) - 2 * 10 ** (self.noise_db / 10)
                seen = (10 * math.log10(excess) if excess > 1e-12 else -120.0) - ref_db
                if seen > gain:  # up quickly, not at once (a missed word)
                    gain = min(seen, gain + RISE_DB)
                else:  # but never trusted below the floor: cancellation is not that steady
                    gain = max(seen, self.residual_floor_db, gain - self.learn_db)
                if tail:
                    self.tail_gain_db = gain
                else:
                    self.residual_gain_db = gain
            # noise floor (a minimum follower): falls fast, rises slowly; gated-off frames
            # (digital silence from the echo suppressor) say nothing about the room's noise
            if out_db > SILENCE_DB:
                step = -1.0 if out_db < self.noise_db else 0.05
                self.noise_db = (
                    max(out_db, self.noise_db + step)
                    if step < 0
                    else min(out_db, self.noise_db + step)
                )
        return speech

    def _track_onset(self, voice: bool) -> None:
        """Extend or restart the run of frames a voice may have begun with."""
        if voice:
            gap = self._since_onset_voice
            self._onset_run = 1 if gap > ONSET_GAP else min(ONSET_MAX, self._onset_run + gap + 1)
            self._since_onset_voice = 0
        else:
            self._since_onset_voice += 1

    def feed(
        self,
        out: np.ndarray,
        ref_db: float = -120.0,
        mic_db: float = -120.0,
        busy: bool = False,
        ref_now_db: float | None = None,
        coherence: Callable[[], float] | None = None,
    ) -> int:
        """One 10 ms frame; returns START, END or 0."""
        self.frames += 1
        voiced = self.voiced_frame(out, ref_db, mic_db, busy, ref_now_db, coherence)
        self._window.append(voiced)
        if not self.speaking:
            if sum(self._window) >= self.start_frames or self.evidence >= EVIDENCE_START:
                # voiced frames: the run ends in this one (at least the window's frames)
                self.onset_frames = max(self._onset_run, len(self._window))
                self.speaking = True
                self._silent_frames = 0
                self._window.clear()
                self.evidence = 0.0
                return START
            return 0
        self._silent_frames = 0 if voiced else self._silent_frames + 1
        if self._silent_frames >= self.end_frames:
            self.speaking = False
            self._window.clear()
            return END
        return 0

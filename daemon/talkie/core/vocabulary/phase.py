"""What the device is doing, as the user sees it: the phases (the LED shows them)."""

from __future__ import annotations

import enum


class Phase(enum.Enum):
    """What the device is doing, as the user sees it (and the LED shows it)."""

    IDLE = "idle"
    CONNECTING = "connecting"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    RECONNECTING = "reconnecting"
    ERROR = "error"
    RINGING = "ringing"

    @property
    def meaning(self) -> str:
        """What the phase means to the user, in words (the README's states table)."""
        return _MEANINGS[self]


_MEANINGS = {
    Phase.IDLE: "ready; a session may be open (warm) or not",
    Phase.CONNECTING: "pressed with no session: audio is kept until it opens",
    Phase.LISTENING: "the user's turn is streaming",
    Phase.THINKING: "turn ended, waiting for the answer",
    Phase.SPEAKING: "the answer is playing; a press or the user's voice barges in",
    Phase.RECONNECTING: "the link dropped mid-turn or could not be opened; retrying with back-off",
    Phase.ERROR: "needs a person: rejected key, unknown model, no microphone",
    Phase.RINGING: "a timer or alarm rings: a press, `talkie ctl stop` or your voice silences it",
}

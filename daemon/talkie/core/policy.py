"""The rules the machine is configured with (:class:`Policy`).

The settings' keys (``[session]``, ``[vision] mode``, ``[audio] barge_in``) have their defaults in
one place, the settings themselves (:mod:`talkie.config.schema`); the shell derives a policy from
them (:func:`talkie.shell.policy.policy_from`). The machine adds a few fixed rules of its own, with
their values here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Policy:
    """The supervisor's rules: what the settings say, and a few fixed ones."""

    #: Close a warm session after this long without a conversation (0: keep it open).
    idle_disconnect_s: float
    #: Open a session at start and keep one open (reconnecting in the background).
    connect_at_start: bool
    #: Holding the button this long starts a fresh conversation (0: off).
    reset_hold_s: float
    #: After an error only a person can fix, try again this often (a press tries at once).
    error_retry_s: float
    #: When the camera is sampled: "off", "while_talking", "conversation" or "always".
    vision_mode: str
    #: The user's voice (local VAD) stops the answer and opens a turn (the button always does).
    barge_in: bool
    #: Give up on an answer that has not begun this long after the turn ended (0: wait forever).
    answer_timeout_s: float
    #: A ring nobody silences stops after this long.
    ring_s: float
    backoff_first_s: float = 0.5
    backoff_cap_s: float = 30.0
    #: Consecutive failed connects after which a turn the user already released is given up
    #: (about 30 s of back-off: as long as the uplink buffer keeps audio by default).
    give_up_after: int = 6
    #: A session that stayed up this long resets the back-off.
    stable_s: float = 60.0
    #: goAway with this little time left: hand over at once, not at the next safe point.
    handover_now_s: float = 10.0

"""The machine's rules from the settings: the one place that reads ``[session]``, ``[vision] mode``,
``[audio] barge_in`` and ``[tools] alarm_ring_s`` for the state machine (whose
:class:`~talkie.core.policy.Policy` has no defaults of its own for them)."""

from __future__ import annotations

from talkie.config import Settings
from talkie.core.policy import Policy


def policy_from(settings: Settings) -> Policy:
    """The supervisor's rules from the settings."""
    session = settings.session
    return Policy(
        idle_disconnect_s=session.idle_disconnect_s,
        connect_at_start=session.connect_at_start,
        reset_hold_s=session.reset_hold_s,
        error_retry_s=session.error_retry_s,
        answer_timeout_s=session.answer_timeout_s,
        vision_mode=settings.vision.mode,
        barge_in=settings.audio.barge_in,
        ring_s=settings.tools.alarm_ring_s,
    )

"""The machine's named timers: ``StartTimer`` and ``CancelTimer`` effects in, ``Timer`` events out.

Time is the shell's business: the timers run on a clock given at start-up (the loop's
``call_later``, or a test's virtual clock), so the machine stays pure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from talkie.core import machine as m
from talkie.shell.ports import CallLater, TimerHandle


class Timers:
    """Pending timers by name; starting one replaces a pending timer of that name."""

    def __init__(self, emit: Callable[[m.Event], None], call_later: CallLater | None = None):
        self._emit = emit
        self._call_later = call_later
        self._pending: dict[str, TimerHandle] = {}

    @property
    def names(self) -> frozenset[str]:
        """The names of the timers now pending."""
        return frozenset(self._pending)

    def start(self, name: str, delay_s: float, gen: int = 0) -> None:
        self.cancel(name)
        call_later = self._call_later or asyncio.get_running_loop().call_later

        def fire() -> None:
            self._pending.pop(name, None)
            self._emit(m.Timer(name, gen))

        self._pending[name] = call_later(delay_s, fire)

    def cancel(self, name: str) -> None:
        handle = self._pending.pop(name, None)
        if handle is not None:
            handle.cancel()

    def cancel_all(self) -> None:
        for name in list(self._pending):
            self.cancel(name)

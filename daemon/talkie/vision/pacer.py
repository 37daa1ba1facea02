"""A fixed-rate tick source that neither drifts nor bursts.

Tick ``k`` is due at ``t0 + k / fps``, computed from the start every time (never by adding up
periods), so a thousand ticks later the schedule is where it was planned. A consumer that comes
back late gets the newest tick that is already due, at once, and the ticks it slept through are
counted in ``skipped`` and never delivered: a slow encode or a slow link costs frames, never a
backlog of stale ones.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncGenerator, Awaitable, Callable

FPS_MIN = 0.2
FPS_MAX = 5.0
FPS_DEFAULT = 2.0

_EPS = 1e-9  # tolerance in periods, for schedules whose period has no exact float


class Pacer:
    """Ticks at ``fps`` (0.2 to 5 per second) on ``clock``, waiting with ``sleep``.

    ``ticks()`` starts a schedule at the current time (the first tick is immediate) and yields
    each tick's scheduled time. Each call of ``ticks()`` starts a new schedule; ``skipped`` and
    ``delivered`` add up over all of them.
    """

    def __init__(
        self,
        fps: float = FPS_DEFAULT,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if not FPS_MIN <= fps <= FPS_MAX:
            raise ValueError(f"fps out of range; found {fps}; allowed {FPS_MIN} to {FPS_MAX}")
        self.fps = fps
        self.period = 1.0 / fps
        self.clock = clock
        self.sleep = sleep
        self.skipped = 0
        self.delivered = 0

    async def ticks(self) -> AsyncGenerator[float, None]:
        """Yield tick times ``t0 + k / fps``: on time if the consumer keeps up, else the newest
        one already due (the missed ones are skipped and counted)."""
        t0 = self.clock()
        k = 0
        while True:
            due = t0 + k * self.period
            now = self.clock()
            late = (now - due) / self.period
            if late >= 1.0 - _EPS:
                missed = math.floor(late + _EPS)
                k += missed
                self.skipped += missed
                due = t0 + k * self.period
            while now < due:
                await self.sleep(due - now)
                now = self.clock()
            self.delivered += 1
            yield due
            k += 1

"""``talkie check``: the API key, checked against the Live endpoint with the daemon's own link."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from talkie.provision.checks.report import Report

API_GRACE_S = 5.0  # beyond [live] connect_timeout_s


class _Probe:
    """A LiveLink listener that only notes whether the session opened or how it was lost."""

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.opened_at: float | None = None
        self.reason = ""
        self.fatal = False

    def opened(self) -> None:
        self.opened_at = time.monotonic()
        self.done.set()

    def lost(self, reason: str, fatal: bool) -> None:
        if not self.done.is_set():
            self.reason, self.fatal = reason, fatal
            self.done.set()

    def audio(self, pcm: bytes) -> None: ...
    def interrupted(self) -> None: ...
    def turn_complete(self) -> None: ...
    def heard(self, text: str) -> None: ...
    def said(self, text: str) -> None: ...
    def go_away(self, seconds: float) -> None: ...
    def tool_call(self, call_id: str, name: str, args: str) -> None: ...
    def tools_cancelled(self, call_ids: tuple[str, ...]) -> None: ...


async def check_api(report: Report, live: Any, *, env: Any = None) -> None:
    """Open a real Live session with the configured key and endpoint, then close it."""
    from talkie.config.credentials import KeyProblem, load_api_key
    from talkie.core.outbox import Outbox
    from talkie.live.link import LiveLink

    key = load_api_key(live.api_key_file, env=env)
    if isinstance(key, KeyProblem):
        report.fail(f"API key: {key.message}")
        return
    report.hide(key.redact)
    probe = _Probe()
    link = LiveLink(live, key, Outbox(1 << 16), probe)
    await asyncio.to_thread(link.prepare)  # the SDK import is not part of the round trip
    started = time.monotonic()
    task = asyncio.create_task(link.run())
    try:
        async with asyncio.timeout(live.connect_timeout_s + API_GRACE_S):
            await probe.done.wait()
    except TimeoutError:
        probe.reason = f"no answer within {live.connect_timeout_s + API_GRACE_S:g} s"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    where = live.endpoint or "the Live endpoint"
    if probe.opened_at is not None:
        ms = round((probe.opened_at - started) * 1000)
        report.ok(f"API key (from {key.source}) accepted by {where} ({live.model}, {ms} ms)")
    elif probe.reason.startswith("API key "):  # "API key rejected: put a valid key in ..."
        report.fail(f"API key (from {key.source}): {probe.reason[len('API key ') :]}")
    else:
        fix = (
            ""
            if probe.fatal
            else (
                ": check the network connection"
                if not live.endpoint
                else ": check [live] endpoint and that the server is running"
            )
        )
        report.fail(f"Live session ({live.model} at {where}): {probe.reason}{fix}")


# ------------------------------------------------------------------ all of it

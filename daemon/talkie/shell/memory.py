"""What the daemon gives back once it is loaded: the memory of a small device.

Measured with ``tests/bench/idle.py`` and the breakdown in the README's "Performance": most of
the daemon's resident set is code and data that live as long as it does (the Live SDK's pydantic
models, numpy, PortAudio); what is left to give back after start-up is what loading freed and what
only the device scan used.
"""

from __future__ import annotations

import asyncio
import gc


def settle() -> None:
    """What is loaded so far (the SDK, pydantic's schemas, numpy: hundreds of thousands of objects
    that live as long as the daemon) leaves the garbage collector's generations: a full collection
    then walks what is new only, a pause of a few ms instead of a tenth of a second in the loop
    (and the audio it serves). The ALSA plugins only PortAudio's device scan used are unloaded
    (:func:`talkie.audio.devices.release_alsa_plugins`). Then what loading freed goes back to the
    system (glibc keeps it otherwise: several MB of a small device's memory)."""
    from talkie.audio.devices import release_alsa_plugins

    gc.collect()
    gc.freeze()
    release_alsa_plugins()
    trim()


def trim() -> None:
    """Give the C heap's free memory back to the system (glibc's ``malloc_trim``)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # another C library: nothing to give back this way
        pass


class Trimmer:
    """:func:`trim` in a worker thread each time the daemon goes idle (a turn and its answer
    done): what the turn's messages and buffers freed inside the C heap goes back, and the loop
    does not wait for it. One at a time; an idle while one runs asks for nothing more."""

    def __init__(self) -> None:
        self._running: asyncio.Future[None] | None = None

    def soon(self) -> None:
        if self._running is None or self._running.done():
            self._running = asyncio.get_running_loop().run_in_executor(None, trim)

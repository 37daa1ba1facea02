"""Keyboard push-to-talk and a terminal status "LED", for machines without GPIO.

KeyboardButton reads a terminal in cbreak mode through ``loop.add_reader``: ENTER toggles
(press, then release on the next ENTER); SPACE works as hold-to-talk. Terminals send no
key-up events, only autorepeat, so the first SPACE presses and the button is released when
no further SPACE arrives within a timeout: a long one until autorepeat has started (its
first delay is ~250-600 ms), a short one once repeats flow. All timing uses the loop's
clock (``loop.call_later``). Ctrl-C is left to the terminal (SIGINT): ISIG stays on.

TerminalLed draws the state as one status line ("● listening", coloured from the pattern)
on a terminal, animating blink/pulse with ``loop.call_later``; on a non-terminal stream it
prints a plain "talkie: listening" line on each change of state. Log lines on the same terminal
keep it beneath them (:func:`talkie.system.logs.keep_status_line`, wired by the shell).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from talkie.panel.leds import Look, look_of

log = logging.getLogger(__name__)

#: The everyday controls' keys: volume up and down, the microphone off or on again.
CONTROL_KEYS = (b"+", b"=", b"-", b"m", b"M")
FIRST_RELEASE_S = 0.7  # SPACE released if no autorepeat starts within this
REPEAT_RELEASE_S = 0.25  # ... or if autorepeat stops for this long
_MIN_FRAME_S = 0.1  # fastest terminal animation step


def _fileno(stream: Any) -> int:
    return stream if isinstance(stream, int) else stream.fileno()


def is_tty(stream: Any) -> bool:
    """True if `stream` (file object or fd) is a terminal; False if it cannot be asked."""
    try:
        if isinstance(stream, int):
            return os.isatty(stream)
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False


class KeyboardButton:
    """Push-to-talk on a terminal: hold SPACE, or press ENTER to start and again to stop.

    `stdin` is a file object or fd (default sys.stdin). A terminal is switched to cbreak
    mode (no echo, no line buffering) and restored on close(), at interpreter exit, and if
    the constructor fails. Callbacks run in the loop thread (from the reader callback or a
    loop timer), given the time (``time.monotonic()``), as the GPIO button's are. feed() is
    the byte-level logic, public so tests can drive it directly.
    """

    def __init__(
        self,
        stdin: Any = None,
        *,
        loop: asyncio.AbstractEventLoop,
        on_press: Callable[[float], Any],
        on_release: Callable[[float], Any],
        on_key: Callable[[str], Any] | None = None,
        first_release_s: float = FIRST_RELEASE_S,
        repeat_release_s: float = REPEAT_RELEASE_S,
    ) -> None:
        self._fd = _fileno(sys.stdin if stdin is None else stdin)
        self._loop = loop
        self._on_press, self._on_release = on_press, on_release
        self._on_key = on_key
        self.first_release_s = first_release_s
        self.repeat_release_s = repeat_release_s
        self.mode: str | None = None  # None (up), "space" (held) or "enter" (toggled on)
        self._release_timer: asyncio.TimerHandle | None = None
        self._prev = b""
        self._saved_mode: list | None = None
        self._reading = False
        self._closed = False
        if os.isatty(self._fd):
            import termios
            import tty

            self._saved_mode = termios.tcgetattr(self._fd)
            atexit.register(self._restore)
            try:
                tty.setcbreak(self._fd, termios.TCSANOW)
            except BaseException:
                self._restore()
                raise
        try:
            loop.add_reader(self._fd, self._on_readable)
            self._reading = True
        except BaseException:
            self._restore()
            raise

    @property
    def is_pressed(self) -> bool:
        """True while talking (SPACE held or toggled on by ENTER)."""
        return self.mode is not None

    def feed(self, data: bytes) -> None:
        """Handle bytes read from the terminal."""
        for i in range(len(data)):
            byte = data[i : i + 1]
            if byte == b"\n" and self._prev == b"\r":
                pass  # CR LF is one ENTER
            elif byte in (b"\r", b"\n"):
                self._enter()
            elif byte == b" ":
                self._space()
            elif byte in CONTROL_KEYS and self._on_key is not None:
                self._on_key(byte.decode())
            self._prev = byte

    def close(self) -> None:
        """Stop reading, cancel timers and restore the terminal (no on_release). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop_reading()
        self._cancel_timers()
        self.mode = None
        self._restore()

    # -- internals -------------------------------------------------------------------
    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, 1024)
        except BlockingIOError:
            return
        except OSError as exc:  # EIO: the terminal went away
            log.debug("keyboard: read failed: %s", exc)
            data = b""
        if not data:
            self._stop_reading()
            if self.mode is not None:
                self._release()
            return
        self.feed(data)

    def _enter(self) -> None:
        if self.mode is None:
            self._press("enter")
        else:
            self._release()

    def _space(self) -> None:
        if self.mode is None:
            self._press("space")
            self._arm_release(self.first_release_s)
        elif self.mode == "space":
            self._arm_release(self.repeat_release_s)

    def _arm_release(self, delay: float) -> None:
        if self._release_timer is not None:
            self._release_timer.cancel()
        self._release_timer = self._loop.call_later(delay, self._release)

    def _press(self, mode: str) -> None:
        self.mode = mode
        self._call(self._on_press)

    def _release(self) -> None:
        self._cancel_timers()
        if self.mode is None:
            return
        self.mode = None
        self._call(self._on_release)

    def _cancel_timers(self) -> None:
        if self._release_timer is not None:
            self._release_timer.cancel()
        self._release_timer = None

    def _call(self, callback: Callable[[float], Any]) -> None:
        try:
            callback(time.monotonic())  # in the loop's thread: the key was read just now
        except Exception:
            log.exception("keyboard: push-to-talk callback failed")

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            try:
                self._loop.remove_reader(self._fd)
            except Exception as exc:  # noqa: BLE001 - the loop may already be closed
                log.debug("keyboard: remove_reader failed: %s", exc)

    def _restore(self) -> None:
        saved, self._saved_mode = self._saved_mode, None
        if saved is None:
            return
        atexit.unregister(self._restore)
        import termios

        try:
            termios.tcsetattr(self._fd, termios.TCSADRAIN, saved)
        except (termios.error, OSError) as exc:
            log.debug("keyboard: cannot restore the terminal: %s", exc)


# ANSI SGR colour of a pattern: 8 basic colours from the thresholded RGB components.
def ansi_colour(look: Look) -> str:
    """SGR sequence for a pattern's colour: bright for brightness >= 0.5, dim below."""
    r, g, b = (c >= 0.5 for c in look.color)
    index = int(r) + 2 * int(g) + 4 * int(b)
    if index == 0:
        index = 7  # black would be invisible: draw it white
    if look.brightness >= 0.5:
        return f"\x1b[{90 + index}m"
    return f"\x1b[2;{30 + index}m"


class TerminalLed:
    """The status "LED" drawn on a terminal line (default stream: sys.stderr).

    On a terminal: ``"\\r\\x1b[2K● listening\\r"`` coloured from the pattern; blink and
    pulse toggle the dot with loop timers. The cursor is left at column 0 and :meth:`drawn`
    says what the line shows, so a log handler on the same terminal can clear the line, write
    its own and draw this one again beneath it; it sets ``lock`` to its own, so that a redraw
    and a log line (from any thread) never cut into each other.
    On anything else: one plain "talkie: NAME" line per change of state, no animation.
    Showing the same (name, pattern) again does nothing. Methods run in the loop thread.
    """

    def __init__(self, stream: TextIO | None = None, *, loop: asyncio.AbstractEventLoop) -> None:
        self.stream = sys.stderr if stream is None else stream
        self._loop = loop
        self.tty = is_tty(self.stream)
        #: Taken around every write (a log handler on the same terminal shares its own).
        self.lock: Any = threading.RLock()
        self._line = ""
        self._current: tuple[str, Look] | None = None
        self._lit = True
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        encoding = getattr(self.stream, "encoding", None) or "utf-8"
        try:
            "●○".encode(encoding)
            self._glyphs = ("●", "○")
        except (UnicodeEncodeError, LookupError):
            self._glyphs = ("*", "o")

    def show(self, pattern: Any, name: str = "") -> None:
        """Show state `name` with `pattern` (LedPattern-like; None = off)."""
        look = look_of(pattern)
        if self._closed or self._current == (name, look):
            return
        previous, self._current = self._current, (name, look)
        if not self.tty:
            if previous is None or previous[0] != name:
                self._write(f"talkie: {name}\n")
            return
        self._cancel()
        self._lit = True
        self._draw()
        if look.kind in ("blink", "pulse") and look.brightness > 0:
            self._schedule()

    def drawn(self) -> str:
        """What the status line shows now, as written (escape codes and all; ends at column 0);
        "" when nothing is drawn (not a terminal, nothing shown yet, or closed)."""
        return "" if self._closed else self._line

    def close(self) -> None:
        """Stop animating and clear the status line. Idempotent."""
        if self._closed:
            return
        self._cancel()
        self._line = ""
        if self.tty and self._current is not None:
            self._write("\r\x1b[2K")
        self._closed = True

    def _draw(self) -> None:
        assert self._current is not None
        name, look = self._current
        on, off = self._glyphs
        if look.kind == "off" or look.brightness <= 0:
            text = f"{off} {name}"
        elif look.kind == "pulse" and not self._lit:
            text = f"\x1b[2m{ansi_colour(look)}{on}\x1b[0m {name}"
        elif not self._lit:
            text = f"\x1b[2m{off}\x1b[0m {name}"
        else:
            text = f"{ansi_colour(look)}{on}\x1b[0m {name}"
        self._line = f"\r\x1b[2K{text}\r"
        self._write(self._line)

    def _schedule(self) -> None:
        assert self._current is not None
        look = self._current[1]
        delay = look.on_s if self._lit else look.off_s
        self._timer = self._loop.call_later(max(_MIN_FRAME_S, delay), self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self._closed or self._current is None:
            return
        self._lit = not self._lit
        self._draw()
        if not self._closed:
            self._schedule()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _write(self, text: str) -> None:
        try:
            with self.lock:
                self.stream.write(text)
                self.stream.flush()
        except (OSError, ValueError) as exc:  # closed or broken stream: stop drawing
            self._cancel()
            self._closed = True
            log.debug("terminal LED: cannot write: %s", exc)

"""Panel room: GPIO button and LEDs on gpiozero's MockFactory, the fallbacks, the terminal LED."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import pty
import termios
import threading
import time
from dataclasses import replace

import pytest
from gpiozero import Button, Device
from gpiozero.pins.mock import MockFactory, MockPin, MockPWMPin

from talkie.config import DEFAULT_PATTERNS, LedPattern, PanelSettings
from talkie.panel import KEYBOARD_HINT, Panel, open_panel
from talkie.panel.leds import GpioLed, look_of, pwm_frames


# The panel reads its settings by attribute name; the tests use the real settings types.
Pat = LedPattern
PATTERNS = DEFAULT_PATTERNS
Cfg = PanelSettings


# -- helpers ---------------------------------------------------------------------------
def wait_until(predicate, timeout: float = 5.0) -> None:
    """Poll `predicate` (e.g. a pin's state history); the timeout only bounds a failure."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.002)


def levels(pin) -> list:
    return [s.state for s in pin.states]


class FakeTimer:
    def __init__(self, when, callback, args):
        self.when, self.callback, self.args, self.cancelled = when, callback, args, False

    def cancel(self):
        self.cancelled = True


class FakeLoop:
    """Just enough of an event loop for KeyboardButton / TerminalLed, on a manual clock."""

    def __init__(self):
        self.now = 0.0
        self.timers: list[FakeTimer] = []
        self.readers: dict = {}

    def time(self):
        return self.now

    def call_later(self, delay, callback, *args):
        timer = FakeTimer(self.now + delay, callback, args)
        self.timers.append(timer)
        return timer

    def add_reader(self, fd, callback, *args):
        self.readers[fd] = (callback, args)

    def remove_reader(self, fd):
        return self.readers.pop(fd, None) is not None

    def pending(self):
        return [t for t in self.timers if not t.cancelled]

    def advance(self, dt):
        end = self.now + dt
        while True:
            due = sorted((t for t in self.pending() if t.when <= end), key=lambda t: t.when)
            if not due:
                break
            timer = due[0]
            self.timers.remove(timer)
            self.now = timer.when
            timer.callback(*timer.args)
        self.now = end


class Events:
    """Callbacks that record (name, thread id) and resolve per-event futures."""

    def __init__(self, loop=None):
        self.loop = loop
        self.log: list[str] = []
        self.threads: list[int] = []
        self.futures: dict[str, asyncio.Future] = {}
        #: (name, the time the callback was given, time.monotonic() when it ran)
        self.times: list[tuple[str, float, float]] = []

    def future(self, name):
        self.futures[name] = self.loop.create_future()
        return self.futures[name]

    def _hit(self, name):
        self.log.append(name)
        self.threads.append(threading.get_ident())
        fut = self.futures.get(name)
        if fut is not None and not fut.done():
            fut.set_result(name)

    def press(self, at):
        self.times.append(("press", at, time.monotonic()))
        self._hit("press")

    def release(self, at):
        self.times.append(("release", at, time.monotonic()))
        self._hit("release")

    def kwargs(self):
        return dict(on_press=self.press, on_release=self.release)


@pytest.fixture
def factory():
    saved = Device.pin_factory
    mock = MockFactory(pin_class=MockPWMPin)
    Device.pin_factory = mock
    yield mock
    mock.reset()
    Device.pin_factory = saved


@pytest.fixture
def loop():
    """An event loop that is never run: for tests that only need one to pass in."""
    new = asyncio.new_event_loop()
    yield new
    new.close()


@pytest.fixture
def closing():
    things = []
    yield things.append
    for thing in reversed(things):
        thing.close()


@pytest.fixture
def tty_pair():
    master, slave = pty.openpty()
    yield master, slave
    for fd in (master, slave):
        try:
            os.close(fd)
        except OSError:
            pass


# -- GPIO button -----------------------------------------------------------------------
def test_button_events_reach_the_loop_thread_not_the_driving_thread(factory, closing):
    async def main():
        loop = asyncio.get_running_loop()
        ev = Events(loop)
        panel = open_panel(Cfg(led="none"), loop=loop, **ev.kwargs())
        closing(panel)
        assert panel.kind == "gpio" and panel.led is None
        pin = factory.pin(17)
        pressed = ev.future("press")
        pin.drive_low()  # when_pressed runs right here, synchronously ...
        assert ev.log == []  # ... but only schedules on_press into the loop
        await asyncio.wait_for(pressed, 5)
        assert panel.button.is_pressed
        released = ev.future("release")
        await loop.run_in_executor(None, pin.drive_high)  # from another thread
        await asyncio.wait_for(released, 5)
        assert ev.log == ["press", "release"]
        assert set(ev.threads) == {threading.get_ident()}

    asyncio.run(main())


def _gpio_button(closing):
    """A GPIO panel with the button only, in the running loop, and its recorded events."""
    ev = Events(asyncio.get_running_loop())
    panel = open_panel(Cfg(led="none"), loop=ev.loop, **ev.kwargs())
    closing(panel)
    return panel, ev


def test_a_press_seen_while_the_loop_is_busy_carries_the_time_of_its_edge(factory, closing):
    """The edge is stamped in the thread that saw it: the loop runs on_press late (busy), but
    what the press starts (the turn's audio) reaches back to the press itself."""
    async def main():
        _, ev = _gpio_button(closing)
        pressed = ev.future("press")
        before = time.monotonic()
        edge = threading.Thread(target=factory.pin(17).drive_low)  # gpiozero's thread
        edge.start()
        edge.join()  # (the loop waits here: it cannot run the delivery yet)
        after = time.monotonic()
        time.sleep(0.05)  # the loop busy: the delivery waits for it
        await asyncio.wait_for(pressed, 5)
        name, at, ran = ev.times[-1]
        assert name == "press" and before <= at <= after < ran
        released = ev.future("release")
        factory.pin(17).drive_high()  # in the loop's own thread: stamped as it happens
        stamped = time.monotonic()
        await asyncio.wait_for(released, 5)
        assert ev.times[-1][0] == "release" and after < ev.times[-1][1] <= stamped

    asyncio.run(main())


def test_a_long_hold_is_one_press_and_one_release(factory, closing):
    """Holding the button says nothing more than the press (the long hold that starts a fresh
    conversation is the machine's timer, [session] reset_hold_s)."""
    async def main():
        panel, ev = _gpio_button(closing)
        pressed = ev.future("press")
        factory.pin(17).drive_low()
        await asyncio.wait_for(pressed, 5)
        assert panel.button._device.when_held is None  # gpiozero's hold thread reports nothing
        released = ev.future("release")
        factory.pin(17).drive_high()
        await asyncio.wait_for(released, 5)
        assert ev.log == ["press", "release"]
        assert ev.threads[-1] == threading.get_ident()

    asyncio.run(main())


def test_button_pull_down_is_active_high(factory, closing):
    async def main():
        loop = asyncio.get_running_loop()
        ev = Events(loop)
        panel = open_panel(Cfg(led="none", button_pull_up=False, bounce_s=0.0), loop=loop,
                           **ev.kwargs())
        closing(panel)
        pressed = ev.future("press")
        factory.pin(17).drive_high()
        await asyncio.wait_for(pressed, 5)

    asyncio.run(main())


def test_close_releases_pins_and_drops_late_events(factory):
    async def main():
        loop = asyncio.get_running_loop()
        ev = Events(loop)
        cfg = Cfg(led="rgb", led_pins=(5, 6, 13))
        panel = open_panel(cfg, loop=loop, **ev.kwargs())
        pin = factory.pin(17)
        pin.drive_low()  # queued into the loop, but the panel closes first
        panel.close()
        panel.close()  # idempotent
        await asyncio.sleep(0)
        assert ev.log == []
        assert factory.pin(5).function == "input"
        again = open_panel(cfg, loop=loop, **ev.kwargs())
        assert again.kind == "gpio" and again.button is not None and again.led is not None
        again.close()
        Button(17, pin_factory=factory).close()  # nothing reserved any more

    asyncio.run(main())


def test_button_disabled_still_opens_the_led(factory, closing, loop):
    panel = open_panel(Cfg(button=False), loop=loop, on_press=print,
                       on_release=print)
    closing(panel)
    assert panel.kind == "gpio" and panel.button is None and panel.led.kind == "pwm"
    Button(17, pin_factory=factory).close()  # the button pin was never claimed


# -- GPIO LEDs -------------------------------------------------------------------------
def make_led(closing, kind, pins, **kw) -> GpioLed:
    led = GpioLed(kind, pins, **kw)
    closing(led)
    return led


def show(led, pattern):
    led.show(pattern)
    assert led.sync()


def test_plain_led_patterns(factory, closing):
    led = make_led(closing, "plain", (27,))
    pin = factory.pin(27)
    show(led, Pat("solid", brightness=0.2))
    assert pin.state == 1
    show(led, Pat("off"))
    assert pin.state == 0
    show(led, Pat("solid", brightness=0.0))  # plain LED: brightness > 0 means on
    assert pin.state == 0
    for kind in ("blink", "pulse"):  # a plain LED blinks for a pulse
        show(led, Pat("off"))
        pin.clear_states()
        show(led, Pat(kind, on_s=0.02, off_s=0.02))
        wait_until(lambda: levels(pin).count(True) >= 2 and levels(pin).count(False) >= 2)
        assert set(levels(pin)) == {False, True}


def test_plain_led_active_low(factory, closing):
    led = make_led(closing, "plain", (27,), active_high=False)
    show(led, Pat("solid"))
    assert factory.pin(27).state == 0
    show(led, Pat("off"))
    assert factory.pin(27).state == 1


def test_pwm_led_patterns(factory, closing):
    led = make_led(closing, "pwm", (27,))
    pin = factory.pin(27)
    assert led.kind == "pwm"
    show(led, Pat("solid", brightness=0.15))
    assert pin.state == pytest.approx(0.15)
    show(led, Pat("off"))
    assert pin.state == 0
    show(led, Pat("blink", on_s=0.02, off_s=0.02))  # full brightness: gpiozero's blink
    wait_until(lambda: levels(pin).count(1.0) >= 2 and levels(pin)[-3:].count(0.0) >= 1)
    assert set(levels(pin)) <= {0.0, 0.15, 1.0}
    show(led, Pat("off"))
    pin.clear_states()
    show(led, Pat("pulse", on_s=0.2, off_s=0.2))  # gpiozero's pulse: fades through 0..1
    wait_until(lambda: any(0.3 < v < 0.7 for v in levels(pin)) and 1.0 in levels(pin))


def test_pwm_led_scales_blink_and_pulse_by_brightness(factory, closing):
    led = make_led(closing, "pwm", (27,))
    pin = factory.pin(27)
    show(led, Pat("blink", brightness=0.5, on_s=0.02, off_s=0.02))
    wait_until(lambda: levels(pin).count(0.5) >= 2 and levels(pin).count(0.0) >= 2)
    assert max(levels(pin)) == 0.5
    show(led, Pat("off"))
    pin.clear_states()
    show(led, Pat("pulse", brightness=0.4, on_s=0.2, off_s=0.2))
    wait_until(lambda: len(set(levels(pin))) >= 5)
    assert max(levels(pin)) <= 0.4 + 1e-9
    assert any(0.1 < v < 0.3 for v in levels(pin))
    show(led, Pat("solid", brightness=0.3))  # the scaled animation stops
    assert pin.state == pytest.approx(0.3)


def test_rgb_led_patterns(factory, closing):
    led = make_led(closing, "rgb", (5, 6, 13))
    r, g, b = (factory.pin(n) for n in (5, 6, 13))
    show(led, Pat("solid", (0.0, 1.0, 1.0), brightness=0.5))
    assert (r.state, g.state, b.state) == (0, 0.5, 0.5)
    show(led, Pat("off", (1.0, 1.0, 1.0)))
    assert (r.state, g.state, b.state) == (0, 0, 0)
    for p in (r, g, b):
        p.clear_states()
    show(led, Pat("blink", (1.0, 0.0, 0.0), on_s=0.02, off_s=0.02))
    wait_until(lambda: levels(r).count(1.0) >= 2 and levels(r).count(0.0) >= 2)
    assert set(levels(g)) == {0.0} and set(levels(b)) == {0.0}
    show(led, Pat("off"))
    b.clear_states()
    show(led, Pat("pulse", (0.0, 0.0, 1.0), brightness=0.5, on_s=0.2, off_s=0.2))
    wait_until(lambda: 0.5 in levels(b) and any(0.1 < v < 0.4 for v in levels(b)))
    assert max(levels(b)) == pytest.approx(0.5)


def test_rgb_led_without_pwm_pins_is_digital(closing):
    mock = MockFactory(pin_class=MockPin)
    led = make_led(closing, "rgb", (5, 6, 13), pin_factory=mock)
    assert led.kind == "rgb-digital"
    show(led, Pat("solid", (1.0, 0.6, 0.0), brightness=0.2))
    assert [mock.pin(n).state for n in (5, 6, 13)] == [True, True, False]


def test_pwm_led_without_pwm_falls_back_to_plain(closing):
    mock = MockFactory(pin_class=MockPin)
    led = make_led(closing, "pwm", (27,), pin_factory=mock)
    assert led.kind == "plain"
    show(led, Pat("solid", brightness=0.15))
    assert mock.pin(27).state == 1


def test_showing_the_same_pattern_does_not_restart_it(factory, closing):
    led = make_led(closing, "plain", (27,))
    pin = factory.pin(27)
    slow = Pat("blink", on_s=0.02, off_s=10.0)
    show(led, slow)
    wait_until(lambda: levels(pin)[-2:] == [True, False])  # on, then 10 s off
    before = len(pin.states)
    show(led, slow)
    show(led, replace(slow))  # an equal pattern object
    assert len(pin.states) == before  # a restarted blink would turn the LED on again
    show(led, Pat("solid"))
    show(led, slow)  # a different pattern in between does restart it
    assert pin.state == 1


def test_panel_show_uses_the_settings_patterns(factory, closing, caplog, loop):
    panel = open_panel(Cfg(), loop=loop, on_press=print, on_release=print)
    closing(panel)
    pin = factory.pin(27)
    panel.show("idle")
    assert panel.led.sync()
    assert pin.state == pytest.approx(0.15)
    panel.show("listening")
    assert panel.led.sync() and pin.state == 1.0
    with caplog.at_level(logging.WARNING):
        panel.show("dancing")
    assert "dancing" in caplog.text
    assert panel.led.sync() and pin.state == 1.0


def test_led_none_opens_no_led(factory, closing, loop):
    panel = open_panel(Cfg(led="none"), loop=loop, on_press=print,
                       on_release=print)
    closing(panel)
    assert panel.kind == "gpio" and panel.led is None
    panel.show("idle")  # harmless


def test_pwm_frames_shape():
    frames = pwm_frames(0.5, 0.04, 0.04, fade=False)
    assert [next(frames) for _ in range(8)] == [0.5, 0.5, 0, 0] * 2
    pulse = pwm_frames(1.0, 0.08, 0.08, fade=True)
    assert [next(pulse) for _ in range(4)] == [0.0, 0.5, 1.0, 0.5]
    assert look_of(None).kind == "off"
    with pytest.raises(ValueError):
        look_of(Pat("strobe"))


# -- fallbacks -------------------------------------------------------------------------
@pytest.fixture
def no_gpio(monkeypatch):
    saved = Device.pin_factory
    Device.pin_factory = None
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "talkie-test-no-such-factory")
    yield
    Device.pin_factory = saved


def test_no_pin_factory_falls_back_to_keyboard_on_a_tty(no_gpio, tty_pair, caplog):
    master, slave = tty_pair
    before = termios.tcgetattr(slave)
    err = io.StringIO()

    async def main():
        loop = asyncio.get_running_loop()
        ev = Events(loop)
        with caplog.at_level(logging.INFO, logger="talkie.panel"):
            panel = open_panel(Cfg(), loop=loop, stdin=slave, stream=err, **ev.kwargs())
        try:
            assert panel.kind == "keyboard"
            warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
            assert len(warnings) == 1
            assert warnings[0].getMessage().startswith("no GPIO (no pin factory: ")
            assert warnings[0].getMessage().endswith(KEYBOARD_HINT)
            mode = termios.tcgetattr(slave)
            assert not mode[3] & (termios.ECHO | termios.ICANON)
            assert mode[3] & termios.ISIG  # Ctrl-C stays the shell's SIGINT
            panel.button.first_release_s = panel.button.repeat_release_s = 0.05
            pressed, released = ev.future("press"), ev.future("release")
            os.write(master, b" ")
            await asyncio.wait_for(pressed, 5)
            await asyncio.wait_for(released, 5)  # no autorepeat followed
            pressed, released = ev.future("press"), ev.future("release")
            os.write(master, b" " * 8)  # a press plus autorepeat, then the key goes up
            await asyncio.wait_for(pressed, 5)
            await asyncio.wait_for(released, 5)
            pressed, released = ev.future("press"), ev.future("release")
            os.write(master, b"\n")
            await asyncio.wait_for(pressed, 5)
            assert not released.done()
            os.write(master, b"\n")
            await asyncio.wait_for(released, 5)
            assert ev.log == ["press", "release"] * 3
            panel.show("listening")
            assert "listening" in err.getvalue()
        finally:
            panel.close()
        assert termios.tcgetattr(slave) == before

    asyncio.run(main())


def test_no_pin_factory_and_no_tty_gives_none(no_gpio, caplog, loop):
    read_fd, write_fd = os.pipe()
    try:
        with caplog.at_level(logging.INFO, logger="talkie.panel"):
            panel = open_panel(Cfg(), loop=loop, stdin=read_fd,
                               on_press=print, on_release=print)
        assert panel.kind == "none" and panel.button is None and panel.led is None
        assert "not a terminal" in caplog.text
        assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
        panel.show("idle")
        panel.close()
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_keyboard_off_gives_none_even_on_a_tty(no_gpio, tty_pair, loop):
    panel = open_panel(Cfg(keyboard="off"), loop=loop,
                       stdin=tty_pair[1], on_press=print, on_release=print)
    assert panel.kind == "none" and "pin factory" in panel.reason


def test_busy_pin_is_reported_and_falls_back(factory, caplog, loop):
    squatter = Button(17, pin_factory=factory)
    try:
        with caplog.at_level(logging.WARNING):
            panel = open_panel(Cfg(), loop=loop, stdin=io.StringIO(),
                               on_press=print, on_release=print)
        assert panel.kind == "none" and "GPIO17" in panel.reason
        assert "GPIO17" in caplog.text
        panel.close()
        assert factory.pin(27).function == "input"  # the LED was never opened
    finally:
        squatter.close()


def test_gpio_error_messages_name_the_fix():
    from talkie.panel import describe_gpio_error

    busy = describe_gpio_error(RuntimeError("'GPIO busy'"), (17,))
    assert "GPIO17 is busy" in busy
    perm = describe_gpio_error(PermissionError(13, "Permission denied"), (27,))
    assert "'gpio' group" in perm
    cwd = describe_gpio_error(FileNotFoundError("'.lgd-nfy-3'"), (17,))
    assert "LG_WD" in cwd


# -- keyboard logic on a manual clock --------------------------------------------------
@pytest.fixture
def pipe_kb(closing):
    read_fd, write_fd = os.pipe()
    loop = FakeLoop()
    ev = Events()
    from talkie.panel.keyboard import KeyboardButton

    kb = KeyboardButton(read_fd, loop=loop, first_release_s=0.7,
                        repeat_release_s=0.25, **ev.kwargs())
    closing(kb)
    yield kb, loop, ev
    os.close(read_fd)
    os.close(write_fd)


def test_space_hold_with_autorepeat(pipe_kb):
    kb, loop, ev = pipe_kb
    kb.feed(b" ")
    assert ev.log == ["press"]
    loop.advance(0.6)  # waiting for the first autorepeat (delay up to ~600 ms)
    assert ev.log == ["press"]
    for _ in range(30):  # repeats every 30 ms
        kb.feed(b" ")
        loop.advance(0.03)
    assert ev.log == ["press"]
    loop.advance(0.2)
    assert ev.log == ["press"]
    loop.advance(0.1)  # > 0.25 s since the last repeat: key is up
    assert ev.log == ["press", "release"] and not kb.is_pressed


def test_space_tap_releases_after_the_first_timeout(pipe_kb):
    kb, loop, ev = pipe_kb
    kb.feed(b" ")
    loop.advance(0.69)
    assert ev.log == ["press"]
    loop.advance(0.02)
    assert ev.log == ["press", "release"]


def test_space_held_long_is_one_press_and_one_release(pipe_kb):
    kb, loop, ev = pipe_kb
    kb.feed(b" ")
    for _ in range(100):
        loop.advance(0.03)
        kb.feed(b"  ")
    assert ev.log == ["press"]
    loop.advance(1.0)
    assert ev.log == ["press", "release"]


def test_enter_toggles_and_overrides_space(pipe_kb):
    kb, loop, ev = pipe_kb
    kb.feed(b"\n")
    loop.advance(10.0)  # no timeout, no hold in toggle mode
    kb.feed(b" ")  # ignored while toggled on
    assert ev.log == ["press"] and kb.mode == "enter"
    kb.feed(b"\r\n")  # CR LF is one ENTER
    assert ev.log == ["press", "release"]
    kb.feed(b" ")
    kb.feed(b"\r")  # ENTER releases a SPACE hold at once
    assert ev.log == ["press", "release"] * 2
    loop.advance(5.0)
    kb.feed(b"xq\x1b[A")  # other keys do nothing
    assert ev.log == ["press", "release"] * 2 and loop.pending() == []


def test_the_control_keys_reach_on_key_and_leave_the_button_alone(closing):
    read_fd, write_fd = os.pipe()
    loop = FakeLoop()
    ev = Events()
    keys = []
    from talkie.panel.keyboard import KeyboardButton

    kb = KeyboardButton(read_fd, loop=loop, on_key=keys.append, **ev.kwargs())
    closing(kb)
    kb.feed(b"+-=mxq")
    assert keys == ["+", "-", "=", "m"] and ev.log == []
    kb.feed(b"\n")
    assert ev.log == ["press"]
    os.close(read_fd)
    os.close(write_fd)


def test_keyboard_eof_releases_and_stops_reading(closing):
    read_fd, write_fd = os.pipe()
    loop = FakeLoop()
    ev = Events()
    from talkie.panel.keyboard import KeyboardButton

    kb = KeyboardButton(read_fd, loop=loop, **ev.kwargs())
    closing(kb)
    callback, _ = loop.readers[read_fd]
    os.write(write_fd, b"\n")
    callback()
    os.close(write_fd)
    callback()
    assert ev.log == ["press", "release"] and loop.readers == {}
    os.close(read_fd)


# -- terminal LED ----------------------------------------------------------------------
class FakeTty(io.StringIO):
    def isatty(self):
        return True


def test_terminal_led_plain_lines_when_not_a_tty():
    from talkie.panel.keyboard import TerminalLed

    out = io.StringIO()
    led = TerminalLed(out, loop=FakeLoop())
    led.show(PATTERNS["idle"], "idle")
    led.show(PATTERNS["idle"], "idle")
    led.show(PATTERNS["connecting"], "connecting")
    led.close()
    assert out.getvalue() == "talkie: idle\ntalkie: connecting\n"


def test_terminal_led_status_line_on_a_tty():
    from talkie.panel.keyboard import TerminalLed

    out = FakeTty()
    loop = FakeLoop()
    led = TerminalLed(out, loop=loop)
    led.show(PATTERNS["listening"], "listening")
    assert out.getvalue() == "\r\x1b[2K\x1b[94m●\x1b[0m listening\r"
    assert loop.pending() == []
    out.truncate(0), out.seek(0)
    led.show(PATTERNS["error"], "error")
    timer = loop.pending()
    assert len(timer) == 1
    led.show(PATTERNS["error"], "error")  # same: no restart
    assert loop.pending() == timer
    loop.advance(0.15)
    loop.advance(0.15)
    frames = out.getvalue().split("\r\x1b[2K")[1:]
    assert frames == ["\x1b[91m●\x1b[0m error\r", "\x1b[2m○\x1b[0m error\r",
                      "\x1b[91m●\x1b[0m error\r"]
    led.show(PATTERNS["idle"], "idle")  # dim green, static
    assert out.getvalue().endswith("\x1b[2;32m●\x1b[0m idle\r") and loop.pending() == []
    led.close()
    assert out.getvalue().endswith("\r\x1b[2K")
    led.show(PATTERNS["error"], "error")  # closed: nothing
    assert out.getvalue().endswith("\r\x1b[2K") and loop.pending() == []


def test_terminal_led_on_a_real_pty(tty_pair):
    from talkie.panel.keyboard import TerminalLed

    master, slave = tty_pair
    stream = open(slave, "w", encoding="utf-8", closefd=False)
    led = TerminalLed(stream, loop=FakeLoop())
    assert led.tty
    led.show(PATTERNS["speaking"], "speaking")
    led.close()
    assert b"speaking" in os.read(master, 1024)


# -- the real settings, when config exists ---------------------------------------------
def test_with_real_panel_settings(factory, closing, loop):
    config = pytest.importorskip("talkie.config")
    settings = config.PanelSettings()
    panel = open_panel(settings, loop=loop, on_press=print,
                       on_release=print)
    closing(panel)
    assert isinstance(panel, Panel) and panel.kind == "gpio"
    for name in ("starting", "idle", "connecting", "listening", "thinking", "speaking",
                 "reconnecting", "error"):
        panel.show(name)
        assert panel.led.sync()

"""``talkie check`` with real parts: PortAudio through the PulseAudio null sinks (espeak-ng speech
played into the microphone, the tone recorded from the speaker), the button and LED on gpiozero's
MockFactory, and the real google-genai SDK against the Live test double over TLS."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from talkie.provision import checks
from tests.support.daemon import BUTTON, LED_PIN, write_config
from tests.support.live_double import LiveDouble

KEY = "AIzaSy-check-good-0123456789abcdef"
WRONG = "AIzaSy-check-WRONG-9876543210fedcba"


class Terminal(io.StringIO):
    """A stdin that says it is a terminal (so the check asks for the button)."""

    def isatty(self) -> bool:
        return True


def press_after_prompt(out: io.StringIO, factory, timeout: float = 15.0) -> threading.Thread:
    """A thread that presses the mock button once the check asks for it."""

    def body() -> None:
        deadline = time.monotonic() + timeout
        while "press the button" not in out.getvalue():
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        time.sleep(0.2)  # a person takes a moment
        pin = factory.pin(BUTTON)
        pin.drive_low()
        time.sleep(0.1)
        pin.drive_high()

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread


def line(out: str, start: str) -> str:
    found = [ln for ln in out.splitlines() if ln.startswith(start)]
    assert len(found) == 1, f"{start!r} in:\n{out}"
    return found[0]


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


@pytest.mark.audio
def test_everything_works(tmp_path, pulse, speech_wav):
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    factory = MockFactory(pin_class=MockPWMPin)
    out, err = io.StringIO(), io.StringIO()
    with LiveDouble(api_keys=(KEY,)) as double:
        path = write_config(tmp_path, double, pulse, KEY)
        path.write_text(path.read_text() + '\n[vision]\ncamera = "synthetic"\n')
        presser = press_after_prompt(out, factory)
        with pulse.record_speaker() as speaker:
            speech = pulse.play_into_mic(speech_wav, wait=False)
            status = checks.main(str(path), out=out, err=err, stdin=Terminal(), env={},
                                 pin_factory=factory, led_s=0.5)
            tone = speaker.stop()
        speech.wait(30)
        presser.join(5)
        assert double.errors == []
        assert [m.kind for m in double.messages] == ["setup"]  # opened, then closed: no turn
    text = out.getvalue()
    print(text)
    assert status == 0, text + err.getvalue()
    assert line(text, "OK   config ") == f"OK   config {path}"
    assert line(text, "OK   microphone: ").startswith('OK   microphone: "talkie_mic" (index ')
    assert line(text, "OK   microphone: ").endswith(" at 16000 Hz")
    recorded = line(text, "OK   recorded 3 s: level ")
    peak, average = _levels(recorded)
    assert -30 <= peak <= 0 and -60 <= average < peak, recorded
    assert recorded.endswith(", no clipping")
    assert line(text, "OK   speaker: ").startswith('OK   speaker: "talkie_spk" (index ')
    assert line(text, "OK   button on GPIO17") == "OK   button on GPIO17: pressed"
    assert line(text, "OK   LED on GPIO27") == "OK   LED on GPIO27: blinking for 0.5 s (look at it)"
    assert line(text, "OK   camera") .startswith("OK   camera (synthetic): a 768x576 frame, ")
    api = line(text, "OK   API key ")
    assert api.startswith(f"OK   API key (from {tmp_path / 'api-key'}) accepted by "
                          f"{double.endpoint} (gemini-3.8-live, ")
    assert KEY not in text + err.getvalue()
    # The tone reached the speaker: 1 s of 440 Hz.
    loud = np.flatnonzero(np.abs(tone.astype(np.int32)) > 1000)
    assert len(loud), "no tone recorded from the speaker"
    heard = tone[loud[0]:loud[-1] + 1]
    assert abs(len(heard) / pulse.speaker_rate - 1.0) < 0.05
    assert abs(peak_hz(heard, pulse.speaker_rate) - 440) <= 5
    # The LED blinked (on, then off; how many times in 0.5 s depends on the machine's load).
    levels = [round(float(s.state), 2) for s in factory.pin(LED_PIN).states]
    assert 1.0 in levels and levels[-1] == 0.0, levels


def _levels(recorded: str) -> tuple[int, int]:
    # "OK   recorded 3 s: level -23 dBFS peak, -41 dBFS average, no clipping"
    words = recorded.split()
    return int(words[words.index("peak,") - 2]), int(words[words.index("average,") - 2])


@pytest.mark.audio
def test_silence_no_input_and_a_wrong_key_fail_with_the_fix(tmp_path, pulse):
    from gpiozero.pins.mock import MockFactory

    out, err = io.StringIO(), io.StringIO()
    with LiveDouble(api_keys=(KEY,)) as double:
        path = write_config(tmp_path, double, pulse, WRONG)
        status = checks.main(str(path), no_input=True, seconds=1, out=out, err=err,
                             stdin=Terminal(), env={}, pin_factory=MockFactory(), led_s=0.1)
    text = out.getvalue()
    print(text)
    assert status == 1
    assert line(text, "FAIL recorded") == (
        "FAIL recorded 1 s: silence (below -70 dBFS): is the microphone muted? check "
        "`alsamixer` / [audio] input_gain_db")
    assert line(text, "SKIP button") == "SKIP button on GPIO17: not asked (--no-input)"
    # the file the rejected key came from is where a good one goes
    assert line(text, "FAIL API key") == (
        f"FAIL API key (from {tmp_path / 'api-key'}): rejected: put a valid key in "
        f"{tmp_path / 'api-key'}")
    assert WRONG not in text + err.getvalue()
    # vision is on by default and this machine has no camera support: said, with the fix
    assert line(text, "FAIL camera") == (
        "FAIL camera: no camera support (python3-picamera2 is not installed): connect a camera, "
        'or set [vision] mode = "off"')
    assert [s for s, _ in _statuses(text)].count("FAIL") == 3


def _statuses(text: str) -> list[tuple[str, str]]:
    return [(ln[:4].strip(), ln[5:]) for ln in text.splitlines() if ln[:4].strip()]


def test_missing_devices_and_no_key_fail_with_the_fix(tmp_path):
    """Devices that are not there and a missing key fail with what to do; no panel: SKIP."""
    path = tmp_path / "talkie.toml"
    path.write_text('[audio]\ninput_device = "no-such-mic"\noutput_device = "no-such-speaker"\n'
                    "[panel]\nbutton = false\nled = \"none\"\n")
    out = io.StringIO()
    status = checks.main(str(path), out=out, err=io.StringIO(), stdin=io.StringIO(), env={})
    text = out.getvalue()
    assert status == 1
    assert line(text, "FAIL microphone: ").startswith(
        "FAIL microphone: no input device matches 'no-such-mic'; set [audio] input_device to")
    assert line(text, "SKIP recording") == "SKIP recording: no microphone"
    assert line(text, "FAIL speaker: ").startswith("FAIL speaker: no output device matches")
    assert line(text, "SKIP button and LED") == (
        'SKIP button and LED: none configured ([panel] button = false, led = "none")')
    # what to do first (a status line may be cut short, never its advice), then where it looked
    assert line(text, "FAIL API key: ").startswith(
        "FAIL API key: no API key: put your Gemini API key in /etc/talkie/api-key (")
    path.write_text(path.read_text() + '[vision]\nmode = "off"\n')
    out = io.StringIO()
    checks.main(str(path), out=out, err=io.StringIO(), stdin=io.StringIO(), env={})
    assert line(out.getvalue(), "SKIP camera") == \
        'SKIP camera: vision is off ([vision] mode = "off")'


def test_a_bad_config_exits_78_with_file_and_line(tmp_path):
    path = tmp_path / "talkie.toml"
    path.write_text("# comment\n[audio]\n\nchunk_ms = 500\n")
    result = subprocess.run([sys.executable, "-m", "talkie", "check", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 78
    assert (f"talkie: {path}:4: [audio] chunk_ms: out of range; found 500; allowed 10 to 100"
            in result.stderr)
    assert result.stdout == "" and "Traceback" not in result.stderr

"""`talkie config check` against what a person, a bad SD card or a fuzzer may put in its place:
generated TOML, mutations of the shipped file, and files that are not files. The answer is always
exit 0 or 78 (never a traceback, which systemd would restart forever, and never a hang), and a
refusal names the file, the line and the key, in lines of bounded length, and never shows a key."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from talkie import cli
from talkie.config.schema import SECTIONS

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "talkie.toml"
SECRET = "AIzaSyFUZZ-0123456789abcdefghijklmnop"
#: Per example: a hang guard, not a speed figure (a hang shows as hypothesis' deadline error).
DEADLINE_MS = 10_000
#: The longest line a refusal may print (an "allowed: ..." list of keys included).
LINE_MAX = 2000

KEYS = sorted({spec.name for _, fields in SECTIONS.values() for spec in fields})


def run_check(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(["config", "check", str(path)])
    return code, out.getvalue(), err.getvalue()


def assert_answered(path: Path, code: int, out: str, err: str) -> None:
    assert code in (0, 78), (code, err[-2000:])
    assert SECRET not in out + err
    if code == 0:
        return
    problems = err.splitlines()
    assert problems and problems[0].startswith("talkie: ")
    where = re.escape(str(path))
    for line in problems:
        assert len(line) <= LINE_MAX, line[:300]
        # file:line: then the key ([section] key, a top-level name) or what is wrong with the file
        assert re.match(rf"^(talkie: )?{where}(:\d+: (invalid TOML: |\S.*?: )|: cannot read: )",
                        line), line[:300]


# ---- generated documents


def toml_string(text: str) -> str:
    return json.dumps(text)  # a TOML basic string, except for lone surrogates (then: invalid TOML)


scalars = st.one_of(
    st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=300),
    st.just(SECRET), st.just("x" * 5000),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=12),
                                                 inner, max_size=4)), max_leaves=12)
names = st.sampled_from(KEYS) | st.text(min_size=1, max_size=80) | st.just("k" * 5000)


def render(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, float):
        return {"inf": "inf", "-inf": "-inf", "nan": "nan"}.get(repr(value), repr(value))
    if isinstance(value, list):
        return "[" + ", ".join(render(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_string(k)} = {render(v)}" for k, v in value.items()) + " }"
    return str(value)


documents = st.lists(st.tuples(
    st.sampled_from([*SECTIONS, "network", "panel.patterns.idle"]) | st.text(min_size=1, max_size=20),
    st.lists(st.tuples(names, values), max_size=6)), max_size=5)


@settings(max_examples=150, deadline=DEADLINE_MS,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(documents)
def test_generated_configs_are_answered_in_words(tmp_path, document):
    lines = []
    for section, pairs in document:
        lines.append(f"[{toml_string(section)}]" if not section.replace(".", "").isalnum()
                     else f"[{section}]")
        lines += [f"{toml_string(name)} = {render(value)}" for name, value in pairs]
    path = tmp_path / "talkie.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    assert_answered(path, *run_check(path))


# ---- mutations of the shipped file


mutation = st.tuples(st.sampled_from(["delete", "duplicate", "insert", "replace", "bytes",
                                      "truncate", "nest"]),
                     st.integers(0, 10**6), st.integers(0, 400), st.binary(max_size=40))


@settings(max_examples=200, deadline=DEADLINE_MS,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(mutation, min_size=1, max_size=4))
def test_mutations_of_the_shipped_file_are_answered_in_words(tmp_path, mutations):
    data = bytearray(SHIPPED.read_bytes())
    for op, at, size, junk in mutations:
        at %= max(1, len(data))
        if op == "delete":
            del data[at:at + size]
        elif op == "duplicate":
            data[at:at] = data[at:at + size]
        elif op == "insert":
            data[at:at] = junk.decode("latin-1").encode()
        elif op == "replace":  # a value swapped for something else
            eq = data.find(b"=", at)
            if eq >= 0:
                end = data.find(b"\n", eq)
                data[eq + 1:end if end >= 0 else len(data)] = b" " + junk.decode(
                    "latin-1").encode()
        elif op == "bytes":
            data[at:at + len(junk)] = junk
        elif op == "truncate":
            del data[at:]
        else:  # nesting far deeper than any setting needs
            data[at:at] = b"\nx = " + b"[" * (size + 30) + b"]" * (size + 30) + b"\n"
    path = tmp_path / "talkie.toml"
    path.write_bytes(bytes(data))
    assert_answered(path, *run_check(path))


# ---- things that are not config files


def config_with(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "talkie.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", ["fifo", "directory", "device", "huge", "deep", "binary"])
def test_a_config_that_is_no_config_file_is_refused_at_once(tmp_path, case):
    path = tmp_path / "talkie.toml"
    if case == "fifo":
        os.mkfifo(path)
        expected = "is a FIFO, not a regular file"
    elif case == "directory":
        path.mkdir()
        expected = "is a directory"
    elif case == "device":
        path = Path("/dev/zero")
        expected = "is a device, not a regular file"
    elif case == "huge":
        with open(path, "wb") as fh:
            fh.truncate(200 << 20)  # sparse: nothing is written, a reader would get 200 MB
        expected = "larger than 1 MB"
    elif case == "deep":
        path.write_text("[live]\nx = " + "[" * 900 + "]" * 900 + "\n")
        expected = ":2: invalid TOML: arrays or tables nested more than 32 deep"
    else:
        path.write_bytes(os.urandom(4096).replace(b"\n", b"") + b"\xff")
        expected = "invalid TOML"
    # as the service would run it: a separate process, which a hang would keep from answering
    done = subprocess.run([sys.executable, "-m", "talkie", "config", "check", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 78, done.stderr
    assert expected in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("key,target,expected", [
    ("system_instruction_file", "/dev/zero", "is a device, not a regular file"),
    ("system_instruction_file", "fifo", "is a FIFO, not a regular file"),
    ("system_instruction_file", "big", "larger than 64 kB"),
    ("ca_file", "/dev/zero", "is a device, not a regular file"),
    ("ca_file", "fifo", "is a FIFO, not a regular file"),
])
def test_a_file_the_config_names_must_be_a_regular_file_of_bounded_size(tmp_path, key, target,
                                                                        expected):
    if target == "fifo":
        os.mkfifo(tmp_path / "named")
        target = str(tmp_path / "named")
    elif target == "big":
        with open(tmp_path / "named", "wb") as fh:
            fh.truncate(200 << 20)
        target = str(tmp_path / "named")
    path = config_with(tmp_path, f'[live]\n{key} = "{target}"\n')
    done = subprocess.run([sys.executable, "-m", "talkie", "config", "check", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 78
    assert done.stderr.startswith(f"talkie: {path}:2: [live] {key}: cannot read {target}: ")
    assert expected in done.stderr


def test_an_api_key_file_that_is_a_fifo_or_a_device_is_a_problem_in_words_not_a_hang(tmp_path):
    from talkie.config.credentials import KeyProblem, load_api_key

    os.mkfifo(tmp_path / "key")
    for where in (tmp_path / "key", Path("/dev/zero")):
        problem = load_api_key(str(where), env={})
        assert isinstance(problem, KeyProblem)
        assert "not a regular file" in problem.message


@pytest.mark.parametrize("text,expected", [
    ('[live]\nvoice = "' + "v" * 100_000 + '"\n',
     ":2: [live] voice: too long (100000 characters); found \"vvv"),
    ('[live]\nmodel = "' + "m" * 1000 + '"\n', ":2: [live] model: too long (1000 characters)"),
    ("[live]\n" + "k" * 100_000 + " = 1\n", ":2: [live] " + "k" * 57 + "...: unknown key"),
    ("[" + "s" * 100_000 + "]\n", ":1: [" + "s" * 57 + "...]: unknown section"),
])
def test_long_strings_and_names_are_refused_and_shown_short(tmp_path, text, expected):
    path = config_with(tmp_path, text)
    code, _, err = run_check(path)
    assert code == 78 and expected in err
    assert max(len(line) for line in err.splitlines()) <= LINE_MAX


@pytest.mark.parametrize("vision,expected", [
    ("indicator_pin = 17", "[vision] indicator_pin: pin 17 is also [panel] button_pin"),
    ("indicator_pin = 27", "[vision] indicator_pin: pin 27 is also [panel] led_pins"),
])
def test_every_gpio_pin_is_used_once(tmp_path, vision, expected):
    path = config_with(tmp_path, f'[vision]\nmode = "while_talking"\n{vision}\n')
    code, _, err = run_check(path)
    assert code == 78 and f"{path}:3: {expected}" in err
    # the camera off: its light is not used, so it takes no pin
    path = config_with(tmp_path, f'[vision]\nmode = "off"\n{vision}\n')
    assert run_check(path)[0] == 0

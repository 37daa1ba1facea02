"""Tests for talkie.config: loading, validation messages, line numbers, secrets, describe()."""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from pathlib import Path as FilePath

import pytest
from hypothesis import given, settings as hyp_settings, strategies as st

from talkie import config
from talkie.config import ConfigError, KeyLines, Settings, describe, load
from talkie.config.kinds import Bool, Choice, Device, Float, Int, ListOf, Path, Switch, Text
from talkie.config.schema import PATTERN_FIELDS, SECTIONS
from talkie.config.settings import DEFAULT_PATTERNS, LedPattern
from tests.support.config_files import error, write

SHIPPED = FilePath(__file__).resolve().parents[2] / "config" / "talkie.toml"
SECRET = "AIzaSyD-S3CR3T-value-0123456789abcdefgh"

# Every (table path, field spec) a user can write; patterns tested under [panel.patterns.idle].
ALL_FIELDS = [((name,), spec) for name, (_, fields) in SECTIONS.items() for spec in fields]
ALL_FIELDS += [(("panel", "patterns", "idle"), spec) for spec in PATTERN_FIELDS]
FIELD_IDS = [".".join(path) + "." + spec.name for path, spec in ALL_FIELDS]

# Lines some valid values need so that the rules across keys still hold.
COMPANIONS = {("panel", "button_pin"): "led_pins = [5]", ("panel", "led"): "led_pins = [5, 6, 13]",
              ("audio", "vad_start_frames"): "vad_window_frames = 20",
              ("audio", "vad_window_frames"): "vad_start_frames = 1",
              # the camera's light needs a pin nothing else uses (the LED has 27 by default)
              ("vision", "indicator_pin"): 'mode = "off"',
              # the controls' pins too: the boundaries 0 and 27 are free with no button or LED
              **{("panel", key): 'button = false\nled = "none"'
                 for key in ("volume_up_pin", "volume_down_pin", "mute_pin")},
              # a password goes with a user
              ("mqtt", "password_file"): 'username = "talkie"'}
# Known keys named like secrets; their numbers are shown, any string or array is not.
TOKEN_KEYS = {"max_output_tokens", "compression_trigger_tokens", "compression_target_tokens"}
GOOD_TEXT = {"endpoint": "wss://gw.example.internal:8443/live", "language_code": "de-CH"}
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


# ------------------------------------------------------------------ helpers
def doc(path: tuple[str, ...], key: str, value: str, extra: str = "") -> str:
    """A config with ``key = value`` on line 5 of table ``path``."""
    return f"# test\n\n[{'.'.join(path)}]\n# the key under test:\n{key} = {value}\n{extra}\n"


def table_of(loaded: Settings, path: tuple[str, ...]):
    """The settings object for table ``path`` (a section or an LED pattern)."""
    section = getattr(loaded, path[0])
    return section.patterns[path[2]] if len(path) == 3 else section


def toml(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return '"' + value + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return repr(value)


def good(kind, name: str = ""):
    """One value ``kind`` (of key ``name``) accepts; files are made by the caller."""
    if isinstance(kind, Bool):
        return True
    if isinstance(kind, (Int, Float)):
        return kind.low if kind.low is not None else 7
    if isinstance(kind, Choice):
        return kind.options[-1]
    if isinstance(kind, ListOf):
        return [good(kind.item)] if kind.unique else [good(kind.item)] * kind.min_len
    if isinstance(kind, Device):
        return 2
    return GOOD_TEXT.get(name, "x")


def wrong_types(kind):
    """(TOML text, shown found value) of values of the wrong type for ``kind``."""
    if isinstance(kind, Bool):
        return [("1", "1 (integer)"), ('"yes"', '"yes" (string)')]
    if isinstance(kind, Device):
        return [("true", "true (boolean)"), ("1.5", "1.5 (float)"), ("[1]", "[1] (array)")]
    if isinstance(kind, Switch):  # true and false are on and off
        return [("5", "5 (integer)"), ('["a"]', '["a"] (array)')]
    if isinstance(kind, Int):
        return [("true", "true (boolean)"), ("1.5", "1.5 (float)"), ('"high"', '"high" (string)')]
    if isinstance(kind, Float):
        return [("false", "false (boolean)"), ('"0.5"', '"0.5" (string)'), ("[1]", "[1] (array)")]
    if isinstance(kind, ListOf):
        return [(toml(good(kind.item)), toml(good(kind.item)) + f" ({_type(kind.item)})")]
    return [("5", "5 (integer)"), ("true", "true (boolean)"), ('["a"]', '["a"] (array)')]


def _type(kind) -> str:
    return {Bool: "boolean", Int: "integer", Float: "float", Choice: "string"}[type(kind)]


def bad_values(kind):
    """(TOML text, expected "what; found ...; allowed ..." tail) of rejected values."""
    cases = []
    if isinstance(kind, (Int, Float)):
        for edge, step in ((kind.low, -1), (kind.high, 1)):
            if edge is not None:
                value = edge + step
                cases.append((repr(value), f"out of range; found {value!r}; allowed {kind.span}"))
    elif isinstance(kind, Choice):
        cases.append(('"zzzz"', f'unknown value; found "zzzz"; allowed {kind.expect}'))
    elif isinstance(kind, Device):
        cases.append(("-1", "out of range; found -1; allowed a device index >= 0"))
    elif isinstance(kind, Text) and not isinstance(kind, Path):
        if kind.nonempty:
            cases.append(('" "', f'must not be empty; found " "; allowed {kind.expect}'))
        if kind.valid:
            cases.append(('"ftp:x y"', f'not valid; found "ftp:x y"; allowed {kind.expect}'))
    elif isinstance(kind, ListOf):
        pad = [good(kind.item)] * (kind.min_len - 1)
        for text, tail in bad_values(kind.item):
            found, allowed = re.match(r".*?; found (.*?); (allowed .*)", tail).groups()
            what = tail.split(";")[0]
            cases.append(("[" + ", ".join([text] + [toml(p) for p in pad]) + "]",
                          f"{what}; found {found} (item 1); {allowed}"))
        too_many = [good(kind.item)] * ((kind.max_len or 0) + 1) if kind.max_len else []
        for items in ([], too_many):
            cases.append((toml(items), f"wrong number of items; found {toml(items)}; "
                          f"allowed {kind.expect}"))
    return cases


# ------------------------------------------------------------ shipped file
def test_shipped_file_loads_as_exactly_the_defaults():
    loaded = load(SHIPPED)
    assert loaded == Settings(source=str(SHIPPED))
    assert loaded.panel.patterns == DEFAULT_PATTERNS


def test_constants():
    assert config.DEFAULT_PATH == "/etc/talkie/talkie.toml"
    assert config.EX_CONFIG == 78


def test_schema_covers_every_dataclass_field():
    for name, (cls, fields) in SECTIONS.items():
        derived = {"system_instruction_text"} if name == "live" else set()
        extra = {"panel": {"patterns"}, "tools": {"options", "mcp"}}.get(name, set())
        names = {f.name for f in dataclasses.fields(cls)}
        assert [f.name for f in fields] == [n for n in (f.name for f in dataclasses.fields(cls))
                                            if n not in derived | extra], name
        assert names == {f.name for f in fields} | derived | extra
    assert [f.name for f in PATTERN_FIELDS] == [f.name for f in dataclasses.fields(LedPattern)]


@pytest.mark.parametrize(("path", "spec"), ALL_FIELDS, ids=FIELD_IDS)
def test_shipped_file_documents_every_key(path, spec):
    text = SHIPPED.read_text()
    assert re.search(rf"^(# )?{spec.name} = |[{{,] {spec.name} = ", text, re.MULTILINE), spec.name


def test_shipped_commented_examples_are_valid(tmp_path):
    """Each commented-out `# key = value` line is valid when uncommented."""
    section, examples = "", {}
    for line in SHIPPED.read_text().splitlines():
        header = re.match(r"^(# )?(\[\[?[\w.]+\]\]?)", line)
        section = header.group(2) if header else section
        example = re.match(r"^# (\w+ = .*?)(\s+#.*)?$", line)
        if example and section.startswith("[["):  # an array's table: its keys go together
            examples.setdefault(section, []).append(example.group(1))
        elif example and section:
            assert load(write(tmp_path, f"{section}\n{example.group(1)}\n")), line
    for section, lines in examples.items():
        assert load(write(tmp_path, section + "\n" + "\n".join(lines) + "\n")), section


def test_shipped_commented_patterns_are_the_defaults(tmp_path):
    text = SHIPPED.read_text()
    block = re.findall(r"^# (\[panel\.patterns\]|\w+ += \{.*\})$", text, re.MULTILINE)
    assert len(block) == 1 + len(DEFAULT_PATTERNS)
    loaded = load(write(tmp_path, "\n".join(block) + "\n"))
    assert loaded.panel.patterns == DEFAULT_PATTERNS


# --------------------------------------------------- per-field validation
@pytest.mark.parametrize(("path", "spec"), ALL_FIELDS, ids=FIELD_IDS)
def test_wrong_type_names_line_section_key_and_allowed(tmp_path, path, spec):
    for text, found in wrong_types(spec.kind):
        if spec.name in TOKEN_KEYS and text[0] in "\"[":
            found = "a value (not shown)"  # strings given to "...token..." keys are never echoed
        message = error(tmp_path, doc(path, spec.name, text))
        where = f"{tmp_path / 'talkie.toml'}:5: [{'.'.join(path)}] {spec.name}"
        assert message == f"{where}: wrong type; found {found}; allowed {spec.kind.expect}"


@pytest.mark.parametrize(("path", "spec"), ALL_FIELDS, ids=FIELD_IDS)
def test_bad_value_names_line_section_key_and_allowed(tmp_path, path, spec):
    cases = bad_values(spec.kind)
    if isinstance(spec.kind, Path) and spec.kind.must_exist:
        missing = tmp_path / "missing.txt"
        cases = [('"missing.txt"', f"cannot read {missing}: no such file")]
    if not cases:  # any value of the right type is fine (e.g. seed, voice, booleans)
        assert isinstance(spec.kind, (Bool, Text)) or spec.kind.span == "", spec
        return
    for text, tail in cases:
        message = error(tmp_path, doc(path, spec.name, text))
        assert message == f"{tmp_path / 'talkie.toml'}:5: [{'.'.join(path)}] {spec.name}: {tail}"


@pytest.mark.parametrize(("path", "spec"), ALL_FIELDS, ids=FIELD_IDS)
def test_boundary_and_good_values_are_accepted(tmp_path, path, spec):
    kind = spec.kind
    values = [good(kind, spec.name)]
    if isinstance(kind, Path):
        given = tmp_path / "given.pem"
        given.write_text(PEM)
        values = [str(given)]
    if isinstance(kind, (Int, Float)):
        values += [v for v in (kind.low, kind.high) if v is not None]
    extra = COMPANIONS.get((path[0], spec.name), "")
    for value in values:
        loaded = load(write(tmp_path, doc(path, spec.name, toml(value), extra)))
        stored = getattr(table_of(loaded, path), spec.name)
        assert stored == (tuple(value) if isinstance(value, list) else value)


FLOATS = [(p, s) for p, s in ALL_FIELDS if isinstance(s.kind, Float)]
CHOICES = [(p, s) for p, s in ALL_FIELDS if isinstance(s.kind, Choice)]


def ids(cases):
    return [".".join(path) + "." + spec.name for path, spec in cases]


@pytest.mark.parametrize(("path", "spec"), FLOATS, ids=ids(FLOATS))
def test_integer_accepted_for_float(tmp_path, path, spec):
    number = int(spec.kind.high)
    loaded = load(write(tmp_path, doc(path, spec.name, str(number))))
    value = getattr(table_of(loaded, path), spec.name)
    assert value == number and isinstance(value, float)


@pytest.mark.parametrize(("path", "spec"), CHOICES, ids=ids(CHOICES))
def test_choices_are_case_insensitive_and_normalised(tmp_path, path, spec):
    for option in filter(None, spec.kind.options):
        extra = COMPANIONS.get((path[0], spec.name), "") if option == "rgb" else ""
        loaded = load(write(tmp_path, doc(path, spec.name, f'"{option.swapcase()}"', extra)))
        assert getattr(table_of(loaded, path), spec.name) == option


def test_response_modalities_stored_upper_case(tmp_path):
    loaded = load(write(tmp_path, '[live]\nresponse_modalities = ["text", "Audio"]\n'))
    assert loaded.live.response_modalities == ("TEXT", "AUDIO")


def test_choice_typo_suggests_the_nearest(tmp_path):
    message = error(tmp_path, '[log]\nlevel = "warn"\n')
    assert message.endswith(':2: [log] level: unknown value (did you mean "warning"?); '
                            'found "warn"; allowed one of: debug, info, warning, error')


# ------------------------------------------- the examples from the brief
def test_example_out_of_range(tmp_path):
    text = "\n" * 12 + "[audio]\nchunk_ms = 500\n"
    assert error(tmp_path, text) == (f"{tmp_path}/talkie.toml:14: [audio] chunk_ms: "
                                     "out of range; found 500; allowed 10 to 100")


def test_example_wrong_type(tmp_path):
    assert error(tmp_path, '[live]\n\ntop_k = "high"\n') == (
        f'{tmp_path}/talkie.toml:3: [live] top_k: wrong type; found "high" (string); '
        "allowed an integer >= 1")


def test_example_unknown_key_suggests_and_lists_allowed(tmp_path):
    message = error(tmp_path, "[live]\n" + "\n" * 7 + "tempreature = 0.5\n")
    allowed = sorted(s.name for s in SECTIONS["live"][1])
    assert message == (f"{tmp_path}/talkie.toml:9: [live] tempreature: unknown key "
                       f"(did you mean temperature?); allowed: {', '.join(allowed)}")


def test_example_missing_file(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"^.*/nope\.toml: cannot read: no such file$"):
        load(missing)


# --------------------------------------------- unknown keys and line numbers
@pytest.mark.parametrize(("text", "expected"), [
    ('[live]\nresponse_modalities = [\n  "AUDIO",  # a ] and = in a comment\n]\nbogus = 1\n',
     ":5: [live] bogus: unknown key"),
    ('[live]\nsystem_instruction = """\n[audio]\nbogus = 2\n"""\nbogus = 1\n',
     ":6: [live] bogus: unknown key"),
    ("[live]\nsystem_instruction = '''\nx = \"\n'''\nbogus = 1\n",
     ":5: [live] bogus: unknown key"),
    ('[live]\nsystem_instruction = """a \\""" b""""\nbogus = 1\n',
     ":3: [live] bogus: unknown key"),
    ('[panel.patterns]\nidle = { kind = "blink", colour = [1, 0, 0] }\n',
     ":2: [panel.patterns.idle] colour: unknown key (did you mean color?)"),
    ('[panel]\nled = "pwm"\npatterns.idle.shade = 1\n',
     ":3: [panel.patterns.idle] shade: unknown key"),
    ('live.tempreature = 1\n[audio]\n', ":1: [live] tempreature: unknown key"),
    ('[panel.patterns.idle]\nkind = "solid"\n\nblink_rate = 2\n',
     ":4: [panel.patterns.idle] blink_rate: unknown key"),
    ('[panel]\n[panel.patterns.idel]\nkind = "solid"\n',
     ":2: [panel.patterns] idel: unknown LED state (did you mean idle?)"),
    ('[audio]\nvolume = 1.0\n[live]\nvolume = 0.5\n',
     ":4: [live] volume: unknown key (it belongs in [audio])"),
    ('[live]\n"tempreature" = 1\n', ":2: [live] tempreature: unknown key"),
    ('[live]\r\nmodel = "x"\r\n\r\nbogus = 1\r\n', ":4: [live] bogus: unknown key"),
    ('[ live ] # spaced header\n  bogus   =   1   # trailing\n', ":2: [live] bogus: unknown key"),
    ('[audio]\n\n[liv]\nmodel = "x"\n', ":3: [liv]: unknown section (did you mean [live]?); "
     "allowed: [live], [audio], [panel], [session], [vision], [tools], [log]"),
    ('[panel.foo]\nx = 1\n', ":1: [panel] foo: unknown key"),
    ('# top\nmodel = "x"\n', ":2: model: key outside any section; it belongs in [live]: "
     "move it below the [live] line"),
    ("[[live]]\nmodel = 'x'\n", ":1: [live]: wrong type; found [{ model = \"x\" }] (array); "
     "allowed a [live] section"),
])
def test_unknown_keys_and_sections_at_exact_lines(tmp_path, text, expected):
    message = error(tmp_path, text)
    assert message.startswith(f"{tmp_path}/talkie.toml{expected}"), message


def test_all_problems_reported_in_line_order(tmp_path):
    path = write(tmp_path, '[log]\nlevel = "loud"\n[audio]\nchunk_ms = 1\nvolume = "max"\n')
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert [p.split(": ")[0].rsplit(":", 1)[1] for p in caught.value.problems] == ["2", "4", "5"]
    assert str(caught.value) == "\n".join(caught.value.problems)


SCALARS = ['1', '"a = [b]"', "'c'", 'true', '1979-05-27', '-0.5', '"""\nx\n"""',
           "'''\n[y]\nz = 1\n'''", '[\n  1,\n  2, # ]\n]', '{ a = 1, b = "}" }', '[[1], [\n2]]']


@hyp_settings(deadline=None, max_examples=150)
@given(st.lists(st.tuples(st.lists(st.sampled_from(SCALARS), max_size=5),
                          st.sampled_from(["", "\n", "# c = 1\n", "\n\n"])), min_size=1,
                max_size=4))
def test_key_lines_match_generated_documents(sections):
    """KeyLines finds the line of every key of any (valid) generated document."""
    text, expected = "", {}
    for number, (values, filler) in enumerate(sections):
        name = ("t", f"s{number}")
        expected[name] = text.count("\n") + 1
        text += f"[t.s{number}]  # header\n{filler}"
        for index, value in enumerate(values):
            expected[name + (f"k{index}",)] = text.count("\n") + 1
            text += f"k{index} = {value}\n{filler}"
    tomllib.loads(text)  # the generator only makes valid TOML
    lines = KeyLines(text)
    assert {path: lines.find(path) for path in expected} == expected


def test_key_lines_fall_back_to_table_then_line_one():
    lines = KeyLines('a = 1\n\n[live]\nmodel = "x"\n')
    assert lines.find(("live", "missing")) == 3
    assert lines.find(("nowhere", "x")) == 1


# ------------------------------------------------------- bad TOML, bad files
@pytest.mark.parametrize(("text", "expected"), [
    ('[live]\nmodel = "x"\n\n\n\n\ntemperature 0.8\n',
     ":7: invalid TOML: Expected '=' after a key in a key/value pair"),
    ('[live]\nmodel = "x"\nmodel = "y"\n', ":3: invalid TOML: Cannot overwrite a value"),
    ("[live]\n[live]\n", ":2: invalid TOML: Cannot declare [live] twice"),
    ('[live]\nmodel = "unterminated\n', ":2: invalid TOML: Illegal character '\\n'"),
    ('[live]\nmodel = """never\nclosed',
     ":3: invalid TOML: Unterminated string at the end of the file"),
])
def test_bad_toml_names_the_line(tmp_path, text, expected):
    assert error(tmp_path, text) == f"{tmp_path}/talkie.toml{expected}"


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "talkie.toml"
    path.write_bytes(b'[live]\nvoice = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"talkie\.toml:2: invalid TOML: not UTF-8 text"):
        load(path)


def test_directory(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    assert str(caught.value) == f"{tmp_path}: cannot read: is a directory"


def test_unreadable_file(tmp_path, monkeypatch):
    path = write(tmp_path, "[live]\n")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(config, "read_file", denied)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value) == f"{path}: cannot read: permission denied"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a mode-000 file")
def test_unreadable_file_for_real(tmp_path):
    path = write(tmp_path, "[live]\n")
    os.chmod(path, 0)
    with pytest.raises(ConfigError, match="cannot read: permission denied"):
        load(path)


# ------------------------------------------------------ rules across keys
def test_thinking_budget_and_level_exclusive(tmp_path):
    text = '[live]\nthinking_budget = 1024\nmodel = "m"\nthinking_level = "HIGH"\n'
    message = error(tmp_path, text)
    assert message == (f"{tmp_path}/talkie.toml:4: [live] thinking_level: cannot be combined with "
                       'thinking_budget (line 2); found "high"; allowed only one of '
                       "thinking_budget and thinking_level")


def test_empty_thinking_level_does_not_count_as_set(tmp_path):
    loaded = load(write(tmp_path, '[live]\nthinking_budget = -1\nthinking_level = ""\n'))
    assert (loaded.live.thinking_budget, loaded.live.thinking_level) == (-1, "")


def test_system_instruction_inline_and_file_exclusive(tmp_path):
    (tmp_path / "prompt.txt").write_text("Be brief.\n")
    message = error(tmp_path, '[live]\nsystem_instruction = "Hi"\n'
                              'system_instruction_file = "prompt.txt"\n')
    assert message == (f"{tmp_path}/talkie.toml:3: [live] system_instruction_file: cannot be "
                       "combined with system_instruction (line 2); "
                       f'found "{tmp_path}/prompt.txt"; '
                       "allowed only one of system_instruction and system_instruction_file")


def test_system_instruction_file_is_read_relative_to_the_config(tmp_path):
    (tmp_path / "prompt.txt").write_text("\ufeffYou are a kitchen helper.\nBe brief.\n\n")
    loaded = load(write(tmp_path, '[live]\nsystem_instruction_file = "prompt.txt"\n'))
    assert loaded.live.system_instruction_file == str(tmp_path / "prompt.txt")
    assert loaded.live.system_instruction_text == "You are a kitchen helper.\nBe brief."
    assert loaded.live.system_instruction == ""


def test_inline_system_instruction_is_the_text(tmp_path):
    loaded = load(write(tmp_path, '[live]\nsystem_instruction = """\nLine one.\nLine two."""\n'))
    assert loaded.live.system_instruction_text == "Line one.\nLine two."


def test_system_instruction_file_missing_names_the_path(tmp_path):
    message = error(tmp_path, '[live]\n\nsystem_instruction_file = "/no/such/prompt.txt"\n')
    assert message == (f"{tmp_path}/talkie.toml:3: [live] system_instruction_file: "
                       "cannot read /no/such/prompt.txt: no such file")


def test_system_instruction_file_not_utf8(tmp_path):
    (tmp_path / "prompt.txt").write_bytes(b"caf\xe9")
    message = error(tmp_path, '[live]\nsystem_instruction_file = "prompt.txt"\n')
    assert message.startswith(f"{tmp_path}/talkie.toml:2: [live] system_instruction_file: "
                              "not UTF-8 text")


def test_system_instruction_file_is_a_directory(tmp_path):
    (tmp_path / "d").mkdir()
    message = error(tmp_path, '[live]\nsystem_instruction_file = "d"\n')
    assert message.endswith(f"cannot read {tmp_path}/d: is a directory")


def test_ca_file_missing_names_the_path(tmp_path):
    message = error(tmp_path, '[live]\nendpoint = "https://gw.local"\nca_file = "ca.pem"\n')
    assert message == (f"{tmp_path}/talkie.toml:3: [live] ca_file: cannot read "
                       f"{tmp_path}/ca.pem: no such file")


def test_ca_file_must_be_pem(tmp_path):
    (tmp_path / "ca.pem").write_text("not a certificate")
    message = error(tmp_path, '[live]\nca_file = "ca.pem"\n')
    assert message.startswith(f"{tmp_path}/talkie.toml:2: [live] ca_file: not a PEM "
                              f"certificate bundle; found {tmp_path}/ca.pem")


def test_private_endpoint_with_ca_file(tmp_path):
    (tmp_path / "ca.pem").write_text(PEM)
    loaded = load(write(tmp_path, '[live]\nendpoint = "https://gw.local:8443"\n'
                                  f'ca_file = "{tmp_path}/ca.pem"\n'))
    assert (loaded.live.endpoint, loaded.live.ca_file) == ("https://gw.local:8443",
                                                           f"{tmp_path}/ca.pem")


@pytest.mark.parametrize("endpoint", ["http://gw.local", "gw.local", "https://", "wss://h:99999"])
def test_endpoint_must_be_https_or_wss_url(tmp_path, endpoint):
    assert "[live] endpoint: not valid" in error(tmp_path, f'[live]\nendpoint = "{endpoint}"\n')


@pytest.mark.parametrize(("led", "pins", "expected"), [
    ("rgb", "[27]", ':3: [panel] led_pins: wrong number of pins for led = "rgb"; found [27]; '
     "allowed 3 pins (red, green, blue), e.g. [5, 6, 13]"),
    ("pwm", "[5, 6, 13]", ':3: [panel] led_pins: wrong number of pins for led = "pwm"; '
     "found [5, 6, 13]; allowed 1 pin, e.g. [27]"),
    ("plain", "[17]", ":3: [panel] led_pins: pin 17 is also button_pin; found [17]; "
     "allowed pins other than 17"),
])
def test_led_pins_rules(tmp_path, led, pins, expected):
    assert error(tmp_path, f'[panel]\nled = "{led}"\nled_pins = {pins}\n') == \
        f"{tmp_path}/talkie.toml{expected}"


def test_rgb_without_led_pins_points_at_led(tmp_path):
    message = error(tmp_path, '[panel]\n\nled = "rgb"\n')
    assert message.startswith(f"{tmp_path}/talkie.toml:3: [panel] led_pins: wrong number of pins")


@pytest.mark.parametrize(("text", "pins"), [
    ('led = "rgb"\nled_pins = [5, 6, 13]', (5, 6, 13)),
    ('led = "none"\nled_pins = [5, 6, 13]', (5, 6, 13)),  # pins unused without an LED
    ('button = false\nled_pins = [17]', (17,)),          # no button, no clash
])
def test_led_pins_accepted(tmp_path, text, pins):
    assert load(write(tmp_path, f"[panel]\n{text}\n")).panel.led_pins == pins


def test_compression_target_below_trigger(tmp_path):
    message = error(tmp_path, "[live]\ncompression_trigger_tokens = 10000\n"
                              "compression_target_tokens = 10000\n")
    assert message == (f"{tmp_path}/talkie.toml:3: [live] compression_target_tokens: must be less "
                       "than compression_trigger_tokens; found 10000; allowed less than 10000")
    loaded = load(write(tmp_path, "[live]\ncompression_trigger_tokens = 10000\n"
                                  "compression_target_tokens = 9999\n"))
    assert loaded.live.compression_target_tokens == 9999


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    loaded = load(write(tmp_path, '[live]\napi_key_file = "secrets/key"\n'))
    assert loaded.live.api_key_file == str(tmp_path / "secrets" / "key")


# ---------------------------------------------------------------- secrets
@pytest.mark.parametrize("text", [
    f'[live]\napi_key = "{SECRET}"\n',
    f'api_key = "{SECRET}"\n',
    f'[audio]\napi_key = "{SECRET}"\n',
    f'[panel.patterns.idle]\ntoken = "{SECRET}"\n',
    f'[live]\nmodel = 5\nsecret = ["{SECRET}"]\n',
    f'[live]\nvoice = ["{SECRET}"]\n',                     # key-like value in any key
    f'[live]\nmax_output_tokens = "{SECRET}"\n',
    f'[live]\nlanguage_code = "{SECRET}"\n',
])
def test_secrets_are_never_echoed(tmp_path, text):
    message = error(tmp_path, text)
    assert SECRET not in message and "S3CR3T" not in message
    assert "found a value (not shown)" in message


def test_api_key_in_live_is_an_unknown_key_with_a_hint(tmp_path):
    message = error(tmp_path, f'[live]\nmodel = "m"\napi_key = "{SECRET}"\n')
    assert message.startswith(f"{tmp_path}/talkie.toml:3: [live] api_key: unknown key (the API "
                              "key never goes in this file: put it in /etc/talkie/api-key")
    assert "; found a value (not shown); allowed: activity_handling, api_key_file," in message


def test_numbers_of_token_keys_are_shown(tmp_path):
    message = error(tmp_path, "[live]\nmax_output_tokens = 0\n")
    assert message.endswith("[live] max_output_tokens: out of range; found 0; allowed >= 1")


def test_api_key_file_path_is_shown(tmp_path):
    message = error(tmp_path, "[live]\napi_key_file = 3\n")
    assert "found 3 (integer)" in message
    loaded = load(write(tmp_path, '[live]\napi_key_file = "/etc/talkie/api-key"\n'))
    assert 'api_key_file = "/etc/talkie/api-key"' in describe(loaded)


@hyp_settings(deadline=None, max_examples=60)
@given(name=st.from_regex(r"[a-z_]{0,6}(key|token|secret)[a-z_]{0,6}", fullmatch=True),
       section=st.sampled_from(["", "[live]", "[audio]", "[panel]", "[log]",
                                "[panel.patterns.idle]"]),
       secret=st.text("abcXYZ0189-_", min_size=6, max_size=30))
def test_secret_named_keys_never_echo_string_values(tmp_path_factory, name, section, secret):
    value = "S3CR3T" + secret
    path = tmp_path_factory.mktemp("secret") / "talkie.toml"
    path.write_text(f'{section}\n{name} = "{value}"\n')
    try:
        load(path)
    except ConfigError as err:
        assert value not in str(err)
    else:
        assert name == "api_key_file"


def test_describe_never_shows_a_key_pasted_into_another_setting(tmp_path):
    loaded = load(write(tmp_path, f'[live]\nvoice = "{SECRET}"\n'))
    assert SECRET not in describe(loaded)


# ---------------------------------------------------------------- describe
def test_describe_defaults_round_trip(tmp_path):
    text = describe(Settings())
    assert "# temperature: not set" in text and "[panel.patterns.error]" in text
    assert load(write(tmp_path, text)) == Settings(source=str(tmp_path / "talkie.toml"))


def test_describe_custom_round_trip(tmp_path):
    (tmp_path / "prompt.txt").write_text("Speak like a pirate.")
    original = load(write(tmp_path, """
[live]
model = "gemini-3.1-flash-live-preview"
voice = "Kore"
language_code = "en-GB"
system_instruction_file = "prompt.txt"
temperature = 1
top_k = 3
seed = -5
response_modalities = ["text"]
thinking_level = "Low"
automatic_activity_detection = true
end_sensitivity = "LOW"
silence_duration_ms = 700
[audio]
input_device = "USB \\"mic\\" \\\\ 2"
output_device = 3
volume = 0.25
[panel]
led = "rgb"
led_pins = [5, 6, 13]
[panel.patterns.idle]
color = [1, 0.5, 0]
[log]
level = "DEBUG"
""", name="in.toml"))
    assert original.panel.patterns["idle"] == LedPattern("solid", (1.0, 0.5, 0.0), 0.15)
    assert original.live.system_instruction_text == "Speak like a pirate."
    again = load(write(tmp_path, describe(original), name="out.toml"))
    assert again == dataclasses.replace(original, source=again.source)


def _kind_values(kind, name):
    """A hypothesis strategy of values ``kind`` (of key ``name``) accepts."""
    if isinstance(kind, Bool):
        return st.booleans()
    if isinstance(kind, Int):
        low = kind.low if kind.low is not None else -(2 ** 63)
        return st.integers(low, int(kind.high) if kind.high is not None else 2 ** 63 - 1)
    if isinstance(kind, Float):
        return st.floats(kind.low, kind.high, allow_nan=False)
    if isinstance(kind, Choice):
        return st.sampled_from([o for o in kind.options])
    if isinstance(kind, Device):
        return st.one_of(st.text(), st.integers(0, 99))
    if isinstance(kind, ListOf):
        size = dict(min_size=kind.min_len, max_size=kind.max_len or 3, unique=kind.unique)
        return st.lists(_kind_values(kind.item, name), **size).map(tuple)
    if isinstance(kind, Path):
        return st.just("") if kind.must_exist else st.sampled_from(["", "/run/creds/k y"])
    if name in GOOD_TEXT:
        return st.sampled_from(["", GOOD_TEXT[name]])
    longest = getattr(kind, "max_len", None)
    if kind.nonempty:
        return st.text(min_size=1, max_size=longest).filter(str.strip)
    return st.text(max_size=longest)


def _section_values(fields, cls):
    return st.fixed_dictionaries({f.name: _kind_values(f.kind, f.name) for f in fields}).map(
        lambda values: cls(**values))


@hyp_settings(deadline=None, max_examples=60)
@given(live=_section_values(SECTIONS["live"][1], config.LiveSettings),
       audio=_section_values(SECTIONS["audio"][1], config.AudioSettings),
       panel=_section_values(SECTIONS["panel"][1], config.PanelSettings),
       log=_section_values(SECTIONS["log"][1], config.LogSettings),
       patterns=st.fixed_dictionaries({s: _section_values(PATTERN_FIELDS, LedPattern)
                                       for s in DEFAULT_PATTERNS}))
def test_describe_round_trips_any_valid_settings(tmp_path_factory, live, audio, panel, log,
                                                 patterns):
    # Keep the rules across keys satisfied; they are tested on their own above.
    live = dataclasses.replace(live, thinking_level="" if live.thinking_budget is not None
                               else live.thinking_level)
    if live.compression_target_tokens is not None and live.compression_trigger_tokens is not None:
        live = dataclasses.replace(live, compression_trigger_tokens=max(
            live.compression_trigger_tokens, live.compression_target_tokens + 1))
    audio = dataclasses.replace(audio, vad_window_frames=max(audio.vad_window_frames,
                                                             audio.vad_start_frames))
    free = [pin for pin in range(28) if pin != panel.button_pin]
    pins = tuple(free[:3]) if panel.led == "rgb" else tuple(free[:1])
    controls = {key: free[3 + n] if getattr(panel, key) is not None else None
                for n, key in enumerate(("volume_up_pin", "volume_down_pin", "mute_pin"))}
    panel = dataclasses.replace(panel, led_pins=pins, patterns=config.FrozenMap(patterns),
                                **controls)
    original = Settings(source="x", live=live, audio=audio, panel=panel, log=log)
    path = tmp_path_factory.mktemp("describe") / "talkie.toml"
    path.write_text(describe(original), encoding="utf-8")
    assert load(path) == dataclasses.replace(original, source=str(path))


def test_settings_are_frozen_and_hashable():
    loaded = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.live.model = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        loaded.panel.patterns["idle"] = None  # type: ignore[index]
    assert hash(loaded) == hash(Settings())


def test_unknown_key_in_panel_lists_patterns_too(tmp_path):
    message = error(tmp_path, "[panel]\nbuton = true\n")
    assert message.startswith(f"{tmp_path}/talkie.toml:2: [panel] buton: unknown key "
                              "(did you mean button?); allowed: bounce_s, button,")
    assert "patterns" in message.split("allowed: ")[1].split(", ")


def test_more_start_frames_than_the_window_is_refused(tmp_path):
    message = error(tmp_path, "[audio]\nvad_window_frames = 4\nvad_start_frames = 5\n")
    assert message == (f"{tmp_path / 'talkie.toml'}:3: [audio] vad_start_frames: more than "
                       "vad_window_frames; found 5; allowed 1 to 4")


def test_a_retired_key_still_loads_and_says_so(tmp_path):
    """[panel] hold_s did nothing: a file that has it loads, with a note naming its line."""
    path = write(tmp_path, "[panel]\nbutton_pin = 17\nhold_s = 2.0\n")
    loaded = load(path)
    assert loaded.notes == (f"{path}:3: [panel] hold_s: does nothing and can go (the long hold "
                            "that starts a fresh conversation is [session] reset_hold_s); a later "
                            "release will refuse it",)
    assert loaded == load(write(tmp_path, "[panel]\nbutton_pin = 17\n"))  # nothing else differs


# ---------------------------------------------------------------- [mqtt]
def test_mqtt_is_off_by_default_and_its_defaults_are_the_documented_ones():
    mqtt = Settings().mqtt
    assert (mqtt.enabled, mqtt.host, mqtt.port, mqtt.tls, mqtt.ca_file) == (
        False, "localhost", 1883, False, "")
    assert (mqtt.username, mqtt.password_file, mqtt.device_id) == ("", "", "")
    assert (mqtt.discovery_prefix, mqtt.base_topic, mqtt.device_name) == (
        "homeassistant", "talkie", "talkie")
    assert mqtt.keepalive_s == 60


def test_mqtt_section_loads(tmp_path):
    (tmp_path / "ca.pem").write_text(PEM)
    loaded = load(write(tmp_path, """
[mqtt]
enabled = true
host = "broker.lan"
port = 1883
tls = true
ca_file = "ca.pem"
username = "talkie"
password_file = "mqtt-password"
discovery_prefix = "ha"
base_topic = "devices"
device_name = "Kitchen talkie"
device_id = "kitchen-1"
keepalive_s = 30
"""))
    mqtt = loaded.mqtt
    assert mqtt.enabled and mqtt.tls and mqtt.port == 1883  # TLS on 1883 is the user's choice
    assert mqtt.ca_file == str(tmp_path / "ca.pem")
    assert mqtt.password_file == str(tmp_path / "mqtt-password")  # read by the adapter, not here
    assert (mqtt.discovery_prefix, mqtt.base_topic) == ("ha", "devices")
    assert (mqtt.device_name, mqtt.device_id, mqtt.keepalive_s) == ("Kitchen talkie", "kitchen-1", 30)


def test_mqtt_password_file_without_a_username_is_refused(tmp_path):
    message = error(tmp_path, '[mqtt]\nenabled = true\npassword_file = "mqtt-password"\n')
    assert message == (f"{tmp_path / 'talkie.toml'}:3: [mqtt] password_file: a password goes with "
                       "a username; found no username; allowed password_file together with "
                       'username (e.g. username = "talkie"), or password_file = ""')


@pytest.mark.parametrize(("key", "value"), [
    ("discovery_prefix", '"home/assistant"'), ("discovery_prefix", '"ha#"'),
    ("base_topic", '"tal kie"'), ("base_topic", '"+"'),
    ("device_id", '"Kitchen"'), ("device_id", '"a/b"'), ("device_id", '"x y"'),
])
def test_mqtt_topic_levels_and_device_id_are_checked(tmp_path, key, value):
    message = error(tmp_path, f"[mqtt]\n{key} = {value}\n")
    assert message.startswith(f"{tmp_path / 'talkie.toml'}:2: [mqtt] {key}: not valid; found {value}")


def test_mqtt_ca_file_must_be_a_pem_bundle_like_lives(tmp_path):
    (tmp_path / "ca.pem").write_text("not a certificate")
    message = error(tmp_path, '[mqtt]\ntls = true\nca_file = "ca.pem"\n')
    assert message.startswith(f"{tmp_path / 'talkie.toml'}:3: [mqtt] ca_file: not a PEM "
                              f"certificate bundle; found {tmp_path / 'ca.pem'}")
    # [live]'s file is checked on its own: a good one there does not vouch for this one
    (tmp_path / "good.pem").write_text(PEM)
    message = error(tmp_path, '[live]\nca_file = "good.pem"\n[mqtt]\nca_file = "ca.pem"\n')
    assert "[mqtt] ca_file: not a PEM" in message and "[live]" not in message


def test_mqtt_password_file_path_is_shown_but_never_its_content(tmp_path):
    (tmp_path / "mqtt-password").write_text("hunter2-S3CR3T\n")
    loaded = load(write(tmp_path, '[mqtt]\nusername = "u"\npassword_file = "mqtt-password"\n'))
    text = describe(loaded)
    assert f'password_file = "{tmp_path / "mqtt-password"}"' in text
    assert "S3CR3T" not in text
    assert load(write(tmp_path, text, name="again.toml")).mqtt == loaded.mqtt

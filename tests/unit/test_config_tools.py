"""Tests for the [tools] section of the config: its keys, [tools.options.NAME] and
[[tools.mcp]] (talkie.config.tooltables), each problem at its file:line, and describe()."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path as FilePath

import pytest

from talkie.config import ConfigError, Settings, describe, load
from talkie.config.settings import McpServerSettings, ToolOptions, ToolsSettings
from talkie.config.tooltables import MCP_MAX
from tests.support.config_files import write

TOKEN = "tok-0123456789-very-secret-bearer"


# ------------------------------------------------------------------ helpers
def problems(tmp_path: FilePath, text: str) -> list[str]:
    """The ConfigError's lines, each checked to be "file:line: ...", without the file name."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load(path)
    lines = str(caught.value).splitlines()
    assert list(caught.value.problems) == lines
    for line in lines:
        assert line.startswith(f"{path}:"), line
        assert re.match(r"\d+: ", line[len(path) + 1 :]), line
    return [line[len(path) + 1 :] for line in lines]


def the_problem(tmp_path: FilePath, text: str) -> str:
    """The one problem of ``text``, as "line: message"."""
    found = problems(tmp_path, text)
    assert len(found) == 1, found
    return found[0]


EXAMPLE = """\
[tools]
time = false
alarm_volume = 0.5
look = "on"
behavior = "blocking"

[tools.options.speaker_volume]
behavior = "non_blocking"
scheduling = "silent"
deadline_s = 2.5

[tools.options."home_light.on"]
deadline_s = 30

[[tools.mcp]]
name = "local"
command = ["python3", "x.py"]

[[tools.mcp]]
name = "home"
url = "https://ha.example:8123/api/mcp"
token_file = "tokens/home.token"
allow = ["HassTurnOn", "HassTurnOff"]
deadline_s = 20
scheduling = "interrupt"
"""


# ------------------------------------------------------------------ valid
def test_the_defaults():
    tools = Settings().tools
    assert tools.options == {} and tools.mcp == ()
    assert McpServerSettings(name="x").prefix == "x_"


def test_a_valid_example_loads(tmp_path):
    (tmp_path / "tokens").mkdir()
    (tmp_path / "tokens" / "home.token").write_text(TOKEN)
    tools = load(write(tmp_path, EXAMPLE)).tools
    assert (tools.time, tools.alarm_volume, tools.look, tools.behavior) == (
        False,
        0.5,
        "on",
        "blocking",
    )
    assert dict(tools.options) == {
        "speaker_volume": ToolOptions("non_blocking", "silent", 2.5),
        "home_light.on": ToolOptions(deadline_s=30.0),
    }
    local, home = tools.mcp
    assert local == McpServerSettings(name="local", command=("python3", "x.py"))
    assert local.url == "" and local.token_file == "" and local.allow == ()
    assert (local.deadline_s, local.behavior, local.scheduling) == (
        10.0,
        "non_blocking",
        "when_idle",
    )
    assert local.prefix == "local_"
    assert home.url == "https://ha.example:8123/api/mcp"
    assert home.command == ()
    assert home.token_file == str(tmp_path / "tokens" / "home.token")  # against the file's folder
    assert home.allow == ("HassTurnOn", "HassTurnOff")
    assert (home.deadline_s, home.scheduling, home.behavior) == (20.0, "interrupt", "non_blocking")
    assert home.prefix == "home_"


def test_a_token_file_need_not_exist_yet(tmp_path):
    text = '[[tools.mcp]]\nname = "home"\nurl = "http://127.0.0.1:8123/mcp"\ntoken_file = "t"\n'
    assert load(write(tmp_path, text)).tools.mcp[0].token_file == str(tmp_path / "t")


def test_an_absolute_token_file_stays(tmp_path):
    text = (
        '[[tools.mcp]]\nname = "home"\nurl = "http://h/mcp"\n'
        'token_file = "/etc/talkie/tokens/home.token"\n'
    )
    assert load(write(tmp_path, text)).tools.mcp[0].token_file == "/etc/talkie/tokens/home.token"


def test_mcp_choices_are_normalised(tmp_path):
    text = (
        '[[tools.mcp]]\nname = "a1"\ncommand = ["prog"]\nbehavior = "BLOCKING"\n'
        'scheduling = "Silent"\n'
    )
    server = load(write(tmp_path, text)).tools.mcp[0]
    assert (server.behavior, server.scheduling) == ("blocking", "silent")


def test_an_empty_options_section_and_mcp_array(tmp_path):
    tools = load(write(tmp_path, "[tools]\nmcp = []\noptions = {}\n")).tools
    assert tools.mcp == () and tools.options == {}


def test_an_option_with_empty_values_means_the_tools_own(tmp_path):
    text = '[tools.options.look]\nbehavior = ""\nscheduling = ""\n'
    assert load(write(tmp_path, text)).tools.options["look"] == ToolOptions()


def test_at_most_mcp_max_servers_load(tmp_path):
    text = "".join(
        f'[[tools.mcp]]\nname = "s{i}"\nurl = "http://h/{i}"\n' for i in range(MCP_MAX)
    )
    assert len(load(write(tmp_path, text)).tools.mcp) == MCP_MAX == 16


# ------------------------------------------------------------- [[tools.mcp]]
def test_both_command_and_url(tmp_path):
    text = '[tools]\n\n[[tools.mcp]]\nname = "home"\ncommand = ["x"]\nurl = "http://h/mcp"\n'
    assert the_problem(tmp_path, text) == (
        "6: [[tools.mcp]] #1 url: give exactly one of command (a program) and url "
        "(streamable HTTP); found both"
    )


def test_neither_command_nor_url(tmp_path):
    text = '[[tools.mcp]]\nname = "a"\ncommand = ["x"]\n\n[[tools.mcp]]\nname = "b"\n'
    found = the_problem(tmp_path, text)
    assert found.startswith("5: [[tools.mcp]] #2 ")  # the table's own line: no key to point at
    assert found.endswith("give exactly one of command (a program) and url (streamable HTTP); "
                          "found neither")


def test_an_empty_command_is_refused(tmp_path):
    found = problems(tmp_path, '[[tools.mcp]]\nname = "a"\ncommand = []\n')
    assert found[0].startswith("3: [[tools.mcp]] #1 command: wrong number of items; found []")
    # (then, as the command did not count, "found neither" on the same line, said once more)
    assert all(f.startswith("3: [[tools.mcp]] #1 command: ") for f in found)


def test_token_file_without_url(tmp_path):
    text = '[[tools.mcp]]\nname = "a"\ncommand = ["x"]\ntoken_file = "a.token"\n'
    assert the_problem(tmp_path, text) == (
        "4: [[tools.mcp]] #1 token_file: a bearer token goes with a url; found no url"
    )


def test_a_repeated_name_is_reported_on_the_second(tmp_path):
    text = (
        '[[tools.mcp]]\nname = "home"\nurl = "http://a/mcp"\n\n'
        '[[tools.mcp]]\nurl = "http://b/mcp"\nname = "home"\n'
    )
    assert the_problem(tmp_path, text) == (
        '7: [[tools.mcp]] #2 name: repeated; found "home"; allowed a name per server'
    )


@pytest.mark.parametrize("name", ["Home", "my-home", "home_1", "1home", "", "h" * 17, "h o"])
def test_bad_server_names(tmp_path, name):
    text = f'[[tools.mcp]]\nurl = "http://a/mcp"\nname = "{name}"\n'
    found = the_problem(tmp_path, text)
    assert found.startswith("3: [[tools.mcp]] #1 name: "), found
    assert "lower-case letters and digits" in found


def test_a_name_that_is_not_a_string(tmp_path):
    found = the_problem(tmp_path, '[[tools.mcp]]\nname = 5\nurl = "http://a/mcp"\n')
    assert found.startswith("2: [[tools.mcp]] #1 name: wrong type; found 5 (integer)")


def test_a_missing_name(tmp_path):
    text = '[[tools.mcp]]\nname = "a"\nurl = "http://a/mcp"\n[[tools.mcp]]\nurl = "http://b/mcp"\n'
    assert the_problem(tmp_path, text) == (
        '4: [[tools.mcp]] #2 name: missing; allowed a short name like "home"'
    )


@pytest.mark.parametrize(
    "url", ["ftp://h/mcp", "ws://h/mcp", "h/mcp", "http://", "http://h:99999/mcp", "file:///x"]
)
def test_a_url_that_is_not_http(tmp_path, url):
    text = f'[[tools.mcp]]\nname = "a"\n\nurl = "{url}"\n'
    found = problems(tmp_path, text)
    assert (
        f'4: [[tools.mcp]] #1 url: not valid; found "{url}"; allowed an http:// or https:// URL'
        in found
    )


def test_more_than_mcp_max_servers(tmp_path):
    text = "[tools]\ntime = true\n" + "".join(
        f'\n[[tools.mcp]]\nname = "s{i}"\nurl = "http://h/{i}"\n' for i in range(MCP_MAX + 1)
    )
    assert the_problem(tmp_path, text) == (
        f"4: [tools] mcp: too many servers; found {MCP_MAX + 1}; allowed at most {MCP_MAX}"
    )


def test_mcp_as_a_table_instead_of_an_array_of_tables(tmp_path):
    text = '[tools]\ntime = false\n\n[tools.mcp]\nname = "x"\nurl = "http://a"\n'
    found = the_problem(tmp_path, text)
    assert found.startswith('4: [tools] mcp: wrong type; found { name = "x", url = "http://a" } '
                            "(table); allowed [[tools.mcp]] sections")


@pytest.mark.parametrize(
    "value, shown", [('"home"', '"home" (string)'), ('["x"]', '["x"] (array)')]
)
def test_mcp_of_the_wrong_type(tmp_path, value, shown):
    found = the_problem(tmp_path, f"[tools]\nmcp = {value}\n")
    assert found.startswith(f"2: [tools] mcp: wrong type; found {shown}; allowed [[tools.mcp]]")


def test_an_unknown_key_in_mcp_names_its_table(tmp_path):
    text = (
        '[[tools.mcp]]\nname = "a"\nurl = "http://a/mcp"\n\n'
        '[[tools.mcp]]\nname = "b"\ncommand = ["b"]\ncomand = ["b"]\n'
    )
    found = the_problem(tmp_path, text)
    assert found.startswith("8: [[tools.mcp]] #2 comand: unknown key (did you mean command?)")
    assert found.endswith(
        "allowed: allow, behavior, command, deadline_s, name, scheduling, token_file, url"
    )


def test_a_secret_looking_key_in_mcp_is_not_echoed(tmp_path):
    text = f'[[tools.mcp]]\nname = "a"\nurl = "http://a/mcp"\ntoken = "{TOKEN}"\n'
    found = the_problem(tmp_path, text)
    assert found.startswith("4: [[tools.mcp]] #1 token: unknown key")
    assert TOKEN not in found and "(not shown)" in found


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("deadline_s", "0", "out of range; found 0; allowed 0.1 to 120"),
        ("deadline_s", '"10"', 'wrong type; found "10" (string)'),
        ("behavior", '"later"', 'found "later"; allowed one of: non_blocking, blocking'),
        ("scheduling", '"now"', 'found "now"; allowed one of: interrupt, when_idle, silent'),
        ("allow", '["ok", "bad name!"]', "allowed"),
        ("command", '["prog", 3]', "allowed"),
    ],
)
def test_bad_values_in_mcp(tmp_path, key, value, expected):
    text = f'[[tools.mcp]]\nname = "a"\nurl = "http://a/mcp"\n{key} = {value}\n'
    found = problems(tmp_path, text)
    assert any(f.startswith(f"4: [[tools.mcp]] #1 {key}: ") and expected in f for f in found), found


def test_every_problem_of_several_servers_in_line_order(tmp_path):
    text = (
        '[[tools.mcp]]\nname = "a"\ncommand = ["x"]\nurl = "http://a"\n'  # 1-4
        '[[tools.mcp]]\nname = "b"\ncommand = ["x"]\ntoken_file = "t"\n'  # 5-8
        '[[tools.mcp]]\nname = "a"\ncommand = ["x"]\n'  # 9-11
    )
    found = problems(tmp_path, text)
    assert [f.split(":")[0] for f in found] == ["4", "8", "10"]
    assert "#1 url" in found[0] and "#2 token_file" in found[1] and "#3 name: repeated" in found[2]


# ------------------------------------------------------- [tools.options.NAME]
@pytest.mark.parametrize("name", ["bad name!", "1tool", "x" * 65, "a/b", ""])
def test_a_bad_option_name(tmp_path, name):
    text = f'[tools]\ntime = true\n\n[tools.options."{name}"]\nbehavior = "blocking"\n'
    found = the_problem(tmp_path, text)
    assert found.startswith("4: [tools.options] ")
    assert found.endswith(
        "not a tool name; allowed letters, digits and _ . : - (at most 64 characters)"
    )


@pytest.mark.parametrize("name", ["look", "home_light.on", "a:b-c", "_x", "x" * 64])
def test_good_option_names(tmp_path, name):
    text = f'[tools.options."{name}"]\nscheduling = "silent"\n'
    assert load(write(tmp_path, text)).tools.options[name] == ToolOptions(scheduling="silent")


def test_an_option_with_a_bad_behavior_lists_the_allowed_values(tmp_path):
    text = '[tools.options.speaker_volume]\n\nbehavior = "sometimes"\n'
    assert the_problem(tmp_path, text) == (
        '3: [tools.options.speaker_volume] behavior: unknown value; found "sometimes"; '
        'allowed one of: "", non_blocking, blocking'
    )


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("scheduling", '"soon"', 'allowed one of: "", interrupt, when_idle, silent'),
        ("deadline_s", "500", "out of range; found 500; allowed 0.1 to 120"),
        ("deadline_s", "true", "wrong type; found true (boolean)"),
        ("acts", "true", "unknown key; allowed: behavior, deadline_s, scheduling"),
    ],
)
def test_bad_option_values(tmp_path, key, value, expected):
    text = f"[tools.options.look]\n{key} = {value}\n"
    found = the_problem(tmp_path, text)
    assert found.startswith(f"2: [tools.options.look] {key}: ") and expected in found, found


def test_an_option_that_is_not_a_table(tmp_path):
    found = the_problem(tmp_path, '[tools.options]\nlook = "blocking"\n')
    assert found.startswith('2: [tools.options] look: wrong type; found "blocking" (string)')


def test_options_that_are_not_a_table(tmp_path):
    found = the_problem(tmp_path, "[tools]\noptions = 3\n")
    assert found == (
        "2: [tools] options: wrong type; found 3 (integer); allowed [tools.options.NAME] sections"
    )


# ------------------------------------------------------------- [tools] keys
@pytest.mark.parametrize("value", ["1.5", "-0.1"])
def test_alarm_volume_out_of_range(tmp_path, value):
    assert the_problem(tmp_path, f"[tools]\n\nalarm_volume = {value}\n") == (
        f"3: [tools] alarm_volume: out of range; found {value}; allowed 0.0 to 1.0"
    )


def test_look_maybe_lists_the_allowed_values(tmp_path):
    assert the_problem(tmp_path, '[tools]\nlook = "maybe"\n') == (
        '2: [tools] look: unknown value; found "maybe"; allowed one of: auto, on, off (or true, '
        "false)"
    )


@pytest.mark.parametrize(
    "line, expected",
    [
        ('behavior = "eventually"', "allowed one of: non_blocking, blocking"),
        ("max_timers = 0", "out of range; found 0; allowed 1 to 100"),
        ("alarm_ring_s = 1", "out of range; found 1; allowed 5.0 to 600.0"),
        ('timers = "yes"', 'wrong type; found "yes" (string)'),
    ],
)
def test_other_tools_keys(tmp_path, line, expected):
    found = the_problem(tmp_path, f"[tools]\n{line}\n")
    assert found.startswith(f"2: [tools] {line.split(' ')[0]}: ") and expected in found, found


def test_an_unknown_tools_key_lists_options_and_mcp(tmp_path):
    found = the_problem(tmp_path, '[tools]\nmcp_servers = "x"\n')
    assert found.startswith("2: [tools] mcp_servers: unknown key")
    allowed = found.split("allowed: ")[1].split(", ")
    assert "mcp" in allowed and "options" in allowed and "alarm_volume" in allowed


def test_all_the_problems_of_the_section_together(tmp_path):
    text = (
        "[tools]\nalarm_volume = 2\nlook = \"maybe\"\n"  # 2, 3
        "[tools.options.look]\nbehavior = \"x\"\n"  # 5
        '[[tools.mcp]]\nname = "a"\n'  # 6, 7 (neither)
    )
    found = problems(tmp_path, text)
    assert [f.split(":")[0] for f in found] == ["2", "3", "5", "6"]


# ---------------------------------------------------------------- describe
def test_describe_round_trips_options_and_servers(tmp_path):
    (tmp_path / "tokens").mkdir()
    (tmp_path / "tokens" / "home.token").write_text(TOKEN)
    original = load(write(tmp_path, EXAMPLE, name="in.toml"))
    assert len(original.tools.options) == 2 and len(original.tools.mcp) == 2
    text = describe(original)
    assert "[tools.options.speaker_volume]" in text
    assert '[tools.options."home_light.on"]' in text
    assert text.count("[[tools.mcp]]") == 2
    assert f'token_file = "{tmp_path / "tokens" / "home.token"}"' in text  # the path is shown
    assert TOKEN not in text  # never the token
    (tmp_path / "out").mkdir()  # elsewhere: the token_file path is absolute now
    again = load(write(tmp_path / "out", text))
    assert again == dataclasses.replace(original, source=again.source)
    assert again.tools == original.tools


def test_describe_round_trips_the_default_tools(tmp_path):
    text = describe(Settings())
    assert "[[tools.mcp]]" not in text and "[tools.options." not in text
    assert load(write(tmp_path, text)).tools == ToolsSettings()


@pytest.mark.parametrize("value, stored", [("true", "on"), ("false", "off"), ('"Auto"', "auto")])
def test_look_takes_true_and_false_for_on_and_off(tmp_path, value, stored):
    path = tmp_path / "talkie.toml"
    path.write_text(f"[tools]\nlook = {value}\n")
    assert load(path).tools.look == stored

"""Bash completion, walked from the parser: the committed systemd/talkie.bash-completion is
`talkie completion bash`, and sourced in a real bash it completes commands, subcommands, options,
their values and file names."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import pytest

from talkie import cli, completion
from talkie.core.machine import table
from talkie.system.control import COMMANDS

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "systemd" / "talkie.bash-completion"
REGENERATE = "talkie completion bash > systemd/talkie.bash-completion"
BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="no bash")


def complete(script: str, *lines: list[str], cwd: Path | None = None) -> list[set[str]]:
    """What bash offers at the end of each command line (its last word is the one completed;
    "" to complete a new word), in one bash that has sourced ``script``."""
    calls = []
    for words in lines:
        quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
        calls.append(f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; COMPREPLY=(); "
                     f"_{words[0]}; printf '%s\\n' \"${{COMPREPLY[@]}}\"; echo '-- end'")
    done = subprocess.run([BASH, "--norc", "--noprofile", "-c", script + "\n" + "\n".join(calls)],
                          capture_output=True, text=True, timeout=30, cwd=cwd)
    assert done.returncode == 0 and not done.stderr, done.stderr
    answers = done.stdout.split("-- end\n")[:-1]
    assert len(answers) == len(lines)
    return [set(filter(None, answer.splitlines())) for answer in answers]


def test_the_committed_script_is_talkie_completion_bash(capsys):
    assert cli.main(["completion", "bash"]) == 0
    printed = capsys.readouterr().out
    assert cli.main(["completion"]) == 0  # bash is the default
    assert capsys.readouterr().out == printed == cli.completion_script()
    assert SCRIPT.read_text() == printed, (
        f"systemd/talkie.bash-completion is stale: regenerate it with `{REGENERATE}`")


def test_it_completes_commands_subcommands_options_and_their_values(tmp_path):
    (tmp_path / "talkie.toml").write_text("")
    (tmp_path / "tools.txt").write_text("")
    (tmp_path / "conf.d").mkdir()
    cases = {
        ("talkie", "c"): {"check", "config", "ctl", "completion"},
        ("talkie", ""): {"run", "config", "ctl", "check", "firstboot", "machine", "update",
                         "completion"},
        ("talkie", "--v"): {"--version"},
        ("talkie", "ctl", "s"): {"status", "stop", "say"},
        ("talkie", "ctl", ""): {usage.split()[0] for usage in COMMANDS},
        ("talkie", "ctl", "--timeout", "3", "--json", "st"): {"status", "stop"},
        ("talkie", "ctl", "--"): {"--help", "--socket", "--json", "--timeout"},
        ("talkie", "ctl", "say", "he"): set(),
        ("talkie", "ctl", "--timeout", ""): set(),
        ("talkie", "config", ""): {"check", "default", "reference"},
        ("talkie", "config", "check", "ta"): {"talkie.toml"},
        ("talkie", "config", "check", "--config", "t"): {"talkie.toml", "tools.txt"},
        ("talkie", "config", "check", "talkie.toml", ""): set(),  # one path only
        ("talkie", "run", "--config", "co"): {"conf.d"},
        ("talkie", "run", "--config", "=", "ta"): {"talkie.toml"},  # --config=ta, as bash splits it
        ("talkie", "run", "-"): {"-h", "--help", "--config"},
        ("talkie", "check", "--"): {"--help", "--config", "--no-input", "--seconds"},
        ("talkie", "machine", "--group", ""): {group.group for group in table.GROUPS},
        ("talkie", "machine", "--group", "=", "v"): {"voice"},
        ("talkie", "completion", ""): {"bash"},
        ("talkie", "firstboot", "--owner-group", "roo"): {"root"},
        ("talkie", "nonsense", ""): set(),
    }
    answers = complete(SCRIPT.read_text(), *map(list, cases), cwd=tmp_path)
    for (line, expected), got in zip(cases.items(), answers, strict=True):
        assert got == expected, " ".join(line)


def test_a_new_command_or_option_completes_with_nothing_else_to_change():
    parser = argparse.ArgumentParser(prog="talkie")
    sub = parser.add_subparsers(dest="command")
    mqtt = sub.add_parser("mqtt")
    mqtt.add_argument("--qos", choices=["0", "1", "2"])
    mqtt.add_argument("topic", metavar="TOPIC")
    script = completion.bash(parser, {("mqtt", "TOPIC"): ["state", "command"]})
    assert complete(script, ["talkie", "m"], ["talkie", "mqtt", "--"], ["talkie", "mqtt", "--qos", ""],
                    ["talkie", "mqtt", "--qos", "1", "s"]) == [
        {"mqtt"}, {"--help", "--qos"}, {"0", "1", "2"}, {"state"}]


def test_a_word_that_is_not_plain_is_refused():
    parser = argparse.ArgumentParser(prog="talkie")
    parser.add_argument("word")
    with pytest.raises(ValueError, match="not a plain word"):
        completion.bash(parser, {("", "word"): ["a b"]})

"""The package's architecture, checked: the layers' import contracts (import-linter, from
pyproject.toml), no import cycle anywhere, and the machine's generated table kept in step with the
docs that show it (docs/machine.md, the README's states, each state group's docstring)."""

from __future__ import annotations

import importlib
import io
import re
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import grimp
import pytest

from talkie import cli
from talkie.config.settings import DEFAULT_PATTERNS
from talkie.core import machine as m
from talkie.core.machine import table

REPO = Path(__file__).resolve().parents[2]


def test_the_import_contracts_hold():
    """Core pure; adapters independent of each other, of the shell and of the machine; the
    layers in order; no cycle among siblings (pyproject.toml, [tool.importlinter])."""
    linter = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(linter), "--no-cache"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_no_import_cycle_anywhere_in_the_package():
    """Not even one through an import made only for type checking, or hidden in a function."""
    graph = grimp.build_graph("talkie", include_external_packages=False)
    cycles = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if graph.chain_exists(importer=imported, imported=module):
                back = graph.find_shortest_chain(importer=imported, imported=module)
                cycles.append(" -> ".join((module, *back)))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_module_is_much_over_400_lines():
    long = {str(p.relative_to(REPO)): n for p in (REPO / "daemon/talkie").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 420}
    assert not long, long


# ---- the machine as a table


def test_talkie_machine_prints_the_generated_page_and_docs_machine_md_is_it():
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["machine"]) == 0
    assert out.getvalue() == cli.machine_page()
    page = (REPO / "docs/machine.md").read_text()
    assert page == cli.machine_page(), "docs/machine.md is stale: talkie machine > docs/machine.md"
    # every phase, event type and handler is on it
    for phase in m.Phase:
        assert f"| {phase.value} |" in page
    for event in m.EVENT_TYPES:
        assert f"`{event.__name__}`" in page
    for group in m.GROUPS:
        for (_, _), handler in group.items():
            assert handler.__name__.lstrip("_") in page


def test_the_table_names_the_handler_step_uses_in_every_cell():
    rows = {line.split(" | ")[0].strip("| `"): line.strip("|").split(" | ")[1:]
            for line in table.matrix()[2:]}
    for event in m.EVENT_TYPES:
        for phase, cell in zip(m.Phase, rows[event.__name__], strict=True):
            handler = m.handler_for(phase, event)
            assert cell.strip() == (handler.__name__.lstrip("_") if handler else "·")


def test_the_readme_states_section_is_the_machines_table():
    readme = (REPO / "README.md").read_text()
    section = readme.split("### States\n", 1)[1]
    first = section.lstrip("\n").split("\n\n", 1)[0]
    shown = "\n".join(re.findall(r"^\|.*\|$", first, re.M)) + "\n"
    assert shown == table.states(lambda name: DEFAULT_PATTERNS[name].words), (
        "the README's states table and the machine disagree: `talkie machine` prints the table")


@pytest.mark.parametrize("group", [g.group for g in m.GROUPS])
def test_each_state_group_carries_its_part_of_the_table_in_its_docstring(group):
    module = importlib.import_module(f"talkie.core.machine.{group}")
    expected = table.group_text(table.group_named(group))
    assert module.__doc__.rstrip().endswith(expected.rstrip()), (
        f"{module.__file__}: its docstring must end with `talkie machine --group {group}`")


def test_talkie_machine_prints_one_group_and_names_the_groups_for_a_wrong_one(capsys):
    assert cli.main(["machine", "--group", "voice"]) == 0
    assert capsys.readouterr().out == table.group_text(table.group_named("voice"))
    assert cli.main(["machine", "--group", "nope"]) == 2
    assert "allowed: turns, voice, supervisor" in capsys.readouterr().err

"""The config's documentation follows the schema: docs/config.md is `talkie config reference`
(every section and key: type, default, allowed values, what it does), `talkie config default` is
a config file that loads as the defaults (commented out or not), and the shipped
config/talkie.toml mentions every key in its own section."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from talkie import cli
from talkie.config import Settings, load, reference
from talkie.config.kinds import Bool, Choice, Float, Int, ListOf, Path as PathKind, Switch, Text
from talkie.config.schema import MCP, OPTION_FIELDS, PATTERN_FIELDS, SECTIONS, FieldSpec
from talkie.config.settings import DEFAULT_PATTERNS, ToolOptions
from talkie.config.text import toml_text

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "config.md"
SHIPPED = REPO / "config" / "talkie.toml"
#: The tables within sections, with their keys and where their defaults come from.
TABLES = {
    "panel.patterns.NAME": ("panel", PATTERN_FIELDS, None),
    "tools.options.NAME": ("tools", OPTION_FIELDS, ToolOptions()),
    "[tools.mcp]": ("tools", MCP[1], MCP[0]()),
}
#: A line of the generated config that is a key or a table header, commented out.
COMMENTED = re.compile(r"^#(?=[A-Za-z_\[])", re.MULTILINE)


def part(page: str, heading: str) -> str:
    """The text under a Markdown heading, up to the next heading."""
    start = page.index(heading + "\n")
    rest = page[start + len(heading) + 1 :]
    end = re.search(r"^#{2,3} ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


def row(text: str, key: str) -> list[str]:
    (line,) = [ln for ln in text.splitlines() if ln.startswith(f"| `{key}` |")]
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line)[1:-1]]


def test_docs_config_md_is_talkie_config_reference(capsys):
    assert cli.main(["config", "reference"]) == 0
    printed = capsys.readouterr().out
    assert printed == reference.markdown()
    assert DOC.read_text() == printed, (
        f"docs/config.md is stale: regenerate it with `{reference.REGENERATE}`"
    )
    assert f"`{reference.REGENERATE}`" in printed.split("\n\n")[1]  # said at the top


@pytest.mark.parametrize("section", list(SECTIONS))
def test_the_reference_lists_every_key_with_its_type_default_allowed_values_and_doc(section):
    page = reference.markdown()
    cls, fields = SECTIONS[section]
    text = part(page, f"## [{section}]")
    assert text.count("\n| `") == len(fields)  # nothing more, nothing less
    defaults = cls()
    for spec in fields:
        value = getattr(defaults, spec.name)
        shown = "unset" if value in (None, ()) else f"`{toml_text(value)}`"
        assert row(text, spec.name) == [
            f"`{spec.name}`",
            spec.kind.type_name,
            shown,
            spec.kind.allowed(),
            spec.doc,
        ]


@pytest.mark.parametrize("table", list(TABLES))
def test_the_reference_lists_the_tables_within_sections(table):
    page = reference.markdown()
    _, fields, defaults = TABLES[table]
    text = part(page, f"### [{table}]")
    for spec in fields:
        cells = row(text, spec.name)
        assert cells[1] == spec.kind.type_name and cells[-2:] == [spec.kind.allowed(), spec.doc]
        if defaults is not None:
            value = getattr(defaults, spec.name)
            assert cells[2] in ("unset", "required", f"`{toml_text(value)}`")
    if table == "panel.patterns.NAME":
        for state, pattern in DEFAULT_PATTERNS.items():
            assert (
                f"| {state} | `{toml_text(pattern.kind)}` | `{toml_text(pattern.color)}` |" in text
            )
    if table == "[tools.mcp]":
        assert row(text, "name")[2] == "required" and row(text, "command")[2] == "unset"


def test_a_section_added_to_the_schema_is_in_both_with_nothing_else_to_change(monkeypatch):
    @dataclasses.dataclass(frozen=True)
    class BrokerSettings:
        """The [broker] section: a message broker."""

        host: str = ""
        port: int = 1883
        retain: bool | None = None

    fields = (
        FieldSpec("host", Text("a host name"), "the broker's host"),
        FieldSpec("port", Int(1, 65535), "its port"),
        FieldSpec("retain", Bool(), "keep the last message"),
    )
    monkeypatch.setitem(SECTIONS, "broker", (BrokerSettings, fields))
    page = part(reference.markdown(), "## [broker]")
    assert "The [broker] section: a message broker." in page
    assert row(page, "port") == ["`port`", "integer", "`1883`", "1 to 65535", "its port"]
    assert row(page, "retain")[2] == "unset"
    sample = reference.default_config()
    block = sample.split("\n[broker]\n", 1)[1]
    assert '#host = ""\n' in block and "#port = 1883\n" in block
    assert "# retain: keep the last message (boolean: true or false; unset by default)" in block


def test_talkie_config_default_loads_as_the_defaults_commented_or_not(tmp_path, capsys):
    assert cli.main(["config", "default"]) == 0
    text = capsys.readouterr().out
    assert text == reference.default_config()
    as_is = tmp_path / "as-is.toml"
    as_is.write_text(text)
    assert load(as_is) == Settings(source=str(as_is))
    assert not re.search(r"^\w+ =", text, re.MULTILINE)  # every key commented out
    uncommented = tmp_path / "uncommented.toml"
    uncommented.write_text(COMMENTED.sub("", text))
    loaded = load(uncommented)
    assert loaded == Settings(source=str(uncommented))
    assert loaded.panel.patterns == DEFAULT_PATTERNS and not loaded.notes
    # every key with a default is a line of its own; every key is described
    doc = tomllib.loads(uncommented.read_text())
    for section, (cls, fields) in SECTIONS.items():
        block = text.split(f"\n[{section}]\n", 1)[1].split("\n\n\n[", 1)[0]
        for spec in fields:
            assert f"\n# {spec.name}: {spec.doc}".split(";")[0] in "\n" + block, spec.name
            has_default = getattr(cls(), spec.name) not in (None, ())
            assert (spec.name in doc[section]) == has_default, spec.name
    assert sorted(doc["panel"]["patterns"]) == sorted(DEFAULT_PATTERNS)
    for table in ("[panel.patterns.NAME]:", "[tools.options.NAME]:", "[[tools.mcp]]:"):
        assert f"\n# {table} " in text
    for spec in (*PATTERN_FIELDS, *OPTION_FIELDS, *MCP[1]):
        assert f"\n#   {spec.name}: " in text, spec.name


def test_the_generated_configs_comments_are_wrapped():
    comments = [ln for ln in reference.default_config().splitlines() if ln.startswith("# ")]
    assert comments and max(map(len, comments)) <= reference.WIDTH


# ---- the shipped, hand-written config/talkie.toml


def shipped_sections() -> dict[str, str]:
    """The shipped file's text by top-level section, each up to the next top-level header (one
    commented out too, as an optional section may be: `# [network]`)."""
    text, out = SHIPPED.read_text(), {}
    header = r"^(?:# ?)?\[(\w+)\]$"
    for match in re.finditer(header + r"\n(.*?)(?=" + header + r"|\Z)", text, re.M | re.S):
        out.setdefault(match.group(1), match.group(2))
    return out


@pytest.mark.parametrize("section", list(SECTIONS))
def test_the_shipped_config_mentions_every_key_in_its_own_section(section):
    sections = shipped_sections()
    assert section in sections, f"config/talkie.toml has no [{section}] section"
    fields = list(SECTIONS[section][1])
    fields += [
        spec for _, (where, specs, _) in TABLES.items() if where == section for spec in specs
    ]
    missing = [
        spec.name for spec in fields if not re.search(rf"\b{spec.name}\b", sections[section])
    ]
    assert not missing, (
        f"config/talkie.toml does not document [{section}] {', '.join(missing)}; "
        f"`talkie config reference` has the words for them"
    )


# ---- what the kinds say they allow


def test_each_kind_says_its_type_and_what_it_allows():
    assert (Bool().type_name, Bool().allowed()) == ("boolean", "true or false")
    assert (Int(0, 27).type_name, Int(0, 27).allowed()) == ("integer", "0 to 27")
    assert (Int(1).allowed(), Int().allowed()) == (">= 1", "any integer")
    assert (Float(0, 2).type_name, Float(0, 2).allowed(), Float().allowed()) == (
        "float",
        "0.0 to 2.0",
        "any float",
    )
    assert Choice("", "high", "low").allowed() == '"", "high", "low"'
    assert Switch().allowed() == '"auto", "on", "off" (true = on, false = off)'
    assert Text(max_len=8).allowed() == "any text; at most 8 characters"
    assert (
        PathKind(must_exist=True)
        .allowed()
        .endswith("relative to the config file's folder; read when set")
    )
    assert ListOf(Int(0, 27), "pins").type_name == "array of integers"

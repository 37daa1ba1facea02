"""The tables of ``[tools]`` that hold tables: ``[tools.options.NAME]`` (how one tool's calls are
made) and ``[[tools.mcp]]`` (one MCP server each), checked like every other key: each problem at
its file:line, labelled with the table it is in."""

from __future__ import annotations

from typing import Any

from talkie.config.checker import Checker
from talkie.config.schema import MCP, OPTION_FIELDS, TOOL_NAME
from talkie.config.settings import FrozenMap, McpServerSettings, ToolOptions
from talkie.config.text import found

#: The most MCP servers one device talks to.
MCP_MAX = 16


def tool_options(check: Checker, value: Any) -> FrozenMap:
    """[tools.options.NAME] tables, by tool name."""
    path, out = ("tools", "options"), {}
    if not isinstance(value, dict):
        check.report(
            path,
            f"wrong type; found {found('options', value, True)}; "
            "allowed [tools.options.NAME] sections",
        )
        return FrozenMap()
    for name, table in value.items():
        if not TOOL_NAME.fullmatch(name):
            check.report(
                path + (name,),
                "not a tool name; allowed letters, digits and _ . : - (at most 64 characters)",
            )
        elif not isinstance(table, dict):
            check.report(
                path + (name,),
                f"wrong type; found {found(name, table, True)}; "
                'allowed a table like { behavior = "blocking" }',
            )
        else:
            out[name] = ToolOptions(**check.table(path + (name,), table, OPTION_FIELDS))
    return FrozenMap(out)


def mcp_servers(check: Checker, value: Any) -> tuple[McpServerSettings, ...]:
    """[[tools.mcp]] tables, in the file's order."""
    path = ("tools", "mcp")
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        check.report(
            path,
            f"wrong type; found {found('mcp', value, True)}; allowed [[tools.mcp]] sections, "
            'each like name = "home" and url = "http://..." or command = ["..."]',
        )
        return ()
    if len(value) > MCP_MAX:
        check.report(path, f"too many servers; found {len(value)}; allowed at most {MCP_MAX}")
        return ()
    cls, fields = MCP
    servers: list[McpServerSettings] = []
    for n, table in enumerate(value, 1):
        at = (*path, f"#{n}")
        values = check.table(at, table, fields)
        server = cls(**values)
        if "name" not in values:
            if "name" not in table:  # (a bad name has been reported already)
                check.report((*at, "name"), 'missing; allowed a short name like "home"')
            continue
        has_command, has_url = bool(server.command), bool(server.url)
        rejected = any(key in table and key not in values for key in ("command", "url"))
        if has_command == has_url and not (rejected and not has_command and not has_url):
            check.report(
                (*at, "url" if has_url else "command"),
                "give exactly one of command (a program) and url (streamable HTTP); found "
                + ("both" if has_command else "neither"),
            )
        if server.token_file and not has_url:
            check.report((*at, "token_file"), "a bearer token goes with a url; found no url")
        if any(s.name == server.name for s in servers):
            check.report(
                (*at, "name"), f'repeated; found "{server.name}"; allowed a name per server'
            )
        servers.append(server)
    return tuple(servers)

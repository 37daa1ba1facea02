"""``talkie``: the command line (thin: it parses, then hands over).

talkie --version                      the version (also in `ctl status` and the start line)
talkie run [--config PATH]            the daemon
talkie config check [PATH]            validate a config and print the effective settings
talkie config default                 every key with its default, commented out (a config file)
talkie config reference               every key: type, default, allowed values (docs/config.md)
talkie ctl COMMAND [TEXT...]          ask the running daemon (status, press, say TEXT, ...)
talkie check [--config PATH] [--no-input] [--seconds S]   hardware self-test
talkie firstboot [--boot DIR] [--etc DIR] [--owner-group G]   take config/key from /boot
talkie machine [--group NAME]         the state machine's states and transition table
talkie update BUNDLE|URL [--no-reboot]   install an update into the other A/B slot and try it
talkie update --status | --health     the A/B slots; the trial boot's health check (its unit's)
talkie completion bash                the shell completion script (the image installs it)

Without a path, `run`, `check` and `config check` use $TALKIE_CONFIG, else /etc/talkie/talkie.toml.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from talkie import config

log = logging.getLogger("talkie")

#: The parser's description (not ``__doc__``: ``python -OO``, as the unit runs it, drops that).
DESCRIPTION = "talkie: the command line (thin: it parses, then hands over)."


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="talkie", description=DESCRIPTION)
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", default=None, help=CONFIG_HELP)
    cfg = sub.add_parser("config", help="work with the config file")
    cfg_sub = cfg.add_subparsers(dest="action", required=True)
    check = cfg_sub.add_parser(
        "check",
        help="validate and print the effective settings",
        description="Validate a config file and print the settings in effect; the file checked "
        "is named on stderr. Exit 0 if it is good, 78 if not.",
    )
    check.add_argument("path", nargs="?", help=CONFIG_HELP)
    check.add_argument("--config", dest="config_opt", default=None, help="the same as PATH")
    cfg_sub.add_parser(
        "default",
        help="print every key with its default, commented out: a config file to start from",
    )
    cfg_sub.add_parser(
        "reference", help="print the config reference in Markdown (docs/config.md is this output)"
    )
    ctl = sub.add_parser(
        "ctl",
        help="ask the running daemon (status, press, say TEXT, ...)",
        description="Send one command to the running talkie over its control "
        "socket. Commands: status, press, release, talk, stop, say TEXT, reset, "
        "help. Exit 0 if done, 1 if talkie said no, 69 if talkie is unreachable.",
    )
    ctl.add_argument(
        "ctl_command",
        metavar="COMMAND",
        help="status, press, release, talk, stop, say, reset or help",
    )
    ctl.add_argument("ctl_text", metavar="TEXT", nargs="*", help="the text for say")
    ctl.add_argument(
        "--socket",
        dest="ctl_socket",
        default=None,
        metavar="PATH",
        help="control socket (default: $RUNTIME_DIRECTORY/control or /run/talkie/control)",
    )
    ctl.add_argument(
        "--json", dest="ctl_json", action="store_true", help="print the raw JSON reply"
    )
    ctl.add_argument(
        "--timeout",
        dest="ctl_timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds to wait for the answer (%(default)s)",
    )
    hw = sub.add_parser(
        "check",
        help="hardware self-test: microphone, speaker, button, LED, API key",
        description="Test what talkie needs, one line per part: "
        "OK, FAIL (with what to do) or SKIP. Exit 0 if nothing failed, 1 if "
        "something did, 78 for a bad config.",
    )
    hw.add_argument("--config", default=None, help=CONFIG_HELP)
    hw.add_argument(
        "--no-input",
        action="store_true",
        help="do not ask for a button press (also skipped when stdin is no terminal)",
    )
    hw.add_argument(
        "--seconds",
        type=_seconds,
        default=3.0,
        help="how long to record from the microphone (%(default)g s)",
    )
    fb = sub.add_parser(
        "firstboot",
        help="install talkie.toml / talkie-api-key from the boot "
        "partition (run by talkie-firstboot.service)",
    )
    fb.add_argument("--boot", default="/boot/firmware", help="boot partition (%(default)s)")
    fb.add_argument("--etc", default="/etc/talkie", help="config folder (%(default)s)")
    fb.add_argument(
        "--owner-group",
        default="talkie",
        help="group of the installed files, when run as root (%(default)s)",
    )
    fb.add_argument(
        "--error-file",
        default="/run/talkie-firstboot-error",
        help="where a problem is left for the LED/status (%(default)s; '' for none)",
    )
    fb.add_argument("--verbose", action="store_true", help="also log debug lines")
    machine = sub.add_parser(
        "machine",
        help="print the state machine: states, transitions, derived rules (Markdown)",
        description="Print the state machine's states and its transition table, generated "
        "from the handlers (docs/machine.md is this output).",
    )
    machine.add_argument(
        "--group",
        default="",
        help="only one state group's part (turns, voice, supervisor, tools, alarms)",
    )
    _update_parser(sub)
    completion = sub.add_parser(
        "completion",
        help="print the shell completion script",
        description="Print the completion script for SHELL (the image installs it as "
        "/usr/share/bash-completion/completions/talkie; try it with: "
        "source <(talkie completion bash)).",
    )
    completion.add_argument("shell", nargs="?", default="bash", choices=["bash"], help="bash")
    return parser


def _update_parser(sub: argparse._SubParsersAction) -> None:
    update = sub.add_parser(
        "update",
        help="install a signed update bundle into the other A/B slot and try it (Debian image)",
        description="Install a signed RAUC bundle (a file or an http(s) URL) into the slot that "
        "is not running, then reboot into it once ('0 tryboot'); the trial boot's health "
        "check commits it or goes back. Exit 0 if installed, 64 for a bad argument, 66 for a "
        "missing file, 69 without A/B slots, 1 if rauc refused the bundle.",
    )
    update.add_argument("bundle", nargs="?", metavar="BUNDLE|URL", help="the .raucb bundle")
    update.add_argument(
        "--no-reboot",
        action="store_true",
        help="install only; `systemctl reboot --reboot-argument='0 tryboot'` tries it",
    )
    what = update.add_mutually_exclusive_group()
    what.add_argument("--status", action="store_true", help="show the slots")
    what.add_argument(
        "--health", action="store_true", help="the trial boot's check (talkie-health.service)"
    )
    what.add_argument(
        "--backend",
        nargs="+",
        metavar="CALL",
        help="RAUC's custom bootloader backend (system.conf)",
    )
    update.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="--health: seconds the trial boot has to become healthy (%(default)g)",
    )


def _update(args: argparse.Namespace) -> int:
    from talkie.provision.update import backend, command, health

    if args.backend:
        return backend.main(args.backend)
    if args.health:
        return health.main(args.timeout)
    if args.status:
        return command.status()
    if args.bundle is None:
        print("talkie update: no bundle given: talkie update BUNDLE.raucb|URL", file=sys.stderr)
        return command.EX_USAGE
    return command.install(args.bundle, reboot=not args.no_reboot)


CONFIG_HELP = f"config file (default: ${config.PATH_VARIABLE}, else {config.DEFAULT_PATH})"


class _Version(argparse.Action):
    """``--version``: the version is looked up only when asked for (it costs an import)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kw: object) -> None:
        super().__init__(
            option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="print the version"
        )

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from talkie import version

        print(f"talkie {version()}")
        parser.exit()


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.5 <= value <= 60:
        raise argparse.ArgumentTypeError(f"{value:g} is out of range; allowed 0.5 to 60")
    return value


def _load(path: str):
    """Settings, or a printed error and EX_CONFIG."""
    try:
        return config.load(path)
    except config.ConfigError as exc:
        print(f"talkie: {exc}", file=sys.stderr)
        return None


def _config_check(args: argparse.Namespace) -> int:
    given = args.path or args.config_opt
    path = config.config_path(given)
    if given:
        checked = f"# checked {path}"
    elif os.environ.get(config.PATH_VARIABLE):
        checked = f"# checked {path} (from ${config.PATH_VARIABLE})"
    else:
        checked = f"# checked {path} (the default; ${config.PATH_VARIABLE} names another)"
    settings = _load(path)
    if settings is None:  # (each line of the refusal names the file)
        return config.EX_CONFIG
    from talkie.config.credentials import KeyProblem, load_api_key

    print(config.describe(settings))
    key = load_api_key(settings.live.api_key_file)
    if isinstance(key, KeyProblem):
        print(f"# API key: missing: {key.message}")
    else:
        print(f"# API key: set (from {key.source}; not shown)")
    for note in settings.notes:
        print(f"talkie: warning: {note}", file=sys.stderr)
    print(f"{checked}: OK", file=sys.stderr)
    return 0


def _config(args: argparse.Namespace) -> int:
    if args.action == "check":
        return _config_check(args)
    from talkie.config import reference

    print(
        reference.markdown() if args.action == "reference" else reference.default_config(), end=""
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    settings = _load(config.config_path(args.config))
    if settings is None:
        return config.EX_CONFIG
    from talkie.shell import main

    return main.run(settings)


def _machine(args: argparse.Namespace) -> int:
    from talkie.core.machine import table

    if args.group:
        try:
            print(table.group_text(table.group_named(args.group)), end="")
        except KeyError:
            names = ", ".join(g.group for g in table.GROUPS)
            print(f"talkie: no state group {args.group!r}; allowed: {names}", file=sys.stderr)
            return 2
        return 0
    print(machine_page(), end="")
    return 0


def machine_page() -> str:
    """``talkie machine``: the states and the whole transition table, as Markdown."""
    from talkie.config.settings import DEFAULT_PATTERNS
    from talkie.core.machine import table

    return (
        "# talkie's state machine\n\n"
        "Generated by `talkie machine` from the machine's handler table; do not edit.\n\n"
        "## States\n\n"
        + table.states(lambda name: DEFAULT_PATTERNS[name].words)
        + "\n"
        + table.markdown()
    )


def _ctl(args: argparse.Namespace) -> int:
    from talkie.system import control_client as control  # light: a plain socket, no asyncio

    return control.ctl(
        args.ctl_command,
        args.ctl_text,
        path=args.ctl_socket,
        as_json=args.ctl_json,
        timeout=args.ctl_timeout,
    )


def _check(args: argparse.Namespace) -> int:
    from talkie.provision import checks

    logging.basicConfig(level=logging.ERROR, format="talkie: %(name)s: %(message)s")
    return checks.main(
        config.config_path(args.config), no_input=args.no_input, seconds=args.seconds
    )


def _firstboot(args: argparse.Namespace) -> int:
    from talkie.provision import firstboot

    return firstboot.main(args.boot, args.etc, args.owner_group, args.error_file, args.verbose)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "firstboot":
        return _firstboot(args)
    if args.command == "check":
        return _check(args)
    if args.command == "ctl":
        return _ctl(args)
    if args.command == "update":
        return _update(args)
    if args.command == "run":
        return _run(args)
    if args.command == "machine":
        return _machine(args)
    if args.command == "completion":
        return _completion()
    return _config(args)


def _completion() -> int:
    print(completion_script(), end="")
    return 0


def completion_script() -> str:
    """``talkie completion bash``: bash completion walked from the parser (and the words it
    cannot know: ``ctl``'s commands, ``machine --group``'s groups)."""
    from talkie import completion
    from talkie.core.machine import table
    from talkie.system.control import COMMANDS

    words = {
        ("ctl", "COMMAND"): [usage.split()[0] for usage in COMMANDS],
        ("machine", "--group"): [group.group for group in table.GROUPS],
        ("firstboot", "--owner-group"): [completion.GROUPS],
    }
    return completion.bash(_parser(), words)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

"""``talkie``: the command line (thin: it parses, then hands over).

    talkie run [--config PATH]            the daemon
    talkie config check [--config PATH]   validate a config and print the effective settings
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from talkie import config

log = logging.getLogger("talkie")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="talkie", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", default=config.DEFAULT_PATH, help="config file (%(default)s)")
    cfg = sub.add_parser("config", help="work with the config file")
    cfg_sub = cfg.add_subparsers(dest="action", required=True)
    check = cfg_sub.add_parser("check", help="validate and print the effective settings")
    check.add_argument("path", nargs="?", help="config file (default: --config or %s)"
                       % config.DEFAULT_PATH)
    check.add_argument("--config", dest="config_opt", default=None, help="config file")
    return parser


def _load(path: str):
    """Settings, or a printed error and EX_CONFIG."""
    try:
        return config.load(path)
    except config.ConfigError as exc:
        print(f"talkie: {exc}", file=sys.stderr)
        return None


def _config_check(args: argparse.Namespace) -> int:
    path = args.path or args.config_opt or config.DEFAULT_PATH
    settings = _load(path)
    if settings is None:
        return config.EX_CONFIG
    from talkie.system.credentials import KeyProblem, load_api_key

    print(config.describe(settings))
    key = load_api_key(settings.live.api_key_file)
    if isinstance(key, KeyProblem):
        print(f"# API key: missing: {key.message}")
    else:
        print(f"# API key: set (from {key.source}; not shown)")
    print(f"# {path}: OK", file=sys.stderr)
    return 0


async def _serve(app) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, app.stop)
    await app.run()


def _run(args: argparse.Namespace) -> int:
    settings = _load(args.config)
    if settings is None:
        return config.EX_CONFIG
    from talkie.app import App
    from talkie.system import logs
    from talkie.system.credentials import load_api_key

    logs.setup(settings.log.level)
    key = load_api_key(settings.live.api_key_file)
    log.info("talkie starting (config %s, model %s)", settings.source, settings.live.model)
    asyncio.run(_serve(App(settings, key)))
    log.info("talkie stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        return _run(args)
    return _config_check(args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

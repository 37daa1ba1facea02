"""``talkie firstboot``: take talkie.toml and the API key from the boot partition.

Run as root by talkie-firstboot.service before talkie.service, when the user has put
``talkie.toml`` and/or ``talkie-api-key`` on the FAT boot partition (``/boot/firmware``):

- ``talkie.toml`` is validated as it will be used: a staged copy in the config folder
  (``/etc/talkie``), so relative file references (``ca_file = "ca.pem"``) resolve against
  ``/etc/talkie`` exactly as they will for the daemon. An optional ``[network]`` section
  (hostname, Wi-Fi, SSH key: :mod:`talkie.provision.network`) is checked too, applied to the
  system and removed from the installed file and the boot copy. Valid: it replaces
  ``/etc/talkie/talkie.toml`` (0640 root:talkie) and the boot copy is renamed
  ``talkie.toml.installed`` (it holds no secret). Invalid: ``/etc/talkie`` is left as it was,
  the boot copy is renamed ``talkie.toml.rejected`` and the error (file:line: [section] key:
  ...) is written to ``talkie.toml.error.txt`` next to it.
- ``talkie-api-key`` is stripped of surrounding whitespace, written atomically to
  ``/etc/talkie/api-key`` (0600 root:root: systemd hands it to the daemon as a credential; no
  group may read it), then unlinked from the boot partition (FAT has no secure delete: the
  bytes may remain in free clusters until overwritten).

Any error is also written to ``--error-file`` (``/run/talkie-firstboot-error``, one line per
problem, no secret) for the LED / status to show, and the exit status is non-zero (78 for a
bad config, 65 for a bad key file). Nothing on the boot partition: exit 0, one debug line.
Running it again is harmless: what was handled has been renamed or removed.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import tempfile
from collections.abc import Sequence

from talkie import config
from talkie.config.files import CONFIG_MAX, KEY_MAX, read_file
from talkie.provision import network

log = logging.getLogger("talkie.provision.firstboot")

BOOT_DIR = "/boot/firmware"
ETC_DIR = "/etc/talkie"
ERROR_FILE = "/run/talkie-firstboot-error"
CONFIG_NAME = "talkie.toml"
KEY_NAME = "talkie-api-key"
EX_DATAERR = 65  # sysexits.h: the input data was incorrect


class _Problem(Exception):
    """A user-fixable problem with a file on the boot partition (message has no secret)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _ids(group: str) -> tuple[int, int] | None:
    """(uid, gid) to chown installed files to, or None when not root (then files keep ours)."""
    if os.geteuid() != 0:
        return None
    try:
        return 0, grp.getgrnam(group).gr_gid
    except KeyError:
        log.warning("group %r does not exist; installing files as root:root", group)
        return 0, 0


def _write_atomic(path: str, data: bytes, ids: tuple[int, int] | None, mode: int = 0o640) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder (never half-written)."""
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".")
    try:
        os.fchmod(fd, mode)
        if ids is not None:
            os.fchown(fd, *ids)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def _fsync_dir(folder: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _ensure_etc(etc: str, ids: tuple[int, int] | None) -> None:
    """The config folder (normally made by talkie.tmpfiles at boot: root:talkie 0750)."""
    if not os.path.isdir(etc):
        os.makedirs(etc, mode=0o750)
        if ids is not None:
            os.chown(etc, *ids)


def _install_config(boot: str, etc: str, ids: tuple[int, int] | None) -> None:
    source = os.path.join(boot, CONFIG_NAME)
    data = read_file(source, CONFIG_MAX)
    _ensure_etc(etc, ids)
    # Validate a staged copy in its final folder: relative paths resolve as the daemon sees them.
    fd, staged = tempfile.mkstemp(dir=etc, prefix=".talkie.toml.", suffix=".new")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        problems: list[str] = []
        net = None
        try:
            config.load(staged)  # everything but [network], which the daemon ignores
        except config.ConfigError as exc:
            problems += [p.replace(staged, source) for p in exc.problems]
        if not any(": invalid TOML: " in p for p in problems):
            try:
                net = network.check(source, data.decode("utf-8-sig"))
            except config.ConfigError as exc:
                problems = sorted([*problems, *exc.problems], key=_line_of)
        if net is not None and not problems:
            try:
                data = network.strip(data.decode("utf-8-sig")).encode()
            except ValueError as exc:
                problems.append(f"{source}: [network]: {exc}")
        if problems:
            _reject(boot, problems)
            raise _Problem("\n".join(problems), config.EX_CONFIG) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(staged)
    _write_atomic(os.path.join(etc, CONFIG_NAME), data, ids)
    installed = os.path.join(boot, CONFIG_NAME + ".installed")
    if net is None:
        os.replace(source, installed)
    else:  # the boot copy keeps no Wi-Fi password: what was installed, without [network]
        _write_atomic(installed, data, None, 0o644)
        os.unlink(source)
    with contextlib.suppress(OSError):  # an error note from an earlier, rejected attempt
        os.unlink(os.path.join(boot, CONFIG_NAME + ".error.txt"))
    _fsync_dir(boot)
    log.info(
        "installed %s from the boot partition as %s (the boot copy is now %s.installed)",
        CONFIG_NAME,
        os.path.join(etc, CONFIG_NAME),
        CONFIG_NAME,
    )
    if net is not None:
        # The system whose /etc holds the config folder ("/" for /etc/talkie).
        root = os.path.dirname(os.path.dirname(os.path.abspath(etc)))
        try:
            network.apply(net, root, lambda done: log.info("[network]: %s", done))
        except OSError as err:
            raise _Problem(
                f"{source}: [network]: installed talkie.toml, but cannot write "
                f"{err.filename}: {err.strerror or err}",
                1,
            ) from None


def _line_of(problem: str) -> int:
    """The line number in "file:line: ..." (0 when there is none), to list problems in order."""
    parts = problem.split(":", 2)
    return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else 0


def _reject(boot: str, problems: Sequence[str]) -> None:
    """Keep the bad file aside with the reason next to it, where the user will look."""
    os.replace(os.path.join(boot, CONFIG_NAME), os.path.join(boot, CONFIG_NAME + ".rejected"))
    with open(os.path.join(boot, CONFIG_NAME + ".error.txt"), "w", encoding="utf-8") as fh:
        fh.write(
            "talkie did not install talkie.toml from the boot partition (it was renamed "
            "talkie.toml.rejected):\n"
        )
        fh.writelines(problem + "\n" for problem in problems)
        fh.write("Fix the file, name it talkie.toml again and reboot.\n")
    _fsync_dir(boot)


def _install_key(boot: str, etc: str, ids: tuple[int, int] | None) -> None:
    source = os.path.join(boot, KEY_NAME)
    raw = read_file(source, KEY_MAX)
    try:
        key = raw.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        key = None
    if not key or any(ch.isspace() for ch in key):
        what = "is empty" if key == "" else "is not a single line of text (one API key)"
        os.replace(source, source + ".rejected")
        _fsync_dir(boot)
        raise _Problem(
            f"{source}: {what}; renamed it {KEY_NAME}.rejected; put just the key in "
            f"{KEY_NAME} and reboot",
            EX_DATAERR,
        )
    _ensure_etc(etc, ids)
    root_only = None if ids is None else (0, 0)
    _write_atomic(os.path.join(etc, "api-key"), (key + "\n").encode(), root_only, mode=0o600)
    os.unlink(source)  # FAT has no secure delete: the bytes stay in free clusters for a while
    _fsync_dir(boot)
    log.info(
        "installed the API key from the boot partition as %s and removed %s",
        os.path.join(etc, "api-key"),
        source,
    )


def _report(error_file: str, problems: list[str]) -> None:
    """Leave the problems (no secrets) where the LED/status can pick them up; clear when none."""
    if not error_file:
        return
    try:
        if problems:
            _write_atomic(error_file, "".join(p + "\n" for p in problems).encode(), None, 0o644)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(error_file)
    except OSError as err:
        log.warning("cannot write %s: %s", error_file, err.strerror or err)


def run(
    boot: str = BOOT_DIR, etc: str = ETC_DIR, group: str = "talkie", error_file: str = ERROR_FILE
) -> int:
    """Handle what is on the boot partition; the exit status."""
    steps = [
        (name, step)
        for name, step in ((CONFIG_NAME, _install_config), (KEY_NAME, _install_key))
        if os.path.isfile(os.path.join(boot, name))
    ]
    if not steps:
        log.debug("nothing to do: no %s or %s in %s", CONFIG_NAME, KEY_NAME, boot)
        return 0
    ids = _ids(group)
    status, problems = 0, []
    for name, step in steps:
        try:
            step(boot, etc, ids)
        except _Problem as problem:
            status = status or problem.status
            problems.append(str(problem))
            for line in str(problem).splitlines():
                log.error("%s", line)
        except OSError as err:
            status = status or 1
            where = err.filename or os.path.join(boot, name)
            problems.append(f"{where}: {err.strerror or err}")
            log.error(
                "cannot install %s from the boot partition: %s: %s",
                name,
                where,
                err.strerror or err,
            )
    _report(error_file, problems)
    return status


def main(
    boot: str = BOOT_DIR,
    etc: str = ETC_DIR,
    group: str = "talkie",
    error_file: str = ERROR_FILE,
    verbose: bool = False,
) -> int:
    """Entry point of ``talkie firstboot``: logs to stderr (the journal under systemd)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="talkie firstboot: %(message)s"
    )
    return run(boot, etc, group, error_file)

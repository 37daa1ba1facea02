"""Reading the files the settings come from, safely: the config itself, the files it names and the
API key's. Each must be a regular file (a FIFO would hang the reader, ``/dev/zero`` would fill the
memory), no larger than its cap; a file that is not is an :class:`OSError` with a short reason, as
a missing one is. Nothing here waits: the file is opened without blocking, then checked.
"""

from __future__ import annotations

import os
import stat

#: The most a config file may hold (the shipped one, fully commented, is about 12 kB).
CONFIG_MAX = 1 << 20
#: The most a system instruction file may hold (about 16,000 words of instruction).
INSTRUCTION_MAX = 64 << 10
#: The most a CA bundle may hold (a whole system bundle is about 220 kB).
CA_MAX = 1 << 20
#: The most an API key file may hold (a key is 39 characters).
KEY_MAX = 4 << 10

_KINDS = (
    (stat.S_ISDIR, "is a directory"),
    (stat.S_ISFIFO, "is a FIFO, not a regular file"),
    (stat.S_ISCHR, "is a device, not a regular file"),
    (stat.S_ISBLK, "is a device, not a regular file"),
    (stat.S_ISSOCK, "is a socket, not a regular file"),
)


class NotAFile(OSError):
    """The path names something other than a regular file."""


class TooLarge(OSError):
    """The file is larger than its cap."""


def size_words(n: int) -> str:
    """``n`` bytes as a person says it: "64 kB", "1 MB"."""
    if n >= 1 << 20:
        return f"{n / (1 << 20):g} MB"
    return f"{n / (1 << 10):g} kB" if n >= 1 << 10 else f"{n} bytes"


def read_file(path: str | os.PathLike[str], limit: int) -> bytes:
    """The whole content of the regular file at ``path``, at most ``limit`` bytes.

    Raises :class:`NotAFile` (a FIFO, a device, a directory), :class:`TooLarge`, or the
    :class:`OSError` that opening or reading gave (no such file, permission denied).
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        for is_kind, words in _KINDS:
            if is_kind(mode):
                raise NotAFile(words)
        if not stat.S_ISREG(mode):
            raise NotAFile("not a regular file")
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(limit + 1 - size, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise TooLarge(f"larger than {size_words(limit)}")
        return b"".join(chunks)
    finally:
        os.close(fd)

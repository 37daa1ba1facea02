"""Reasons as a person reads them: one line of words, of bounded length.

Whatever an adapter reports (a server's close reason, an exception's text, a device list) may be
long, span lines or hold binary: what reaches the journal, the status and ``talkie ctl status`` is
:func:`one_line` of it. The whole detail, capped, goes to the debug log where it arose.
"""

from __future__ import annotations

#: The longest reason shown to a person.
REASON_MAX = 200


def one_line(text: str, limit: int = REASON_MAX) -> str:
    """``text`` on one line (whitespace folded, unprintable characters dropped), cut to at most
    ``limit`` characters with "..." where it was cut."""
    folded = " ".join("".join(ch if ch.isprintable() else " " for ch in text[: limit * 4]).split())
    if len(folded) <= limit and len(text) <= limit * 4:
        return folded
    return folded[: limit - 3].rstrip() + "..."

"""The Gemini API key: where it comes from, and how it stays out of every log line
(:func:`guard_secret`; :mod:`talkie.system.logs` applies it to every record of the tree).

Looked up in this order (the first that gives a non-empty key wins):

1. ``$CREDENTIALS_DIRECTORY/gemini-api-key``: systemd's ``LoadCredential=`` (the appliance's way);
2. ``[live] api_key_file`` from the config;
3. the ``GEMINI_API_KEY`` then ``GOOGLE_API_KEY`` environment variables (for a developer's shell).

The key is wrapped in :class:`Secret`, whose ``str``/``repr`` never show it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from talkie.config.files import KEY_MAX, read_file
from talkie.config.text import why

CREDENTIAL_NAME = "gemini-api-key"
ENV_NAMES = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
#: Where the appliance keeps the key; named in the message that asks for one.
KEY_PATH_HINT = "/etc/talkie/api-key"


class Secret:
    """A string that does not print itself."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self.source = source

    def reveal(self) -> str:
        """The key itself: only for the one place that hands it to the SDK."""
        return self._value

    def redact(self, text: str) -> str:
        """``text`` with every occurrence of the key replaced by ``***``."""
        return text.replace(self._value, "***") if self._value else text

    @property
    def home(self) -> str:
        """Where a person puts a better key, for this key's source: the file the systemd
        credential is fed from, the ``api_key_file``, or the environment variable."""
        if self.source == f"credential {CREDENTIAL_NAME}":
            return KEY_PATH_HINT
        if self.source.startswith("$"):
            return f"the {self.source[1:]} environment variable"
        return self.source

    def __repr__(self) -> str:
        return f"Secret(<hidden>, source={self.source!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class KeyProblem:
    """Why no key could be read, in words that say what to do."""

    message: str


def _read(path: Path) -> str:
    """The key in ``path``: a regular file of at most ``KEY_MAX`` bytes of UTF-8 text."""
    return read_file(path, KEY_MAX).decode("utf-8-sig").strip()


class SecretProblem(Exception):
    """Why a secret's file could not be read, in words fit to show (never the secret)."""


def read_secret(
    path: str, what: str, credential: str | None = None, *, skip_empty: bool = True
) -> Secret:
    """A secret kept in a file (a token, a password): the systemd credential file ``credential``
    if there is one (and, with ``skip_empty``, it is not empty: an unset secret the service must
    still load), else ``path``; the text without surrounding blanks. :class:`SecretProblem`
    names ``what`` ("the token file") and the file if it cannot be read, is not text, or is
    empty."""
    if credential:
        with contextlib.suppress(OSError):
            if os.path.getsize(credential) > 0 or not skip_empty:
                path = credential
    try:
        secret = _read(Path(path))
    except OSError as exc:
        raise SecretProblem(f"cannot read {what} {path}: {why(exc)}") from None
    except UnicodeDecodeError:
        raise SecretProblem(f"{what} {path} is not text") from None
    if not secret:
        raise SecretProblem(f"{what} {path} is empty")
    return Secret(secret, path)


def load_api_key(
    api_key_file: str = "", env: Mapping[str, str] | None = None
) -> Secret | KeyProblem:
    """Find the API key (see the module docstring for the order)."""
    env = os.environ if env is None else env
    tried: list[str] = []
    candidates: list[tuple[Path, str]] = []
    if env.get("CREDENTIALS_DIRECTORY"):
        path = Path(env["CREDENTIALS_DIRECTORY"]) / CREDENTIAL_NAME
        candidates.append((path, f"credential {CREDENTIAL_NAME}"))
    if api_key_file:
        candidates.append((Path(api_key_file), str(api_key_file)))
    for path, source in candidates:
        try:
            value = _read(path)
        except FileNotFoundError:
            tried.append(f"{path} (missing)")
            continue
        except OSError as exc:
            tried.append(f"{path} ({why(exc)})")
            continue
        except UnicodeDecodeError:
            tried.append(f"{path} (not text)")
            continue
        if value:
            return Secret(value, source)
        tried.append(f"{path} (empty)")
    for name in ENV_NAMES:
        if env.get(name, "").strip():
            return Secret(env[name].strip(), f"${name}")
    where = "; ".join(tried) if tried else "no key file configured and no GEMINI_API_KEY set"
    # what to do first: a status line may be cut short, never its advice
    return KeyProblem(f"no API key: put your Gemini API key in {KEY_PATH_HINT} ({where})")


#: Third-party loggers that see the Live handshake; websockets.client logs request headers
#: (x-goog-api-key among them) at DEBUG.
HANDSHAKE_LOGGERS = (
    "websockets.client",
    "websockets",
    "google_genai",
    "google_genai.live",
    "google_genai._api_client",
    "httpx",
)


class Redactor(logging.Filter):
    """Rewrites a record so that ``secret`` never leaves it (message, arguments, traceback text)."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secret:
            return True
        message = record.getMessage()
        if self.secret in message:
            record.msg, record.args = message.replace(self.secret, "***"), None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            if self.secret in text:
                record.exc_info, record.exc_text = None, text.replace(self.secret, "***")
        return True


def guard_secret(secret: str, loggers: tuple[str, ...] = HANDSHAKE_LOGGERS) -> None:
    """Install a :class:`Redactor` for ``secret`` on the loggers that could see it (once each)."""
    for name in (*loggers, "talkie"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, Redactor) and f.secret == secret for f in logger.filters):
            logger.addFilter(Redactor(secret))

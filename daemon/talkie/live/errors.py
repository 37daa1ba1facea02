"""What went wrong with a Live session, in words, and whether retrying can help.

``classify(exc)`` turns whatever the SDK, websockets, TLS or the network raised into a
:class:`Failure`: a one-line reason a person can act on, and ``fatal`` when only a person can fix it
(a rejected key, an unknown model, an untrusted certificate), so the device does not hammer the
service.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass

from talkie.config.credentials import KEY_PATH_HINT
from talkie.core.words import one_line


@dataclass(frozen=True)
class Failure:
    reason: str
    fatal: bool = False


def _first(exc: BaseException) -> BaseException:
    """The first leaf of an exception group (what a TaskGroup raises)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _about_key(text: str) -> bool:
    low = text.lower()
    return "api key" in low or "api_key" in low or "permission" in low


def _close_failure(code: int | None, message: str, model: str, key_home: str) -> Failure:
    text = one_line(message.strip() or "no reason given", 120)
    low = text.lower()
    if code in (1007, 1008) and _about_key(text):
        return Failure(f"API key rejected: put a valid key in {key_home}", fatal=True)
    if code == 1008 and ("not found" in low or "model" in low):
        return Failure(
            f"model {model!r} is not available for Live ({text}): set [live] model to a Live model",
            fatal=True,
        )
    if code == 1008:
        return Failure(f"refused by Gemini (1008: {text})", fatal=True)
    if code == 1007:
        return Failure(
            f"Gemini rejected a setting (1007: {text}): check [live] in the config", fatal=True
        )
    return Failure(f"closed by the server ({code}: {text})")


def classify(
    exc: BaseException, *, model: str = "", timeout_s: float = 0.0, key_home: str = KEY_PATH_HINT
) -> Failure:
    """Describe ``exc`` for the user, in one line of words, and say whether retrying can help.
    ``key_home`` is where the key in use came from (named when the service rejects it)."""
    failure = _classify(_first(exc), model, timeout_s, key_home)
    return Failure(one_line(failure.reason), failure.fatal)


def _classify(exc: BaseException, model: str, timeout_s: float, key_home: str) -> Failure:
    from google.genai import errors as genai_errors  # already imported by the SDK that raised
    from websockets import exceptions as ws_errors

    if isinstance(exc, genai_errors.APIError):
        # A websocket close carries its reason in ``details`` (a str); an HTTP error in ``message``.
        detail = exc.details if isinstance(exc.details, str) else (exc.message or exc.status or "")
        return _close_failure(exc.code, str(detail), model, key_home)
    if isinstance(exc, ws_errors.InvalidStatus):
        status = exc.response.status_code
        if status in (401, 403):
            return Failure(
                f"API key rejected (HTTP {status}): put a valid key in {key_home}", fatal=True
            )
        if status == 404:
            return Failure(
                "the Live endpoint was not found (HTTP 404): check [live] endpoint and api_version",
                fatal=True,
            )
        return Failure(f"the service answered HTTP {status}")
    if isinstance(exc, ws_errors.ConnectionClosed):
        frame = exc.rcvd
        if frame is None:
            return Failure("connection dropped")
        return _close_failure(frame.code, frame.reason, model, key_home)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Failure(
            f"the endpoint's TLS certificate is not trusted ({exc.verify_message}): "
            "check [live] endpoint and ca_file",
            fatal=True,
        )
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return Failure(
            f"no answer from the service within {timeout_s:g} s"
            if timeout_s
            else "the service did not answer in time"
        )
    if isinstance(exc, socket.gaierror):
        return Failure(f"cannot resolve the service's address ({exc.strerror})")
    if isinstance(exc, ConnectionRefusedError):
        return Failure("connection refused")
    if isinstance(exc, OSError):
        return Failure(f"network error ({exc.strerror or type(exc).__name__})")
    if isinstance(exc, (TypeError, ValueError, KeyError)):  # pydantic's ValidationError too
        return Failure(f"the service sent a message talkie cannot read ({type(exc).__name__})")
    return Failure(f"unexpected {type(exc).__name__}: {exc}")


def _close_frame(exc: BaseException) -> tuple[int | None, str] | None:
    """(code, reason) when the server closed the websocket with a close frame, else None.

    A connection that dropped without one (the SDK's 1006), a timeout, a TLS or HTTP failure is not
    a close: it says nothing about what the server thought of the request.
    """
    exc = _first(exc)
    from google.genai import errors as genai_errors
    from websockets import exceptions as ws_errors

    if isinstance(exc, genai_errors.APIError):
        if exc.code == 1006:
            return None
        detail = exc.details if isinstance(exc.details, str) else (exc.message or exc.status or "")
        return exc.code, str(detail).strip()
    if isinstance(exc, ws_errors.ConnectionClosed) and exc.rcvd is not None:
        return exc.rcvd.code, exc.rcvd.reason.strip()
    return None


def _words(code: int | None, reason: str) -> str:
    return f"{code}: {reason or 'no reason given'}"


def setup_refusal(exc: BaseException) -> str | None:
    """Why the server refused a session's setup, when it did and not over the API key; else None.

    For a setup that carried a resumption handle this means "not with that handle": the caller may
    try once more with a fresh session.
    """
    frame = _close_frame(exc)
    if frame is None or _about_key(frame[1]):
        return None
    low = frame[1].lower()
    if "model" in low and not _about_resumption(low):
        return None  # an unknown model: a fresh session would fail the same way
    return _words(*frame)


def _about_resumption(low: str) -> bool:
    return "resum" in low or "handle" in low


def resumption_refusal(exc: BaseException) -> str | None:
    """Why the server ended a resumed session, when it closed it over the resumption handle."""
    frame = _close_frame(exc)
    if frame is None or _about_key(frame[1]):
        return None
    return _words(*frame) if _about_resumption(frame[1].lower()) else None

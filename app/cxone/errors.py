"""Typed exceptions for CXone DFO calls.

DFO answers errors with an ``ApiErrorCollection`` (``{"errors":[{field?, message, parameters?, errorCode?}],
"uid"?}``); the OAuth endpoints answer ``{"error", "error_description"}``. Both are folded into one hierarchy
so callers can branch on the type (retry, re-auth, give up) and still show CXone's own wording.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

__all__ = [
    "DfoAuthError",
    "DfoConflict",
    "DfoError",
    "DfoNotFound",
    "DfoRateLimited",
    "DfoServerError",
    "DfoTransportError",
    "DfoValidationError",
    "error_from_response",
    "is_retryable",
    "parse_retry_after",
]

# Caps what we keep from an error body: enough to debug, bounded so a huge HTML page can't bloat memory.
_MAX_MESSAGE_CHARS = 1000


class DfoError(Exception):
    """A failed DFO (or CXone auth) call; ``str(exc)`` is CXone's own message."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        errors: list[dict[str, Any]] | None = None,
        uid: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.errors: list[dict[str, Any]] = errors if errors is not None else []
        self.uid = uid

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code!r}, message={self.message!r})"


class DfoAuthError(DfoError):
    """401/403 from DFO, or the token endpoint refused our credentials."""


class DfoNotFound(DfoError):
    """404: unknown channel, thread, message or contact."""


class DfoValidationError(DfoError):
    """400/422: CXone rejected the request body or parameters."""


class DfoConflict(DfoError):
    """409."""


class DfoRateLimited(DfoError):
    """429; ``retry_after`` (seconds) comes from the ``Retry-After`` header when CXone sends one."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = 429,
        errors: list[dict[str, Any]] | None = None,
        uid: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, errors=errors, uid=uid)
        self.retry_after = retry_after


class DfoServerError(DfoError):
    """5xx."""


class DfoTransportError(DfoError):
    """The request never got an HTTP answer (connect error, timeout...)."""


def is_retryable(exc: BaseException) -> bool:
    """True when the same request may succeed later unchanged."""
    if isinstance(exc, DfoRateLimited | DfoServerError | DfoTransportError):
        return True
    return isinstance(exc, DfoError) and exc.status_code == 408


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` is either delta-seconds or an HTTP date; anything else is ignored."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / inf
            return None
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    try:
        return max(0.0, when.timestamp() - current)
    except (OverflowError, OSError, ValueError):
        return None


def _as_str(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _extract(body: Any) -> tuple[list[dict[str, Any]], str | None, str | None]:
    """Return (errors, uid, message) from any decoded JSON body, never raising."""
    errors: list[dict[str, Any]] = []
    uid: str | None = None
    message: str | None = None
    if not isinstance(body, dict):
        return errors, uid, message
    raw_errors = body.get("errors")
    if isinstance(raw_errors, list):
        errors = [item for item in raw_errors if isinstance(item, dict)]
    elif isinstance(raw_errors, dict):
        errors = [raw_errors]
    uid = _as_str(body.get("uid"))
    texts = [m for m in (_as_str(e.get("message")) for e in errors) if m]
    if texts:
        message = "; ".join(dict.fromkeys(texts))
    else:
        # Other shapes seen from CXone: OAuth errors and the BYOC `displayErrorMessage`.
        for key in ("message", "error_description", "displayErrorMessage", "detail", "error"):
            candidate = body.get(key)
            if isinstance(candidate, str) and candidate:
                message = candidate
                break
    return errors, uid, message


def _error_class(status_code: int) -> type[DfoError]:
    if status_code in (401, 403):
        return DfoAuthError
    if status_code == 404:
        return DfoNotFound
    if status_code in (400, 422):
        return DfoValidationError
    if status_code == 409:
        return DfoConflict
    if status_code == 429:
        return DfoRateLimited
    if status_code >= 500:
        return DfoServerError
    return DfoError


def error_from_response(
    status_code: int,
    content: bytes | str | None,
    headers: Mapping[str, str] | None = None,
    *,
    token_endpoint: bool = False,
) -> DfoError:
    """Build (not raise) the typed exception for a non-2xx answer; tolerant of any body.

    ``token_endpoint``: a 4xx from the OAuth token call means our credentials are bad (``DfoAuthError``),
    while 408/429/5xx keep their retryable types.
    """
    body: Any = None
    if content:
        try:
            body = json.loads(content)
        except (ValueError, UnicodeDecodeError, RecursionError):
            body = None
    errors, uid, message = _extract(body)
    if not message:
        message = f"CXone answered HTTP {status_code}"
    message = message[:_MAX_MESSAGE_CHARS]
    cls = _error_class(status_code)
    if token_endpoint and 400 <= status_code < 500 and status_code not in (408, 429):
        cls = DfoAuthError
    if cls is DfoRateLimited:
        retry_after = None
        if headers is not None:
            try:
                retry_after = parse_retry_after(headers.get("retry-after") or headers.get("Retry-After"))
            except Exception:  # a hostile header must never break error mapping
                retry_after = None
        return DfoRateLimited(
            message, status_code=status_code, errors=errors, uid=uid, retry_after=retry_after
        )
    return cls(message, status_code=status_code, errors=errors, uid=uid)

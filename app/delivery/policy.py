"""How an attempt's outcome decides what happens next: delivered, try again later, or dead."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.sql.dml import UpdateBase

from app.config import Settings

OutcomeKind = Literal["delivered", "retry", "dead", "expired"]
Write = tuple[UpdateBase, dict[str, Any]]
"""A statement with bound parameters. The recorder runs equal statements of a batch as one executemany."""

RETRYABLE_STATUS = frozenset({408, 425, 429})


def is_retryable_status(status_code: int) -> bool:
    """408, 425, 429 and 5xx are worth another try; other 4xx (and 3xx: we never follow) are final."""
    return status_code in RETRYABLE_STATUS or status_code >= 500


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to. `after_success` is written in the transaction that records it."""

    kind: OutcomeKind
    error: str | None = None
    status_code: int | None = None
    retry_after: float | None = None
    disable_destination: bool = False
    error_class: str | None = None
    response_excerpt: str | None = None
    after_success: tuple[Write, ...] = ()
    concerns_destination: bool = True  # False when the attempt never reached it (a file's host failed)

    @property
    def counts_against_destination(self) -> bool:
        """Only signs that the far end is unwell open a breaker; a 4xx means it is up and said no."""
        return self.kind == "retry" and self.concerns_destination


def delivered(*after_success: Write, status_code: int | None = None) -> Outcome:
    return Outcome("delivered", status_code=status_code, after_success=after_success)


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float
    cap_seconds: float
    max_attempts: int
    max_age_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            base_seconds=settings.retry_base_seconds,
            cap_seconds=settings.retry_cap_seconds,
            max_attempts=settings.retry_max_attempts,
            max_age_seconds=settings.retry_max_age_seconds,
        )

    def _ceiling(self, attempt: int) -> float:
        return min(self.cap_seconds, self.base_seconds * 2.0 ** max(attempt - 1, 0))

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))]."""
        return random.uniform(0, self._ceiling(attempt))

    def is_last(self, *, attempt: int, created_at: datetime, now: datetime) -> bool:
        """Whether this attempt may be the last: the budget has no attempt left, or the longest backoff
        would end past its age."""
        too_old = now + timedelta(seconds=self._ceiling(attempt)) > created_at + timedelta(
            seconds=self.max_age_seconds
        )
        return attempt >= self.max_attempts or too_old

    def next_attempt(
        self, *, attempt: int, created_at: datetime, now: datetime, retry_after: float | None
    ) -> datetime | None:
        """When to try again, or None when the budget (attempts or age) is spent."""
        if attempt >= self.max_attempts:
            return None
        delay = max(self.backoff(attempt), retry_after or 0.0)
        when = now + timedelta(seconds=delay)
        if when > created_at + timedelta(seconds=self.max_age_seconds):
            return None
        return when

"""`Idempotency-Key` on admin POSTs, with Stripe's semantics: the same key and the same request get the
stored response; the same key with another request is an error. The key row is written in the request's
own transaction, so a request that rolls back leaves no key behind and a retry simply runs again."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import ApiError, StoredResponse
from app.models import IdempotencyKey
from app.models.base import utcnow
from app.security import CredentialBox

SCOPE = "admin-api"
MAX_KEY_LENGTH = 255


def request_hash(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(b"\n".join([method.encode(), path.encode(), body])).hexdigest()


@dataclass
class IdempotentRequest:
    session: AsyncSession
    row: IdempotencyKey | None
    credential_box: CredentialBox

    def remember(self, status_code: int, body: Any) -> None:
        """Store the answer with the request's own changes; sealed, since it may carry a secret once."""
        if self.row is not None:
            self.row.status_code = status_code
            self.row.response_sealed = self.credential_box.seal({"body": body})


async def begin(
    session: AsyncSession,
    *,
    key: str | None,
    fingerprint: str,
    credential_box: CredentialBox,
) -> IdempotentRequest:
    if key is None:
        return IdempotentRequest(session, None, credential_box)
    if not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise ApiError(
            422, "invalid_idempotency_key", f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters."
        )
    existing = await session.get(IdempotencyKey, (SCOPE, key))
    if existing is None:
        row = IdempotencyKey(scope=SCOPE, key=key, request_hash=fingerprint)
        try:
            async with session.begin_nested():
                session.add(row)
                await session.flush()
            return IdempotentRequest(session, row, credential_box)
        except IntegrityError:
            existing = await session.get(IdempotencyKey, (SCOPE, key), populate_existing=True)
            if existing is None:
                raise
    if existing.request_hash != fingerprint:
        raise ApiError(
            409,
            "idempotency_key_reused",
            "This Idempotency-Key was used for a different request; use a new key for a new request.",
        )
    if existing.status_code is None or existing.response_sealed is None:
        raise ApiError(409, "idempotency_key_in_use", "A request with this Idempotency-Key is still running.")
    raise StoredResponse(existing.status_code, credential_box.open(existing.response_sealed)["body"])


async def prune(session: AsyncSession, *, older_than_seconds: float) -> None:
    await session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.created_at < utcnow() - timedelta(seconds=older_than_seconds)
        )
    )

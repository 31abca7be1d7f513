"""Admin API keys with roles. A key reads `byoc_<prefix>_<secret>`; only the secret's hash is stored."""

from __future__ import annotations

import secrets
from enum import IntEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import ApiKey
from app.models.base import utcnow
from app.security import generate_secret, hash_secret, secret_matches


class Role(IntEnum):
    """Ordered: a role may do what every lower role may."""

    viewer = 1
    operator = 2
    admin = 3


async def create_api_key(session: AsyncSession, *, name: str, role: Role) -> tuple[ApiKey, str]:
    prefix = secrets.token_hex(6)
    secret = generate_secret(32)
    key = ApiKey(name=name, role=role.name, prefix=prefix, secret_hash=hash_secret(secret))
    session.add(key)
    await session.flush()
    return key, f"byoc_{prefix}_{secret}"


async def revoke_api_keys_named(session: AsyncSession, name: str) -> None:
    await session.execute(
        update(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
    )


async def authenticate_api_key(session: AsyncSession, presented: str) -> ApiKey | None:
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != "byoc":
        return None
    key = await session.scalar(select(ApiKey).where(ApiKey.prefix == parts[1]))
    if key is None or key.revoked_at is not None or not secret_matches(parts[2], key.secret_hash):
        return None
    return key

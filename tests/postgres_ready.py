"""Exit 0 when the test PostgreSQL answers (used by `make test` to decide on the PostgreSQL run)."""

from __future__ import annotations

import asyncio
import sys

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.db import normalise_url
from tests.conftest import postgres_admin_url


async def answers() -> bool:
    engine = create_async_engine(normalise_url(postgres_admin_url()), connect_args={"timeout": 3})
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        await engine.dispose()


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(answers()) else 1)

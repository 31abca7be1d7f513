"""Migrations go up, down and up again, and describe exactly the tables the models declare."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from app.db import create_engine
from app.migrate import downgrade, upgrade
from app.models import Base


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


def _drift(connection: Connection) -> list[Any]:
    return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


async def _inspect(url: str, fn: Any) -> Any:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(fn)
    finally:
        await engine.dispose()


async def test_up_down_up_leaves_the_same_schema(database_url: str) -> None:
    expected = set(Base.metadata.tables)
    assert await _inspect(database_url, _tables) == expected
    await asyncio.to_thread(downgrade, database_url, "base")
    assert await _inspect(database_url, _tables) == set()
    await asyncio.to_thread(upgrade, database_url)
    assert await _inspect(database_url, _tables) == expected


async def test_autogenerate_finds_no_difference(database_url: str) -> None:
    assert await _inspect(database_url, _drift) == []

"""Group commit: requests that arrive together share one transaction, and none is answered before it
commits; a batch that loses a race on a unique key is retried request by request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import GroupCommit, create_database, create_sessionmaker


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    database = create_database(f"sqlite:///{tmp_path / 'group.db'}")
    async with database.writes.begin() as connection:
        await connection.execute(text("CREATE TABLE items (name TEXT PRIMARY KEY)"))
    yield create_sessionmaker(database.writes)
    await database.dispose()


async def names(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as session:
        return sorted(await session.scalars(text("SELECT name FROM items")))


async def test_requests_that_arrive_together_share_one_commit(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    batches: list[list[str]] = []

    async def insert(session: AsyncSession, units: list[str]) -> list[str]:
        batches.append(units)
        for unit in units:
            await session.execute(text("INSERT INTO items VALUES (:name)"), {"name": unit})
        return [f"stored {unit}" for unit in units]

    group = GroupCommit(sessions, insert)
    answers = await asyncio.gather(*(group.submit(f"n{i}") for i in range(20)))
    assert answers == [f"stored n{i}" for i in range(20)]
    assert batches == [[f"n{i}" for i in range(20)]]
    assert await names(sessions) == sorted(f"n{i}" for i in range(20))


async def test_a_unique_violation_is_retried_alone_and_only_the_culprit_fails(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        await session.execute(text("INSERT INTO items VALUES ('taken')"))
    batches: list[list[str]] = []

    async def insert(session: AsyncSession, units: list[str]) -> list[str]:
        batches.append(units)
        for unit in units:
            await session.execute(text("INSERT INTO items VALUES (:name)"), {"name": unit})
        return units

    group = GroupCommit(sessions, insert)
    outcomes = await asyncio.gather(
        group.submit("a"), group.submit("taken"), group.submit("b"), return_exceptions=True
    )
    assert outcomes[0] == "a"
    assert outcomes[2] == "b"
    assert isinstance(outcomes[1], IntegrityError)
    # The whole batch once, then each unit alone; the culprit gets one more try before its error.
    assert batches == [["a", "taken", "b"], ["a"], ["taken"], ["taken"], ["b"]]
    assert await names(sessions) == ["a", "b", "taken"]


async def test_nothing_is_answered_when_the_commit_fails(sessions: async_sessionmaker[AsyncSession]) -> None:
    async def broken(session: AsyncSession, units: list[str]) -> list[str]:
        for unit in units:
            await session.execute(text("INSERT INTO items VALUES (:name)"), {"name": unit})
        raise RuntimeError("the disk is full")

    group = GroupCommit(sessions, broken)
    outcomes = await asyncio.gather(group.submit("x"), group.submit("y"), return_exceptions=True)
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)
    assert await names(sessions) == []

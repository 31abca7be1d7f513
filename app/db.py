"""Database engine and sessions. SQLite (WAL, busy timeout) by default, PostgreSQL in production."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app.sqlite_inline import connector

SQLITE_BUSY_TIMEOUT_MS = 5000
U = TypeVar("U")
R = TypeVar("R")


def normalise_url(url: str) -> str:
    """Accept the plain URLs people paste (`postgresql://`, `sqlite:///`) and pick the async drivers."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif parsed.drivername == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


SQLITE_READ_POOL = 8
POSTGRES_POOL = 40


@dataclass(frozen=True)
class Database:
    """Where writes and reads go. On PostgreSQL both are one pooled engine.

    On SQLite, which has a single writer, writes use one connection whose transactions start with
    BEGIN IMMEDIATE: tasks queue for it in the pool (cheap, fair, in order) instead of polling SQLite's
    lock, and a transaction never fails half-way because another writer got there first. Reads use their
    own small pool of ordinary (deferred) transactions, which WAL lets run beside the writer.
    """

    writes: AsyncEngine
    reads: AsyncEngine

    async def dispose(self) -> None:
        await self.writes.dispose()
        if self.reads is not self.writes:
            await self.reads.dispose()


def create_database(url: str) -> Database:
    url = normalise_url(url)
    if not is_sqlite(url):
        engine = create_async_engine(url, pool_size=POSTGRES_POOL, max_overflow=20, pool_recycle=1800)
        return Database(writes=engine, reads=engine)
    return Database(
        writes=create_engine(url), reads=_sqlite_engine(url, immediate=False, pool_size=SQLITE_READ_POOL)
    )


def create_engine(url: str) -> AsyncEngine:
    """The engine that writes (see `Database`); enough on its own for migrations and scripts."""
    url = normalise_url(url)
    if not is_sqlite(url):
        return create_async_engine(url, pool_pre_ping=True)
    return _sqlite_engine(url, immediate=True, pool_size=1)


def _sqlite_engine(url: str, *, immediate: bool, pool_size: int) -> AsyncEngine:
    database = make_url(url).database or ":memory:"
    engine = create_async_engine(
        url,
        async_creator=connector(database, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000),
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=120,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def session_scope(maker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit on success, roll back on any error. Services never commit."""
    async with maker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


class GroupCommit(Generic[U, R]):
    """Many requests' writes in one transaction: each request hands its unit of work over and waits;
    one task takes every unit waiting at that moment, runs them together and commits once.

    Under load a commit and its statements are shared by as many requests as arrive while the previous
    batch is written, and a request is answered only after the commit that holds its work. A batch that
    fails on a unique constraint (a concurrent twin in another transaction) is retried unit by unit;
    a unit that fails on its own once more gets the error."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        work: Callable[[AsyncSession, list[U]], Awaitable[list[R]]],
        *,
        max_batch: int = 256,
    ) -> None:
        self._sessions = sessions
        self._work = work
        self._max_batch = max_batch
        self._waiting: asyncio.Queue[tuple[U, asyncio.Future[R]]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    async def wait_idle(self) -> None:
        """Until every unit handed over so far is written (shutdown)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.wait([self._writer])

    async def submit(self, unit: U) -> R:
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.put_nowait((unit, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches())
        return await done

    async def _write_batches(self) -> None:
        while not self._waiting.empty():
            batch = [self._waiting.get_nowait()]
            while len(batch) < self._max_batch and not self._waiting.empty():
                batch.append(self._waiting.get_nowait())
            try:
                await self._settle(batch)
            except IntegrityError:
                for single in batch:
                    await self._settle_alone(single)

    async def _settle_alone(self, single: tuple[U, asyncio.Future[R]]) -> None:
        for tries_left in (1, 0):
            try:
                await self._settle([single])
                return
            except IntegrityError as exc:
                if not tries_left and not single[1].done():
                    single[1].set_exception(exc)

    async def _settle(self, batch: list[tuple[U, asyncio.Future[R]]]) -> None:
        """Run and commit; IntegrityError propagates (the caller retries), other errors go to the units."""
        try:
            async with session_scope(self._sessions) as session:
                results = await self._work(session, [unit for unit, _ in batch])
        except IntegrityError:
            raise
        except BaseException as exc:
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, done), result in zip(batch, results, strict=True):
            if not done.done():
                done.set_result(result)

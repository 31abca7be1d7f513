"""The delivery worker: claims due outbox rows with a lease, performs them concurrently outside any
transaction, renews the leases while they run, and records each outcome.

A crash between claim and record leaves the lease to expire; the row is then claimed again and performed
again. The far side dedupes on the row's idempotency key, so the repeat has no second effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from app.crashpoints import crash_point
from app.delivery.handlers import DeliveryHandlers
from app.delivery.policy import Outcome
from app.delivery.queue import Claim, DeliveryQueue
from app.metrics import Metrics

log = logging.getLogger("byoc.delivery")

RECLAIM_EVERY_SECONDS = 1.0
HOUSEKEEPING_EVERY_SECONDS = 300.0


@dataclass(frozen=True)
class Settled:
    """Where an attempt left its row: delivered, pending (to retry), dead or expired."""

    delivery_id: int
    status: str
    error: str | None


RECORD_BATCH = 200


class DeliveryWorker:
    def __init__(
        self,
        queue: DeliveryQueue,
        handlers: DeliveryHandlers,
        *,
        metrics: Metrics,
        concurrency: int,
        poll_seconds: float,
        grace_seconds: float,
        crash_at: str = "",
    ) -> None:
        self.queue = queue
        self._handlers = handlers
        self._metrics = metrics
        self._concurrency = concurrency
        self._poll = poll_seconds
        self._grace = grace_seconds
        self._crash_at = crash_at
        self._housekeeping: Callable[[], Awaitable[None]] | None = None
        self.owner = f"{uuid.uuid4().hex[:12]}"
        self._running: dict[int, asyncio.Task[Settled | None]] = {}
        self._finished: asyncio.Queue[tuple[Claim, Outcome, asyncio.Future[str | None]]] = asyncio.Queue()
        self._recorder: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.last_heartbeat: float | None = None
        self.looping = False

    def set_housekeeping(self, chores: Callable[[], Awaitable[None]]) -> None:
        """Periodic clean-up, run by whichever worker loops (every few minutes)."""
        self._housekeeping = chores

    def wake(self) -> None:
        """New rows were committed here: look now instead of at the next poll."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._running)

    async def deliver_inline(
        self, ids: Sequence[int], budget: float, *, claimed: Sequence[Claim] = ()
    ) -> list[Settled]:
        """Try these rows now, waiting at most `budget` seconds; past that they finish in the background.
        `claimed` are rows already claimed for us when they were enqueued; the others are claimed here.
        Rows that cannot go yet (an earlier message of the thread is pending, no rate tokens) stay queued.
        Returns what became of those that settled within the budget. With no budget, rows not claimed
        yet are left to the worker loop."""
        held = {claim.id for claim in claimed}
        rest = [delivery_id for delivery_id in ids if delivery_id not in held]
        claims = list(claimed)
        if rest and budget > 0:
            claims += await self.queue.claim(self.owner, len(rest), only=rest)
        tasks = [self._start(claim) for claim in claims]
        if len(claims) < len(ids):
            self.wake()
        if not tasks or budget <= 0:
            return []
        done, _ = await asyncio.wait(tasks, timeout=budget)
        return [settled for task in done if (settled := task.result()) is not None]

    async def wait_idle(self) -> None:
        while self._running:
            await asyncio.gather(*list(self._running.values()), return_exceptions=True)

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and deliver until `stop` is set, then drain within the grace period."""
        log.info("delivery worker %s started (concurrency %s)", self.owner, self._concurrency)
        self.looping = True
        renewer = asyncio.create_task(self._renew_leases(stop))
        last_reclaim = 0.0
        last_housekeeping = time.monotonic()
        try:
            while not stop.is_set():
                self.last_heartbeat = time.monotonic()
                try:
                    if time.monotonic() - last_reclaim >= RECLAIM_EVERY_SECONDS:
                        last_reclaim = time.monotonic()
                        await self.queue.reclaim_expired()
                    if (
                        self._housekeeping
                        and time.monotonic() - last_housekeeping >= HOUSEKEEPING_EVERY_SECONDS
                    ):
                        last_housekeeping = time.monotonic()
                        await self._housekeeping()
                    free = self._concurrency - len(self._running)
                    claims = await self.queue.claim(self.owner, free) if free > 0 else []
                except Exception as exc:  # the database is away: keep the loop, back off a little
                    log.warning("delivery worker cannot claim: %s", type(exc).__name__)
                    claims = []
                    await _sleep_or_stop(stop, self._poll * 5)
                    continue
                for claim in claims:
                    self._start(claim)
                if not claims:
                    self._wake.clear()
                    await _until_woken(stop, self._wake, self._poll)
                elif len(self._running) >= self._concurrency:
                    await asyncio.wait(list(self._running.values()), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.looping = False
            await self._drain()
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            log.info("delivery worker %s stopped", self.owner)

    async def _drain(self) -> None:
        """Let in-flight rows finish within the grace period; hand the rest back for another worker."""
        if not self._running:
            return
        _, pending = await asyncio.wait(list(self._running.values()), timeout=self._grace)
        unfinished = [claim_id for claim_id, task in self._running.items() if task in pending]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.queue.release(self.owner, unfinished)

    def _start(self, claim: Claim) -> asyncio.Task[Settled | None]:
        task = asyncio.create_task(self._execute(claim))
        self._running[claim.id] = task
        task.add_done_callback(lambda _: self._running.pop(claim.id, None))
        return task

    async def _execute(self, claim: Claim) -> Settled | None:
        started = time.perf_counter()
        try:
            outcome = await self._handlers.perform(claim)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or an unexpected error must not lose the row
            log.exception("delivery %s (%s) failed unexpectedly", claim.id, claim.kind)
            outcome = Outcome(
                "retry", error=f"unexpected {type(exc).__name__}", error_class=type(exc).__name__
            )
        crash_point(self._crash_at, "worker.after_perform")
        try:
            status = await self._record(claim, outcome)
        except Exception:
            log.exception(
                "delivery %s: outcome not recorded; its lease will expire and it is retried", claim.id
            )
            return None
        self._metrics.attempt(claim.kind, outcome.kind, time.perf_counter() - started)
        if status is None:
            log.warning("delivery %s: lease lost before its outcome was recorded", claim.id)
            return None
        if status in ("dead", "expired") or outcome.kind == "retry":
            log.info("delivery %s (%s) attempt %s: %s", claim.id, claim.kind, claim.attempt, status)
        return Settled(claim.id, status, outcome.error)

    async def _record(self, claim: Claim, outcome: Outcome) -> str | None:
        """Hand the outcome to the recorder, which commits the outcomes waiting at that moment together."""
        done: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._finished.put_nowait((claim, outcome, done))
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_batches())
        return await done

    async def _record_batches(self) -> None:
        while True:
            batch = [await self._finished.get()]
            while len(batch) < RECORD_BATCH and not self._finished.empty():
                batch.append(self._finished.get_nowait())
            try:
                statuses = await self.queue.record_many(
                    self.owner,
                    [(claim, outcome) for claim, outcome, _ in batch],
                    on_dead=self._handlers.on_dead,
                )
            except Exception as exc:
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, _, done), status in zip(batch, statuses, strict=True):
                if not done.done():
                    done.set_result(status)

    async def close(self) -> None:
        """Stop the recorder once nothing waits on it (shutdown)."""
        await self.wait_idle()
        if self._recorder is not None:
            self._recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recorder
            self._recorder = None

    async def _renew_leases(self, stop: asyncio.Event) -> None:
        interval = max(self.queue.lease.total_seconds() / 3, 0.5)
        while not stop.is_set():
            await _sleep_or_stop(stop, interval)
            try:
                await self.queue.renew(self.owner, list(self._running))
            except Exception as exc:
                log.warning("lease renewal failed: %s", type(exc).__name__)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def _until_woken(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    waits = [asyncio.create_task(stop.wait()), asyncio.create_task(wake.wait())]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)

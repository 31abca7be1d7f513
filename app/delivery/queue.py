"""The outbox as a queue in SQL. PostgreSQL claims with `FOR UPDATE SKIP LOCKED`, so any number of workers
share it; SQLite serialises writers with `BEGIN IMMEDIATE` (see app/db.py), which gives the same guarantees
on one machine. Order per `ordering_key`, rate limits and circuit breakers are decided in the claim."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, exists, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased
from sqlalchemy.sql.dml import UpdateBase

from app.delivery.policy import Outcome, RetryPolicy
from app.models import Delivery, DeliveryAttempt, Destination, Message, Thread
from app.models.base import utcnow

ACTIVE = ("pending", "in_flight")
ATTEMPTS = cast(Table, DeliveryAttempt.__table__)
OnDead = Callable[[AsyncSession, Delivery], Awaitable[None]]
RESPONSE_EXCERPT_CHARS = 500


@dataclass(frozen=True)
class BreakerPolicy:
    failure_threshold: int
    cooldown: timedelta


@dataclass(frozen=True)
class Claim:
    """A row taken for one attempt. `loaded` carries the message and thread when the claim was made in
    the transaction that stored them, so the attempt need not read them back."""

    id: int
    kind: str
    attempt: int
    destination: str
    started_at: datetime
    loaded: tuple[Message, Thread] | None = None
    budget_attempt: int = 1  # this attempt's number within its retry budget (a replay starts a new one)
    budget_from: datetime | None = None  # when that budget began; None: at `started_at`


INLINE_CLAIM = "byoc.inline_claim"


def claim_inline(session: AsyncSession, owner: str, lease: timedelta) -> None:
    """Ask that rows this transaction enqueues be claimed at once by `owner`, where nothing stands before
    them (an earlier row of their lane, a rate limit, a breaker). The request then delivers them after
    commit without a claim transaction of its own; if the process dies first, their lease runs out."""
    session.info[INLINE_CLAIM] = (owner, lease, [])


def inline_claims(session: AsyncSession) -> list[Claim]:
    entry = session.info.get(INLINE_CLAIM)
    return list(entry[2]) if entry else []


@dataclass(frozen=True)
class NewDelivery:
    """A side effect to add to the caller's transaction (see app/delivery/kinds.py for each kind)."""

    kind: str
    channel_id: str
    ordering_key: str
    destination: str
    idempotency_key: str
    message_id: str | None = None
    payload: dict[str, Any] | None = None
    expires_at: datetime | None = None


async def enqueue(session: AsyncSession, *wanted: NewDelivery) -> list[Delivery]:
    """Add side effects to the caller's transaction; they leave only if it commits. Set-based, so a
    batch of a hundred costs the same few statements as one."""
    destinations = await ensure_destinations(session, {spec.destination for spec in wanted})
    inline = session.info.get(INLINE_CLAIM)
    busy = await _busy_lanes(session, {spec.ordering_key for spec in wanted}) if inline else set()
    now = utcnow()
    deliveries: list[Delivery] = []
    claimed: list[Delivery] = []
    for spec in wanted:
        delivery = Delivery(
            kind=spec.kind,
            channel_id=spec.channel_id,
            message_id=spec.message_id,
            ordering_key=spec.ordering_key,
            destination=spec.destination,
            idempotency_key=spec.idempotency_key,
            payload=spec.payload or {},
            expires_at=spec.expires_at,
        )
        if (
            inline is not None
            and spec.ordering_key not in busy
            and _unhindered(destinations[spec.destination])
        ):
            owner, lease, _ = inline
            delivery.status, delivery.lease_owner, delivery.lease_until = "in_flight", owner, now + lease
            delivery.attempts = 1
            claimed.append(delivery)
        busy.add(spec.ordering_key)  # a later row of the same lane waits for this one
        deliveries.append(delivery)
    session.add_all(deliveries)
    await session.flush()
    if inline is not None and claimed:
        owner, _, claims = inline
        await session.execute(
            insert(ATTEMPTS),
            [
                {
                    "delivery_id": delivery.id,
                    "attempt_no": 1,
                    "worker": owner,
                    "started_at": now,
                    "finished_at": now,
                    "latency_ms": 0.0,
                    "outcome": "in_flight",
                }
                for delivery in claimed
            ],
        )
        claims.extend(Claim(d.id, d.kind, 1, d.destination, now) for d in claimed)
    return deliveries


def _unhindered(destination: Destination | None) -> bool:
    """No rate limit or breaker on this destination that the claim query would have to weigh."""
    return (
        destination is not None
        and destination.rate_per_second is None
        and destination.disabled_at is None
        and destination.breaker_state == "closed"
    )


async def _busy_lanes(session: AsyncSession, ordering_keys: set[str]) -> set[str]:
    """Lanes with a row still to deliver: a new row there must wait its turn."""
    query = (
        select(Delivery.ordering_key)
        .where(Delivery.ordering_key.in_(ordering_keys), Delivery.status.in_(ACTIVE))
        .distinct()
    )
    return set(await session.scalars(query))


async def ensure_destinations(session: AsyncSession, keys: set[str]) -> dict[str, Destination | None]:
    """Each destination's row, created on first use (None while another transaction is creating it)."""
    found = {d.key: d for d in await session.scalars(select(Destination).where(Destination.key.in_(keys)))}
    for key in sorted(keys - found.keys()):
        try:
            async with session.begin_nested():
                created = Destination(key=key)
                session.add(created)
        except IntegrityError:
            continue  # created concurrently by another transaction: fine
        found[key] = created
    return {key: found.get(key) for key in keys}


def _excerpt(text: str | None) -> str | None:
    return text[:RESPONSE_EXCERPT_CHARS] if text else None


def _tokens_now(destination: Destination, now: datetime) -> float:
    assert destination.rate_per_second is not None
    elapsed = max((now - destination.tokens_at).total_seconds(), 0.0)
    return min(destination.burst, destination.tokens + elapsed * destination.rate_per_second)


def _may_send(destination: Destination, now: datetime, breaker: BreakerPolicy) -> int | None:
    """How many rows this destination may take now; None when unlimited."""
    if destination.disabled_at is not None:
        return 0
    if destination.breaker_state == "open":
        if destination.opened_at is not None and now - destination.opened_at < breaker.cooldown:
            return 0
        allowed: int | None = 1  # cooled down: one probe
    elif destination.breaker_state == "half_open":
        if destination.probe_until is not None and destination.probe_until > now:
            return 0
        allowed = 1  # the last probe's lease ran out: probe again
    else:
        allowed = None
    if destination.rate_per_second is not None:
        tokens = math.floor(_tokens_now(destination, now))
        allowed = tokens if allowed is None else min(allowed, tokens)
    return allowed


class DeliveryQueue:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        retry: RetryPolicy,
        breaker: BreakerPolicy,
        lease: timedelta,
    ) -> None:
        self._sessions = sessions
        self.retry = retry
        self.breaker = breaker
        self.lease = lease

    async def claim(self, owner: str, limit: int, *, only: Sequence[int] | None = None) -> list[Claim]:
        """Take up to `limit` due rows: each the oldest active row of its ordering key, to a destination
        that is enabled, not broken and within its rate. Each claim is logged as an attempt row."""
        if limit <= 0:
            return []
        now = utcnow()
        async with self._sessions() as session, session.begin():
            destinations = {d.key: d for d in await session.scalars(select(Destination))}
            quotas = {key: _may_send(d, now, self.breaker) for key, d in destinations.items()}
            closed = [key for key, quota in quotas.items() if quota == 0]
            earlier = aliased(Delivery)
            query = (
                select(Delivery)
                .where(
                    Delivery.status == "pending",
                    Delivery.next_attempt_at <= now,
                    ~exists().where(
                        and_(
                            earlier.ordering_key == Delivery.ordering_key,
                            earlier.id < Delivery.id,
                            earlier.status.in_(ACTIVE),
                        )
                    ),
                )
                .order_by(Delivery.id)
                .limit(limit)
                .with_for_update(skip_locked=True, of=Delivery)
            )
            if closed:
                query = query.where(Delivery.destination.not_in(closed))
            if only is not None:
                query = query.where(Delivery.id.in_(list(only)))
            candidates = list(await session.scalars(query))
            taken = await self._apply_quotas(session, candidates, quotas, now)
            claims = []
            for delivery in taken:
                delivery.status = "in_flight"
                delivery.lease_owner = owner
                delivery.lease_until = now + self.lease
                delivery.attempts += 1
                delivery.updated_at = now
                claims.append(
                    Claim(
                        delivery.id,
                        delivery.kind,
                        delivery.attempts,
                        delivery.destination,
                        now,
                        budget_attempt=delivery.attempts - delivery.budget_from_attempt,
                        budget_from=delivery.budget_from,
                    )
                )
            if claims:
                await session.flush()
                await session.execute(
                    insert(ATTEMPTS),
                    [
                        {
                            "delivery_id": claim.id,
                            "attempt_no": claim.attempt,
                            "worker": owner,
                            "started_at": now,
                            "finished_at": now,
                            "latency_ms": 0.0,
                            "outcome": "in_flight",
                        }
                        for claim in claims
                    ],
                )
        return claims

    async def _apply_quotas(
        self, session: AsyncSession, candidates: list[Delivery], quotas: dict[str, int | None], now: datetime
    ) -> list[Delivery]:
        """Spend rate tokens and breaker probes for the candidates, locking each limited destination."""
        limited = sorted({d.destination for d in candidates if quotas.get(d.destination) is not None})
        remaining: dict[str, int] = {}
        for key in limited:
            destination = await session.get(Destination, key, with_for_update=True, populate_existing=True)
            assert destination is not None
            quota = _may_send(destination, now, self.breaker) or 0
            wanted = sum(1 for d in candidates if d.destination == key)
            granted = min(quota, wanted)
            remaining[key] = granted
            if granted and destination.rate_per_second is not None:
                destination.tokens = _tokens_now(destination, now) - granted
                destination.tokens_at = now
            if granted and destination.breaker_state in ("open", "half_open"):
                destination.breaker_state = "half_open"
                destination.probe_until = now + self.lease
            destination.updated_at = now
        taken = []
        for delivery in candidates:
            if delivery.destination in remaining:
                if remaining[delivery.destination] <= 0:
                    continue
                remaining[delivery.destination] -= 1
            taken.append(delivery)
        return taken

    async def renew(self, owner: str, ids: Sequence[int]) -> None:
        if not ids:
            return
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(Delivery)
                .where(
                    Delivery.id.in_(list(ids)), Delivery.lease_owner == owner, Delivery.status == "in_flight"
                )
                .values(lease_until=utcnow() + self.lease)
            )

    async def reclaim_expired(self) -> int:
        """Rows whose worker died or hung: back to pending. Their attempt stays counted."""
        now = utcnow()
        async with self._sessions() as session, session.begin():
            expired = list(
                await session.scalars(
                    select(Delivery.id)
                    .where(Delivery.status == "in_flight", Delivery.lease_until < now)
                    .with_for_update(skip_locked=True)
                )
            )
            if not expired:
                return 0
            await session.execute(
                update(Delivery)
                .where(Delivery.id.in_(expired))
                .values(
                    status="pending", lease_owner=None, lease_until=None, next_attempt_at=now, updated_at=now
                )
            )
            await session.execute(
                update(DeliveryAttempt)
                .where(DeliveryAttempt.delivery_id.in_(expired), DeliveryAttempt.outcome == "in_flight")
                .values(outcome="lease_expired", finished_at=now)
            )
        return len(expired)

    async def release(self, owner: str, ids: Sequence[int]) -> None:
        """On shutdown: hand unfinished rows back at once instead of waiting for their lease to run out."""
        if not ids:
            return
        now = utcnow()
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(Delivery)
                .where(
                    Delivery.id.in_(list(ids)), Delivery.lease_owner == owner, Delivery.status == "in_flight"
                )
                .values(
                    status="pending", lease_owner=None, lease_until=None, next_attempt_at=now, updated_at=now
                )
            )
            await session.execute(
                update(DeliveryAttempt)
                .where(DeliveryAttempt.delivery_id.in_(list(ids)), DeliveryAttempt.outcome == "in_flight")
                .values(outcome="released", finished_at=now)
            )

    async def record_many(
        self, owner: str, finished: Sequence[tuple[Claim, Outcome]], *, on_dead: OnDead | None = None
    ) -> list[str | None]:
        """Write what a batch of attempts came to, in one transaction (group commit: SQLite has one
        writer, and PostgreSQL too is spared a commit per message). For each, the row's new status, or
        None when its lease was lost and another worker owns it now."""
        now = utcnow()
        async with self._sessions() as session, session.begin():
            ids = [claim.id for claim, _ in finished]
            rows = await session.scalars(
                select(Delivery)
                .where(Delivery.id.in_(ids), Delivery.lease_owner == owner, Delivery.status == "in_flight")
                .with_for_update()
            )
            owned = {delivery.id: delivery for delivery in rows}
            statuses: list[str | None] = []
            attempts: list[dict[str, Any]] = []
            writes: dict[UpdateBase, list[dict[str, Any]]] = {}
            by_destination: dict[str, list[Outcome]] = {}
            for claim, outcome in finished:
                delivery = owned.get(claim.id)
                if delivery is None:
                    statuses.append(None)
                    continue
                status = self._settle(delivery, outcome, now)
                statuses.append(status)
                attempts.append(
                    {
                        "d_id": claim.id,
                        "a_no": claim.attempt,
                        "v_outcome": status,
                        "v_finished_at": now,
                        "v_latency_ms": (now - claim.started_at).total_seconds() * 1000,
                        "v_status_code": outcome.status_code,
                        "v_error_class": outcome.error_class,
                        "v_response_excerpt": _excerpt(outcome.response_excerpt or outcome.error),
                    }
                )
                by_destination.setdefault(claim.destination, []).append(outcome)
                if status == "delivered":
                    for statement, values in outcome.after_success:
                        writes.setdefault(statement, []).append(values)
                if status == "dead" and on_dead is not None:
                    await on_dead(session, delivery)
            await session.flush()
            if attempts:
                await session.execute(
                    update(ATTEMPTS)
                    .where(
                        DeliveryAttempt.delivery_id == bindparam("d_id"),
                        DeliveryAttempt.attempt_no == bindparam("a_no"),
                    )
                    .values(
                        outcome=bindparam("v_outcome"),
                        finished_at=bindparam("v_finished_at"),
                        latency_ms=bindparam("v_latency_ms"),
                        status_code=bindparam("v_status_code"),
                        error_class=bindparam("v_error_class"),
                        response_excerpt=bindparam("v_response_excerpt"),
                    ),
                    attempts,
                )
            for statement, params in writes.items():
                await session.execute(statement, params)
            for key, outcomes in by_destination.items():
                await self._update_destination(session, key, outcomes, now)
        return statuses

    def _settle(self, delivery: Delivery, outcome: Outcome, now: datetime) -> str:
        status: str = outcome.kind
        if status == "retry":
            when = self.retry.next_attempt(
                attempt=delivery.attempts - delivery.budget_from_attempt,
                created_at=delivery.budget_from,
                now=now,
                retry_after=outcome.retry_after,
            )
            if when is None:
                status = "dead"
            else:
                delivery.next_attempt_at = when
        delivery.status = "pending" if status == "retry" else status
        delivery.lease_owner = None
        delivery.lease_until = None
        delivery.updated_at = now
        delivery.last_error = outcome.error
        delivery.last_status_code = outcome.status_code
        if delivery.status != "pending":
            delivery.finished_at = now
        return status

    async def _update_destination(
        self, session: AsyncSession, key: str, outcomes: list[Outcome], now: datetime
    ) -> None:
        """A batch's outcomes for one destination, in order: failures after the last success count
        towards the breaker; a success closes it. Conditional, so a healthy destination sees no write."""
        row = Destination.__table__
        disabling = next((o for o in outcomes if o.disable_destination), None)
        if disabling is not None:
            await session.execute(
                update(Destination)
                .where(Destination.key == key)
                .values(disabled_at=now, disabled_reason=disabling.error, updated_at=now)
            )
        last_success = max(
            (
                i
                for i, o in enumerate(outcomes)
                if o.kind in ("delivered", "dead") and o.concerns_destination and not o.disable_destination
            ),
            default=-1,
        )
        if last_success >= 0:
            await session.execute(
                update(Destination)
                .where(
                    Destination.key == key,
                    (Destination.consecutive_failures > 0) | (Destination.breaker_state != "closed"),
                )
                .values(
                    consecutive_failures=0,
                    breaker_state="closed",
                    opened_at=None,
                    probe_until=None,
                    updated_at=now,
                )
            )
        failures = sum(1 for o in outcomes[last_success + 1 :] if o.counts_against_destination)
        if failures:
            result = await session.execute(
                update(Destination)
                .where(Destination.key == key)
                .values(consecutive_failures=Destination.consecutive_failures + failures, updated_at=now)
                .returning(row.c.consecutive_failures, row.c.breaker_state)
            )
            row_after = result.one_or_none()
            if row_after is None:
                return
            count, state = row_after
            if state == "half_open" or (state == "closed" and count >= self.breaker.failure_threshold):
                await session.execute(
                    update(Destination)
                    .where(Destination.key == key)
                    .values(breaker_state="open", opened_at=now, probe_until=None)
                )

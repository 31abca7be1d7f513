"""Operating the outbox: look at deliveries and dead letters, replay them, tune and reset destinations."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.delivery.kinds import CREATE_IN_CXONE, SEND_TO_PROVIDER
from app.errors import ApiError, not_found
from app.models import Delivery, DeliveryAttempt, Destination, Message
from app.models.base import utcnow
from app.schemas.deliveries import DeliveryFilter, DestinationUpdate

REPLAYABLE = ("dead", "expired")


def _filtered(query: Select[Any], filters: DeliveryFilter) -> Select[Any]:
    if filters.status is not None:
        query = query.where(Delivery.status == filters.status)
    if filters.kind is not None:
        query = query.where(Delivery.kind == filters.kind)
    if filters.channel_id is not None:
        query = query.where(Delivery.channel_id == filters.channel_id)
    if filters.destination is not None:
        query = query.where(Delivery.destination == filters.destination)
    if filters.message_id is not None:
        query = query.where(Delivery.message_id == filters.message_id)
    return query


async def list_deliveries(
    session: AsyncSession, filters: DeliveryFilter, *, limit: int, before_id: int | None
) -> list[Delivery]:
    query = _filtered(select(Delivery), filters).order_by(Delivery.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(Delivery.id < before_id)
    return list(await session.scalars(query))


async def get_delivery(session: AsyncSession, delivery_id: int) -> tuple[Delivery, list[DeliveryAttempt]]:
    delivery = await session.get(Delivery, delivery_id)
    if delivery is None:
        raise not_found("delivery", str(delivery_id))
    attempts = await session.scalars(
        select(DeliveryAttempt)
        .where(DeliveryAttempt.delivery_id == delivery_id)
        .order_by(DeliveryAttempt.attempt_no)
    )
    return delivery, list(attempts)


async def _replay(session: AsyncSession, deliveries: list[Delivery]) -> None:
    """Same row, same idempotency key, a fresh retry budget. A replayed message may land after later ones
    of its thread: a dead letter has already left the thread's order."""
    now = utcnow()
    for delivery in deliveries:
        delivery.status = "pending"
        delivery.next_attempt_at = now
        delivery.finished_at = None
        delivery.budget_from_attempt = delivery.attempts
        delivery.budget_from = now
        delivery.replays += 1
        delivery.updated_at = now
    failed_messages = [
        d.message_id for d in deliveries if d.kind in (SEND_TO_PROVIDER, CREATE_IN_CXONE) and d.message_id
    ]
    if failed_messages:
        await session.execute(
            update(Message)
            .where(Message.id.in_(failed_messages), Message.status == "failed")
            .values(status="queued" if deliveries[0].kind == SEND_TO_PROVIDER else "received", error=None)
        )
    await session.flush()


async def replay_delivery(session: AsyncSession, delivery_id: int) -> Delivery:
    delivery = await session.get(Delivery, delivery_id, with_for_update=True)
    if delivery is None:
        raise not_found("delivery", str(delivery_id))
    if delivery.status not in REPLAYABLE:
        raise ApiError(
            409,
            "not_replayable",
            f"Delivery {delivery_id} is {delivery.status}; only dead or expired ones replay.",
        )
    await _replay(session, [delivery])
    return delivery


async def replay_matching(session: AsyncSession, filters: DeliveryFilter, *, limit: int) -> list[int]:
    status = filters.status or "dead"
    if status not in REPLAYABLE:
        raise ApiError(422, "not_replayable", "Bulk replay takes status dead or expired.")
    query = _filtered(select(Delivery), filters.model_copy(update={"status": status}))
    deliveries: list[Delivery] = list(
        await session.scalars(query.order_by(Delivery.id).limit(limit).with_for_update())
    )
    for kind in {d.kind for d in deliveries}:
        await _replay(session, [d for d in deliveries if d.kind == kind])
    return [d.id for d in deliveries]


async def list_destinations(session: AsyncSession) -> list[Destination]:
    return list(await session.scalars(select(Destination).order_by(Destination.key)))


async def update_destination(session: AsyncSession, key: str, data: DestinationUpdate) -> Destination:
    destination = await session.get(Destination, key, with_for_update=True)
    if destination is None:
        raise not_found("destination", key)
    now = utcnow()
    fields = data.model_fields_set
    if "rate_per_second" in fields:
        destination.rate_per_second = data.rate_per_second
        destination.tokens = data.burst or destination.burst
        destination.tokens_at = now
    if "burst" in fields and data.burst is not None:
        destination.burst = data.burst
        destination.tokens = min(destination.tokens, data.burst)
    if data.enabled:
        destination.disabled_at = None
        destination.disabled_reason = None
    if data.reset_breaker:
        destination.breaker_state = "closed"
        destination.consecutive_failures = 0
        destination.opened_at = None
        destination.probe_until = None
    destination.updated_at = now
    await session.flush()
    return destination

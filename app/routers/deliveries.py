"""The outbox seen from outside: deliveries, dead letters and their replay, destinations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import Idempotent, Operator, RuntimeDep, SessionDep, Viewer
from app.models import Delivery, Destination
from app.schemas.admin import Page
from app.schemas.deliveries import (
    AttemptOut,
    BulkReplay,
    DeliveryDetail,
    DeliveryFilter,
    DeliveryOut,
    DestinationOut,
    DestinationUpdate,
    ReplayResult,
)
from app.services import deliveries

router = APIRouter(prefix="/api/v1", tags=["deliveries"])


def _out(delivery: Delivery) -> DeliveryOut:
    return DeliveryOut.model_validate(delivery, from_attributes=True)


def _destination_out(destination: Destination) -> DestinationOut:
    return DestinationOut.model_validate(destination, from_attributes=True)


@router.get("/deliveries", response_model=Page[DeliveryOut])
async def list_deliveries(
    filters: Annotated[DeliveryFilter, Query()],
    session: SessionDep,
    _: Viewer,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: int | None = None,
) -> Page[DeliveryOut]:
    """Newest first. `?status=dead` is the dead-letter queue; page with `before_id`."""
    items = await deliveries.list_deliveries(session, filters, limit=limit, before_id=before_id)
    return Page[DeliveryOut](items=[_out(d) for d in items])


@router.get("/deliveries/{delivery_id}", response_model=DeliveryDetail)
async def get_delivery(delivery_id: int, session: SessionDep, _: Viewer) -> DeliveryDetail:
    delivery, attempts = await deliveries.get_delivery(session, delivery_id)
    return DeliveryDetail(
        **_out(delivery).model_dump(),
        payload=delivery.payload,
        attempt_log=[AttemptOut.model_validate(a, from_attributes=True) for a in attempts],
    )


@router.post("/deliveries/{delivery_id}/replay", response_model=DeliveryOut)
async def replay(
    delivery_id: int, session: SessionDep, runtime: RuntimeDep, _: Operator, idempotent: Idempotent
) -> DeliveryOut:
    """Send a dead delivery again, with its original idempotency key."""
    out = _out(await deliveries.replay_delivery(session, delivery_id))
    idempotent.remember(200, out.model_dump(mode="json"))
    await session.commit()
    runtime.worker.wake()
    return out


@router.post("/deliveries/replay", response_model=ReplayResult)
async def replay_matching(
    data: BulkReplay, session: SessionDep, runtime: RuntimeDep, _: Operator
) -> ReplayResult:
    """Replay every dead (or expired) delivery that matches the filter."""
    ids = await deliveries.replay_matching(
        session, DeliveryFilter.model_validate(data.model_dump(exclude={"limit"})), limit=data.limit
    )
    await session.commit()
    runtime.worker.wake()
    return ReplayResult(replayed=ids)


@router.get("/destinations", response_model=Page[DestinationOut])
async def list_destinations(session: SessionDep, _: Viewer) -> Page[DestinationOut]:
    """Each far end with its rate limit, circuit breaker state and whether it was disabled."""
    return Page[DestinationOut](
        items=[_destination_out(d) for d in await deliveries.list_destinations(session)]
    )


@router.patch("/destinations/{key:path}", response_model=DestinationOut)
async def update_destination(
    key: str, data: DestinationUpdate, session: SessionDep, _: Operator
) -> DestinationOut:
    return _destination_out(await deliveries.update_destination(session, key, data))

"""Shapes of the deliveries (outbox) and destinations API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DeliveryStatus = Literal["pending", "in_flight", "delivered", "dead", "expired"]


class DeliveryFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: DeliveryStatus | None = None
    kind: str | None = Field(None, max_length=40)
    channel_id: str | None = Field(None, max_length=64)
    destination: str | None = Field(None, max_length=300)
    message_id: str | None = Field(None, max_length=36)


class BulkReplay(DeliveryFilter):
    limit: int = Field(1000, ge=1, le=10000)


class AttemptOut(BaseModel):
    attempt_no: int
    worker: str
    started_at: datetime
    finished_at: datetime
    latency_ms: float
    outcome: str
    status_code: int | None
    error_class: str | None
    response_excerpt: str | None


class DeliveryOut(BaseModel):
    id: int
    kind: str
    status: str
    channel_id: str
    message_id: str | None
    destination: str
    ordering_key: str
    idempotency_key: str
    attempts: int
    replays: int
    next_attempt_at: datetime
    last_error: str | None
    last_status_code: int | None
    created_at: datetime
    finished_at: datetime | None


class DeliveryDetail(DeliveryOut):
    payload: dict[str, Any]
    attempt_log: list[AttemptOut]


class ReplayResult(BaseModel):
    replayed: list[int]


class DestinationOut(BaseModel):
    key: str
    rate_per_second: float | None
    burst: float
    breaker_state: str
    consecutive_failures: int
    opened_at: datetime | None
    disabled_at: datetime | None
    disabled_reason: str | None
    updated_at: datetime


class DestinationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate_per_second: float | None = Field(None, gt=0, le=100000, description="null: no limit")
    burst: float | None = Field(None, ge=1, le=100000)
    enabled: bool | None = Field(None, description="true re-enables a destination disabled by a 410")
    reset_breaker: bool | None = None

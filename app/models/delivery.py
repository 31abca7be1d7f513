"""The outbox: side effects waiting to leave the process, their attempts, and each destination's state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime, utcnow


class Delivery(Base):
    """One side effect, written in the same transaction as the state change that caused it.

    Rows with the same `ordering_key` leave strictly in id order; `idempotency_key` is what the far side
    dedupes on, identical on every attempt and on replay.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        Index("ix_deliveries_ordering", "ordering_key", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(40))
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id"), index=True)
    message_id: Mapped[str | None] = mapped_column(ForeignKey("messages.id"), index=True, default=None)
    ordering_key: Mapped[str] = mapped_column(String(120))
    destination: Mapped[str] = mapped_column(String(300), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    budget_from_attempt: Mapped[int] = mapped_column(Integer, default=0)
    budget_from: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    replays: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    lease_owner: Mapped[str | None] = mapped_column(String(40), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class DeliveryAttempt(Base):
    """One try of one delivery. (delivery, attempt number) is unique: a row is claimed once per attempt."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (UniqueConstraint("delivery_id", "attempt_no"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"), index=True)
    attempt_no: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str] = mapped_column(String(40))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)
    latency_ms: Mapped[float] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(String(20))
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    error_class: Mapped[str | None] = mapped_column(String(80), default=None)
    response_excerpt: Mapped[str | None] = mapped_column(Text, default=None)


class Destination(Base):
    """Shared, per far end: a token bucket (rate limit), a circuit breaker, and an off switch (410)."""

    __tablename__ = "destinations"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    rate_per_second: Mapped[float | None] = mapped_column(Float, default=None)
    burst: Mapped[float] = mapped_column(Float, default=1.0)
    tokens: Mapped[float] = mapped_column(Float, default=1.0)
    tokens_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    breaker_state: Mapped[str] = mapped_column(String(10), default="closed")
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    probe_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    disabled_reason: Mapped[str | None] = mapped_column(Text, default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IdempotencyKey(Base):
    """An admin POST's `Idempotency-Key`, with the response it got (encrypted: it may carry a secret)."""

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    response_sealed: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

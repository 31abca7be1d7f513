"""Prometheus metrics. Counters live in the process; queue gauges are read from the database at scrape
time, so every replica reports the same shared truth."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import Delivery, Destination
from app.models.base import utcnow

BREAKER_VALUES = {"closed": 0, "half_open": 1, "open": 2}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._attempts = Counter(
            "byoc_delivery_attempts",
            "Delivery attempts by kind and outcome.",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "byoc_delivery_attempt_seconds",
            "Time one delivery attempt took.",
            ["kind"],
            registry=self.registry,
        )
        self._depth = Gauge(
            "byoc_outbox_rows", "Outbox rows by kind and status.", ["kind", "status"], registry=self.registry
        )
        self._oldest = Gauge(
            "byoc_outbox_oldest_undelivered_seconds",
            "Age of the oldest pending or in-flight row.",
            registry=self.registry,
        )
        self._dead = Gauge(
            "byoc_dead_letters", "Rows that will not be retried without a replay.", registry=self.registry
        )
        self._breakers = Gauge(
            "byoc_breaker_state",
            "Circuit breaker per destination: 0 closed, 1 half-open, 2 open.",
            ["destination"],
            registry=self.registry,
        )
        self._disabled = Gauge(
            "byoc_destination_disabled",
            "1 when a destination was disabled (HTTP 410).",
            ["destination"],
            registry=self.registry,
        )

    def attempt(self, kind: str, outcome: str, seconds: float) -> None:
        self._attempts.labels(kind, outcome).inc()
        self._latency.labels(kind).observe(seconds)

    async def render(self, sessions: async_sessionmaker[AsyncSession]) -> bytes:
        async with sessions() as session:
            counts = (
                await session.execute(
                    select(Delivery.kind, Delivery.status, func.count()).group_by(
                        Delivery.kind, Delivery.status
                    )
                )
            ).all()
            oldest = await session.scalar(
                select(func.min(Delivery.created_at)).where(Delivery.status.in_(("pending", "in_flight")))
            )
            destinations = list(await session.scalars(select(Destination)))
        self._depth.clear()
        dead = 0
        for kind, status, count in counts:
            self._depth.labels(kind, status).set(count)
            dead += count if status == "dead" else 0
        self._dead.set(dead)
        self._oldest.set((utcnow() - oldest).total_seconds() if oldest is not None else 0)
        for destination in destinations:
            self._breakers.labels(destination.key).set(BREAKER_VALUES.get(destination.breaker_state, 0))
            self._disabled.labels(destination.key).set(1 if destination.disabled_at else 0)
        return generate_latest(self.registry)

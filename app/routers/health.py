"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.deps import RuntimeDep

router = APIRouter(tags=["health"])

WORKER_SILENCE_SECONDS = 10.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers. Restart it if this fails."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """Send traffic here: the database answers and, where one runs here, the delivery worker is looping."""
    checks: dict[str, str] = {}
    try:
        async with runtime.database.reads.connect() as connection:
            await connection.execute(text("SELECT 1"))
        checks["database"] = "up"
    except (SQLAlchemyError, OSError):
        checks["database"] = "down"
    if runtime.settings.worker:
        beat = runtime.worker.last_heartbeat
        alive = (
            runtime.worker.looping and beat is not None and time.monotonic() - beat < WORKER_SILENCE_SECONDS
        )
        checks["worker"] = "up" if alive else "down"
    ready = all(state == "up" for state in checks.values())
    return JSONResponse({"status": "ready" if ready else "unavailable", **checks}, 200 if ready else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics(runtime: RuntimeDep) -> Response:
    return Response(await runtime.metrics.render(runtime.reads), media_type=CONTENT_TYPE_LATEST)

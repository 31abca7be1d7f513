"""The application factory: `create_app()` builds the runtime, the routes and the background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from app import __version__
from app.adapters.base import InboundMessage
from app.adapters.loopback import CustomerWrites, LoopbackAdapter
from app.adapters.registry import AdapterContext, AdapterRegistry
from app.config import Settings, get_settings
from app.db import create_database, create_sessionmaker
from app.delivery.attachments import AttachmentRelay
from app.delivery.handlers import DeliveryHandlers
from app.delivery.policy import RetryPolicy
from app.delivery.queue import BreakerPolicy, DeliveryQueue
from app.delivery.worker import DeliveryWorker
from app.errors import install_error_handlers
from app.http import make_http_client
from app.metrics import Metrics
from app.models import Channel
from app.routers import admin, box, deliveries, files, health, loopback, webhooks
from app.runtime import Runtime
from app.security import CredentialBox
from app.services.config_cache import ConfigCache
from app.services.cxone import CxoneGateway
from app.services.files import FileLinks, file_policy

log = logging.getLogger("byoc")

SIMULATOR_PATH = "/cxone-sim"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"


def build_runtime(
    settings: Settings,
    *,
    cxone_http: httpx.AsyncClient | None = None,
    registry: AdapterRegistry | None = None,
) -> Runtime:
    database = create_database(settings.database_url)
    sessions = create_sessionmaker(database.writes)
    reads = create_sessionmaker(database.reads)
    credential_box = CredentialBox(settings.secret_key)
    http = cxone_http or make_http_client(timeout=settings.cxone_timeout_seconds)
    registry = registry or AdapterRegistry.from_entry_points(
        AdapterContext(http=http, public_url=settings.public_url or DEFAULT_PUBLIC_URL)
    )
    gateway = CxoneGateway(http, credential_box)
    metrics = Metrics()
    retry = RetryPolicy.from_settings(settings)
    queue = DeliveryQueue(
        sessions,
        retry=retry,
        breaker=BreakerPolicy(
            failure_threshold=settings.breaker_failure_threshold,
            cooldown=timedelta(seconds=settings.breaker_cooldown_seconds),
        ),
        lease=timedelta(seconds=settings.lease_seconds),
    )
    config = ConfigCache(reads, settings.config_cache_seconds)
    file_links = FileLinks(settings.secret_key, settings.public_url or DEFAULT_PUBLIC_URL)
    files = file_policy(settings)
    attachments = AttachmentRelay(sessions, http, file_links, files, crash_at=settings.crash_at)
    handlers = DeliveryHandlers(
        reads,
        registry=registry,
        gateway=gateway,
        credential_box=credential_box,
        config=config,
        attachments=attachments,
        retry=retry,
    )
    worker = DeliveryWorker(
        queue,
        handlers,
        metrics=metrics,
        concurrency=settings.worker_concurrency,
        poll_seconds=settings.worker_poll_seconds,
        grace_seconds=settings.shutdown_grace_seconds,
        crash_at=settings.crash_at,
    )
    runtime = Runtime(
        settings=settings,
        database=database,
        sessions=sessions,
        reads=reads,
        registry=registry,
        gateway=gateway,
        worker=worker,
        credential_box=credential_box,
        metrics=metrics,
        http=http,
        config=config,
        file_links=file_links,
        files=files,
    )
    worker.set_housekeeping(runtime.housekeeping)
    for name in registry.names():
        adapter = registry.get(name)
        if isinstance(adapter, LoopbackAdapter):
            adapter.on_customer_message(_scripted_answer(runtime))
    return runtime


def _scripted_answer(runtime: Runtime) -> CustomerWrites:
    async def answer(channel_id: str, event: InboundMessage) -> None:
        await runtime.receive_inbound(channel_id, event)

    return answer


async def check_adapters(runtime: Runtime) -> None:
    """Fail start-up, naming the adapter, when a live channel's adapter is not installed."""
    async with runtime.reads() as session:
        names = await session.scalars(select(Channel.adapter).where(Channel.deleted_at.is_(None)).distinct())
        runtime.registry.check_configured(list(names))


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("start-up task failed", exc_info=task.exception())


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or (runtime.settings if runtime else get_settings())
    if not settings.public_url:
        settings = settings.model_copy(update={"public_url": DEFAULT_PUBLIC_URL})
    runtime = runtime or build_runtime(settings)
    runtime.settings = settings

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await check_adapters(runtime)
        stop = asyncio.Event()
        worker_task = asyncio.create_task(runtime.worker.run(stop)) if settings.worker else None
        started = [asyncio.create_task(hook()) for hook in app.state.after_startup]
        for task in started:
            task.add_done_callback(_log_failure)
        try:
            yield
        finally:
            stop.set()
            for task in started:
                task.cancel()
            if worker_task is not None:
                await worker_task
            await runtime.worker.wait_idle()
            await runtime.close()
            if settings.simulator:
                await app.state.simulator.aclose()

    app = FastAPI(
        title="byoc-relay",
        version=__version__,
        summary="NICE CXone Bring Your Own Channel middleware",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.after_startup = []
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(box.router, prefix=settings.box_path)
    app.include_router(admin.router)
    app.include_router(deliveries.router)
    app.include_router(webhooks.router)
    app.include_router(files.router)
    app.include_router(loopback.router)
    if settings.simulator:
        from app.cxone.simulator import CxoneSimulator

        simulator = CxoneSimulator(public_url=settings.public_url + SIMULATOR_PATH)
        app.state.simulator = simulator
        app.mount(SIMULATOR_PATH, simulator.app)
    return app

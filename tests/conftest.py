"""Shared fixtures. Every test gets a freshly migrated database of the kind chosen by BYOC_TEST_DATABASE
(`sqlite`, the default, or `postgres` at BYOC_TEST_POSTGRES_URL), a relay app wired to a CXone simulator
over in-process HTTP, and helpers to set up an integration and a channel the way an admin would."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.adapters.webhook import generate_secret
from app.config import Settings
from app.cxone.simulator import CxoneSimulator
from app.db import create_engine, normalise_url
from app.main import build_runtime, create_app
from app.migrate import upgrade
from app.models import Base, Delivery
from app.runtime import Runtime
from app.services.api_keys import Role, create_api_key
from tests.fakes.provider import FakeProvider

RELAY_URL = "http://relay.test"
CXONE_URL = "http://cxone.test"
TEST_SECRET_KEY = "test-secret-key-0123456789abcdef"
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def database_kind() -> str:
    kind = os.environ.get("BYOC_TEST_DATABASE", "sqlite")
    if kind not in ("sqlite", "postgres"):
        raise RuntimeError(f"BYOC_TEST_DATABASE must be sqlite or postgres, not {kind!r}")
    return kind


def postgres_admin_url() -> str:
    return os.environ.get("BYOC_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


async def _postgres_admin(statement: str) -> None:
    engine = create_async_engine(normalise_url(postgres_admin_url()), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Migrated once per run: a template SQLite file, or a throwaway PostgreSQL database."""
    if database_kind() == "sqlite":
        path = tmp_path_factory.mktemp("db") / "template.db"
        upgrade(f"sqlite+aiosqlite:///{path}")
        yield str(path)
        return
    name = f"byoc_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(_postgres_admin(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_admin_url()).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        asyncio.run(_postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def database_url(migrated_database: str, tmp_path: Path) -> AsyncIterator[str]:
    """A clean, migrated database for this test alone."""
    if database_kind() == "sqlite":
        path = tmp_path / "byoc.db"
        shutil.copyfile(migrated_database, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    yield migrated_database
    engine = create_engine(migrated_database)
    try:
        async with engine.begin() as connection:
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "dev",
        "secret_key": TEST_SECRET_KEY,
        "database_url": database_url,
        "public_url": RELAY_URL,
        "worker": False,
        "cxone_issuer_url": CXONE_URL,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


class _LateASGI:
    """Lets the simulator and the relay reach each other over HTTP although one is built before the other."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class HostRouter(httpx.AsyncBaseTransport):
    """One HTTP client for the whole relay, as in production, with each far end an in-process ASGI app
    chosen by host name: the CXone simulator, and whatever fake providers a test adds."""

    def __init__(self) -> None:
        self.hosts: dict[str, httpx.ASGITransport] = {}

    def add(self, base_url: str, app: Any) -> None:
        self.hosts[httpx.URL(base_url).host] = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = self.hosts.get(request.url.host)
        if transport is None:
            raise httpx.ConnectError(f"no test host named {request.url.host}", request=request)
        return await transport.handle_async_request(request)


@dataclass
class Stack:
    """The relay, the CXone simulator in front of it, and an HTTP client for each."""

    runtime: Runtime
    relay: httpx.AsyncClient
    simulator: CxoneSimulator
    hosts: HostRouter

    async def settle(self) -> None:
        """Wait until inline deliveries and scripted customer answers have finished."""
        await self.runtime.drain()


@asynccontextmanager
async def running_stack(settings: Settings) -> AsyncIterator[Stack]:
    relay_asgi = _LateASGI()
    box_http = httpx.AsyncClient(transport=httpx.ASGITransport(app=relay_asgi), base_url=RELAY_URL)
    simulator = CxoneSimulator(public_url=CXONE_URL, box_http=box_http)
    hosts = HostRouter()
    hosts.add(CXONE_URL, simulator.app)
    runtime = build_runtime(settings, cxone_http=httpx.AsyncClient(transport=hosts))
    app = create_app(settings, runtime=runtime)
    relay_asgi.app = app
    try:
        async with app.router.lifespan_context(app):
            relay_transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=relay_transport, base_url=RELAY_URL) as relay:
                yield Stack(runtime=runtime, relay=relay, simulator=simulator, hosts=hosts)
    finally:
        await box_http.aclose()


@pytest.fixture
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    async with running_stack(settings) as running:
        yield running


async def new_api_key(runtime: Runtime, role: Role) -> str:
    async with runtime.sessions() as session, session.begin():
        _, plaintext = await create_api_key(session, name=f"test-{role.name}", role=role)
    return plaintext


@pytest.fixture
async def admin_headers(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {await new_api_key(stack.runtime, Role.admin)}"}


@dataclass
class Wired:
    """An integration registered on both sides and one loopback channel, as an admin would set them up."""

    integration: dict[str, Any]
    client_secret: str
    cxone_integration_id: str
    channel_id: str


async def wire_integration(
    stack: Stack,
    headers: dict[str, str],
    *,
    use_outbound_api: bool = True,
    channel_config: dict[str, Any] | None = None,
) -> Wired:
    created = await stack.relay.post(
        "/api/v1/integrations",
        headers=headers,
        json={
            "name": "Acme SMS",
            "cxone": {"access_key_id": "demo-access-key", "access_key_secret": "demo-access-secret"},
            "cxone_issuer_url": CXONE_URL,
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    form = body["cxone_form"]
    cxone_integration_id = stack.simulator.register_byoc_integration(
        name=form["Name"],
        box_url=form["Integration Box URL"],
        authorization_url=form["Authorization URL"],
        client_id=form["Client ID"],
        client_secret=form["Client Secret"],
        use_outbound_api=use_outbound_api,
        action_url=form["Action URL"],
        reconnect_url=form["Reconnect URL"],
        remove_url=form["Remove URL"],
    )
    patched = await stack.relay.patch(
        f"/api/v1/integrations/{body['id']}",
        headers=headers,
        json={"cxone_integration_id": cxone_integration_id},
    )
    assert patched.status_code == 200, patched.text
    channel = await stack.relay.post(
        "/api/v1/channels",
        headers=headers,
        json={
            "integration_id": body["id"],
            "name": "Demo loopback",
            "adapter": "loopback",
            "config": channel_config or {},
        },
    )
    assert channel.status_code == 201, channel.text
    return Wired(
        integration=patched.json(),
        client_secret=form["Client Secret"],
        cxone_integration_id=cxone_integration_id,
        channel_id=channel.json()["id"],
    )


BOX_TOKEN_PATH = "/integration/box/1.0/token"


def client_credentials(wired: Wired, *, secret: str | None = None) -> dict[str, str]:
    """The JSON body CXone posts to our Authorization URL."""
    return {
        "grant_type": "client_credentials",
        "client_id": str(wired.integration["cxone_form"]["Client ID"]),
        "client_secret": secret if secret is not None else wired.client_secret,
    }


async def box_headers(stack: Stack, wired: Wired) -> dict[str, str]:
    """What CXone sends on box calls once it holds a token."""
    response = await stack.relay.post(BOX_TOKEN_PATH, json=client_credentials(wired))
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
async def wired(stack: Stack, admin_headers: dict[str, str]) -> Wired:
    return await wire_integration(stack, admin_headers)


PROVIDER_URL = "http://provider.test"


async def webhook_channel(
    stack: Stack, headers: dict[str, str], wired: Wired, *, name: str = "In-house chat", seed: int = 7
) -> tuple[str, FakeProvider]:
    """A `webhook` channel on the wired integration, its far end a fake platform reached as provider.test."""
    secret = generate_secret()
    provider = FakeProvider(secret, seed=seed)
    stack.hosts.add(PROVIDER_URL, provider.app)
    created = await stack.relay.post(
        "/api/v1/channels",
        headers=headers,
        json={
            "integration_id": wired.integration["id"],
            "name": name,
            "adapter": "webhook",
            "config": {"url": f"{PROVIDER_URL}/messages", "secret": secret},
        },
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"]), provider


# Shared by the tests that watch the outbox at work --------------------------------------------------

CUSTOMER = {"idOnExternalPlatform": "+15550100", "name": "Ada"}
FAST_RETRIES = {
    "worker": True,
    "worker_poll_seconds": 0.02,
    "retry_base_seconds": 0.05,
    "retry_cap_seconds": 0.2,
    "breaker_failure_threshold": 1000,
}


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail("condition not reached in time")
        await asyncio.sleep(0.02)


@pytest.fixture
async def live(database_url: str) -> AsyncIterator[Stack]:
    """A stack whose background worker runs, with retries fast enough for a test."""
    async with running_stack(make_settings(database_url, **FAST_RETRIES)) as running:
        yield running


@pytest.fixture
async def live_wired(live: Stack) -> tuple[Stack, Wired, dict[str, str]]:
    headers = {"Authorization": f"Bearer {await new_api_key(live.runtime, Role.admin)}"}
    return live, await wire_integration(live, headers), headers


async def reply(stack: Stack, wired: Wired, channel_id: str, text: str, **extra: Any) -> Any:
    """An agent reply through the box, as CXone sends it."""
    return await stack.relay.post(
        f"/integration/box/2.0/channel/{channel_id}/outbound",
        headers={**await box_headers(stack, wired), **extra.pop("headers", {})},
        json={
            "messageContent": {"type": "TEXT", "payload": {"text": text}},
            "endUserRecipients": [extra.pop("recipient", CUSTOMER)],
            **extra,
        },
    )


async def rows(stack: Stack, model: Any, *where: Any) -> list[Any]:
    async with stack.runtime.sessions() as session:
        return list(await session.scalars(select(model).where(*where)))


async def all_delivered(stack: Stack) -> bool:
    async with stack.runtime.sessions() as session:
        left = await session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.status.in_(("pending", "in_flight")))
        )
    return left == 0

"""`byoc serve --demo`: once the server answers, set up a demo against the mounted CXone simulator and print
what a newcomer needs: the values for CXone's "Add BYOC" form, an API key, and commands that show a message
going both ways."""

from __future__ import annotations

import asyncio
import json
import logging
import shlex

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from app.cxone.simulator import CxoneSimulator
from app.db import session_scope
from app.models import Channel, Integration
from app.runtime import Runtime
from app.schemas.admin import ChannelCreate, CxoneCredentialsIn, IntegrationCreate
from app.services import channels, integrations
from app.services.api_keys import Role, create_api_key, revoke_api_keys_named

log = logging.getLogger("byoc.demo")

DEMO_NAME = "Demo (CXone simulator)"
DEMO_CHANNEL = "Demo loopback customer"
DEMO_KEY_NAME = "demo"
DEMO_CUSTOMER = {"idOnExternalPlatform": "+15550100", "name": "Ada Lovelace"}
SIMULATOR_ACCESS_KEY = ("demo-access-key", "demo-access-secret")


def schedule_demo_setup(app: FastAPI) -> None:
    """Runs after start-up, because the demo talks to the simulator over real HTTP on our own port."""
    app.state.after_startup.append(lambda: set_up_demo(app.state.runtime, app.state.simulator))


async def _wait_until_serving(base_url: str) -> None:
    async with httpx.AsyncClient(timeout=2) as http:
        for _ in range(200):
            try:
                if (await http.get(f"{base_url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"the server did not answer on {base_url}")


async def set_up_demo(runtime: Runtime, simulator: CxoneSimulator) -> None:
    base = runtime.settings.public_url
    await _wait_until_serving(base)
    async with session_scope(runtime.sessions) as session:
        await revoke_api_keys_named(session, DEMO_KEY_NAME)
        _, api_key = await create_api_key(session, name=DEMO_KEY_NAME, role=Role.admin)
        integration = await session.scalar(select(Integration).where(Integration.name == DEMO_NAME))
        if integration is None:
            integration, client_secret = await integrations.create_integration(
                session,
                IntegrationCreate(
                    name=DEMO_NAME,
                    cxone=CxoneCredentialsIn.model_validate(
                        {
                            "access_key_id": SIMULATOR_ACCESS_KEY[0],
                            "access_key_secret": SIMULATOR_ACCESS_KEY[1],
                        }
                    ),
                    cxone_issuer_url=simulator.public_url,
                ),
                settings=runtime.settings,
                credential_box=runtime.credential_box,
            )
        else:
            # The simulator forgets everything on restart, so the secret is rotated and typed in again.
            integration, client_secret = await integrations.rotate_box_secret(session, integration.id)
        form = integrations.cxone_form(integration, runtime.settings, client_secret)
        integration.cxone_integration_id = simulator.register_byoc_integration(
            name=form["Name"],
            box_url=form["Integration Box URL"],
            authorization_url=form["Authorization URL"],
            client_id=form["Client ID"],
            client_secret=client_secret,
            action_url=form["Action URL"],
            reconnect_url=form["Reconnect URL"],
            remove_url=form["Remove URL"],
        )
        await session.flush()
        channel = await session.scalar(
            select(Channel).where(
                Channel.integration_id == integration.id,
                Channel.name == DEMO_CHANNEL,
                Channel.deleted_at.is_(None),
            )
        )
        if channel is None:
            channel, _ = await channels.create_channel(
                session,
                ChannelCreate(integration_id=integration.id, name=DEMO_CHANNEL, adapter="loopback"),
                registry=runtime.registry,
                gateway=runtime.gateway,
                credential_box=runtime.credential_box,
                public_url=runtime.settings.public_url,
            )
        else:
            await runtime.gateway.client_for(integration).create_channel(
                channels.channel_spec(channel, integration)
            )
    print(
        demo_instructions(
            base, simulator.public_url, form, integration.cxone_integration_id, api_key, channel.id
        ),
        flush=True,
    )


def _curl(method: str, url: str, *, key: bool = False, body: object | None = None) -> str:
    parts = ["curl -s"]
    if method != "GET":
        parts.append(f"-X {method}")
    parts.append(shlex.quote(url))
    if key:
        parts.append('-H "Authorization: Bearer $BYOC_KEY"')
    if body is not None:
        parts.append("-H 'Content-Type: application/json' -d " + shlex.quote(json.dumps(body)))
    return " ".join(parts)


def demo_instructions(
    base: str,
    simulator_url: str,
    form: dict[str, str],
    integration_id: str | None,
    api_key: str,
    channel_id: str,
) -> str:
    width = max(len(label) for label in form) + 2
    form_lines = "\n".join(f"  {label + ':':<{width}} {value}" for label, value in form.items())
    steps = [
        (
            "An agent in CXone writes to a customer (the simulator calls our box: 401, token, retry):",
            _curl(
                "POST",
                f"{simulator_url}/_sim/agent-replies",
                body={"channel_id": channel_id, "text": "Hello from CXone!", "recipients": [DEMO_CUSTOMER]},
            ),
        ),
        (
            "The customer's phone (the loopback adapter) received it:",
            _curl("GET", f"{base}/api/v1/loopback/{channel_id}/inbox", key=True),
        ),
        (
            "The customer answers:",
            _curl(
                "POST",
                f"{base}/api/v1/loopback/{channel_id}/customer-messages",
                key=True,
                body={"from": DEMO_CUSTOMER["idOnExternalPlatform"], "text": "Thanks, got it!"},
            ),
        ),
        (
            "CXone now holds both messages on one thread:",
            _curl("GET", f"{simulator_url}/_sim/threads?channel_id={channel_id}"),
        ),
    ]
    step_lines = "\n\n".join(f"{n}. {title}\n   {command}" for n, (title, command) in enumerate(steps, 1))
    return f"""
================================================================================
byoc-relay is running at {base}   (API docs: {base}/docs)

What to type into CXone > ACD > Digital > Bring Your Own Channel > Add:
{form_lines}

Here the CXone simulator at {simulator_url} plays CXone: the form above was
typed into it for you, and it answered the Integration ID {integration_id}.
A loopback channel {channel_id} plays the customer's phone.

Admin API key (shown once; a new one on every start):
  export BYOC_KEY={api_key}

Try it: a message both ways.

{step_lines}
================================================================================
""".strip("\n")

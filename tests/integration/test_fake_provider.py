"""The fake in-house platform behaves like a real far end: it checks signatures, dedupes, fails on cue."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.adapters.base import OutboundMessage
from app.adapters.webhook import WebhookAdapter
from tests.fakes.provider import FakeProvider

SECRET = "whsec_" + base64.b64encode(bytes(range(1, 33))).decode()
BASE = "http://provider.test"
REPO = Path(__file__).resolve().parents[2]


def outbound_body(msg_id: str, text: str = "hello", thread_id: str = "th-1") -> bytes:
    return json.dumps({"type": "message", "id": msg_id, "thread_id": thread_id, "text": text}).encode()


async def post_message(client: httpx.AsyncClient, fake: FakeProvider, msg_id: str) -> httpx.Response:
    body = outbound_body(msg_id)
    return await client.post("/messages", content=body, headers=fake.signed_headers(body, msg_id=msg_id))


@pytest.fixture
def fake() -> FakeProvider:
    return FakeProvider(SECRET, seed=1)


@pytest.fixture
async def client(fake: FakeProvider) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app), base_url=BASE) as http:
        yield http


async def test_a_signed_message_is_delivered_once_and_repeats_are_duplicates(
    fake: FakeProvider, client: httpx.AsyncClient
) -> None:
    first = await post_message(client, fake, "m-1")
    again = await post_message(client, fake, "m-1")
    other = await post_message(client, fake, "m-2")

    assert [first.status_code, again.status_code, other.status_code] == [200, 200, 200]
    assert first.json()["id"].startswith("prov-")
    assert again.json() == first.json()
    assert other.json() != first.json()
    assert fake.delivered_ids() == ["m-1", "m-2"]
    assert fake.duplicates == 1
    assert [a.duplicate for a in fake.attempts] == [False, True, False]
    delivery = fake.deliveries[0]
    assert (delivery.webhook_id, delivery.thread_id, delivery.text) == ("m-1", "th-1", "hello")
    assert abs(delivery.at - time.time()) < 5


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"webhook-id": "m-1", "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"},
        {"webhook-id": "m-1", "webhook-timestamp": str(int(time.time())), "webhook-signature": "garbage"},
        {"webhook-id": "m-1", "webhook-timestamp": str(int(time.time())), "webhook-signature": "v1,!!"},
    ],
    ids=["unsigned", "stale", "malformed", "bad-base64"],
)
async def test_an_unproven_call_is_401_and_recorded_as_rejected(
    fake: FakeProvider, client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.post("/messages", content=outbound_body("m-1"), headers=headers)
    assert response.status_code == 401
    assert fake.rejected == 1
    assert fake.deliveries == []
    assert [a.status for a in fake.attempts] == [401]


async def test_a_call_signed_with_another_secret_is_rejected(
    fake: FakeProvider, client: httpx.AsyncClient
) -> None:
    body = outbound_body("m-1")
    other = "whsec_" + base64.b64encode(bytes(32)).decode()
    response = await client.post("/messages", content=body, headers=fake.signed_headers(body, secret=other))
    assert response.status_code == 401
    assert fake.stats()["rejected"] == 1


async def test_fail_next_fails_that_many_calls_then_recovers(
    fake: FakeProvider, client: httpx.AsyncClient
) -> None:
    fake.fail_next(503, times=2, retry_after=7)
    fake.fail_next(400)
    answers = [await post_message(client, fake, "m-1") for _ in range(4)]

    assert [a.status_code for a in answers] == [503, 503, 400, 200]
    assert answers[0].headers["retry-after"] == "7"
    assert "retry-after" not in answers[2].headers
    assert fake.delivered_ids() == ["m-1"]
    assert fake.duplicates == 0
    assert len(fake.attempts) == 4


async def test_an_outage_fails_everything_with_retry_after_until_it_ends(
    fake: FakeProvider, client: httpx.AsyncClient
) -> None:
    fake.outage(status=503, seconds=0.3, retry_after=2)
    during = [await post_message(client, fake, f"m-{i}") for i in range(3)]
    await asyncio.sleep(0.35)
    after = await post_message(client, fake, "m-0")

    assert {a.status_code for a in during} == {503}
    assert {a.headers["retry-after"] for a in during} == {"2"}
    assert after.status_code == 200
    assert fake.delivered_ids() == ["m-0"]


async def _statuses(seed: int, calls: int) -> list[int]:
    fake = FakeProvider(SECRET, seed=seed)
    fake.fail_ratio(0.5, status=502)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app), base_url=BASE) as http:
        return [(await post_message(http, fake, f"m-{i}")).status_code for i in range(calls)]


async def test_fail_ratio_is_reproducible_with_a_seed() -> None:
    first = await _statuses(seed=42, calls=60)
    second = await _statuses(seed=42, calls=60)
    other = await _statuses(seed=43, calls=60)

    assert first == second
    assert first != other
    assert set(first) == {200, 502}
    assert 15 <= first.count(502) <= 45


async def test_reset_reseeds_and_clears(fake: FakeProvider, client: httpx.AsyncClient) -> None:
    fake.fail_ratio(0.5)
    before = [(await post_message(client, fake, f"m-{i}")).status_code for i in range(20)]
    fake.reset()
    assert fake.stats()["attempts"] == 0
    fake.fail_ratio(0.5)
    after = [(await post_message(client, fake, f"m-{i}")).status_code for i in range(20)]
    assert before == after


async def test_latency_delays_the_answer_after_processing(
    fake: FakeProvider, client: httpx.AsyncClient
) -> None:
    fake.latency(0.2)
    started = time.monotonic()
    response = await post_message(client, fake, "m-1")
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert elapsed >= 0.2
    assert fake.deliveries[0].monotonic - started < 0.15  # recorded on arrival, answered late


async def test_stats_and_deliveries_over_http(fake: FakeProvider, client: httpx.AsyncClient) -> None:
    await post_message(client, fake, "m-1")
    await post_message(client, fake, "m-1")
    await post_message(client, fake, "m-2")
    await client.post("/messages", content=outbound_body("m-3"))  # unsigned

    stats = (await client.get("/_fake/stats")).json()
    assert {k: v for k, v in stats.items() if k != "per_second"} == {
        "attempts": 4,
        "deliveries": 2,
        "duplicates": 1,
        "rejected": 1,
        "delivered_ids_count": 2,
        "file_downloads": 0,
    }
    assert sum(stats["per_second"].values()) == 2
    assert all(abs(int(second) - time.time()) < 5 for second in stats["per_second"])
    deliveries = (await client.get("/_fake/deliveries")).json()
    assert [d["webhook_id"] for d in deliveries] == ["m-1", "m-2"]
    assert {"provider_id", "thread_id", "text", "at"} <= set(deliveries[0])


@pytest.mark.parametrize(
    ("command", "statuses"),
    [
        ({"fail_next": {"status": 429, "times": 2, "retry_after": 3}}, [429, 429, 200]),
        ({"outage": {"status": 500, "seconds": 60}}, [500, 500, 500]),
        ({"fail_ratio": {"ratio": 1.0, "status": 504}}, [504, 504, 504]),
        ({"latency": 0.01}, [200, 200, 200]),
    ],
)
async def test_behaviour_over_http(
    fake: FakeProvider, client: httpx.AsyncClient, command: dict[str, Any], statuses: list[int]
) -> None:
    answer = await client.post("/_fake/behaviour", json=command)
    assert answer.status_code == 200, answer.text
    got = [(await post_message(client, fake, "m-1")).status_code for _ in statuses]
    assert got == statuses
    reset = await client.post("/_fake/behaviour", json={"reset": True})
    assert reset.status_code == 200
    assert (await post_message(client, fake, "m-9")).status_code == 200
    assert fake.stats()["attempts"] == 1


@pytest.mark.parametrize(
    "command",
    [
        {},
        {"explode": 1},
        {"fail_next": {"nope": 1}},
        {"fail_ratio": {"ratio": 2}},
        {"latency": 1, "reset": True},
    ],
)
async def test_a_bad_behaviour_command_is_400(client: httpx.AsyncClient, command: dict[str, Any]) -> None:
    assert (await client.post("/_fake/behaviour", json=command)).status_code == 400


async def test_typing_is_checked_and_recorded(fake: FakeProvider, client: httpx.AsyncClient) -> None:
    body = json.dumps({"type": "typing", "channel_id": "c", "to": {"id": "x"}, "typing": True}).encode()
    fake.fail_next(503)  # failures are for messages; typing is answered
    assert (await client.post("/typing", content=body, headers=fake.signed_headers(body))).status_code == 200
    assert (
        await client.post("/messages", content=body, headers=fake.signed_headers(body))
    ).status_code == 200
    assert (await client.post("/typing", content=body)).status_code == 401
    assert len(fake.typing) == 2
    assert fake.rejected == 1
    assert fake.attempts == []


def test_the_events_it_writes_are_what_the_relay_parses() -> None:
    assert json.loads(FakeProvider.message_event("e", "c", "hi", name="Ann")) == {
        "type": "message",
        "id": "e",
        "from": {"id": "c", "name": "Ann"},
        "text": "hi",
    }
    assert json.loads(FakeProvider.status_event("e", "m", "read")) == {
        "type": "status",
        "id": "e",
        "message_id": "m",
        "status": "read",
    }


# The standalone server -------------------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[str]:
    """`python -m tests.fakes.provider` on a free port; yields its base URL."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.provider",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--secret",
        SECRET,
        "--seed",
        "3",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        assert line.startswith("fake provider listening on http://127.0.0.1:"), line
        yield line.split()[-1]
    finally:
        if process.returncode is None:
            process.terminate()
        try:
            await asyncio.wait_for(process.communicate(), timeout=10)
        except TimeoutError:
            process.kill()
            await process.communicate()
    assert process.returncode in (0, -15), process.returncode


async def test_the_standalone_server_verifies_delivers_and_reports(server: str) -> None:
    fake = FakeProvider(SECRET)  # only to sign, the way the relay would
    async with httpx.AsyncClient(base_url=server, timeout=10) as http:
        delivered = await post_message(http, fake, "m-1")
        unsigned = await http.post("/messages", content=outbound_body("m-2"))
        stats = (await http.get("/_fake/stats")).json()

    assert delivered.status_code == 200
    assert delivered.json()["id"].startswith("prov-")
    assert unsigned.status_code == 401
    assert (stats["attempts"], stats["deliveries"], stats["rejected"], stats["duplicates"]) == (2, 1, 1, 0)


async def test_a_real_timeout_after_processing_makes_the_retry_a_duplicate(server: str) -> None:
    """The classic lost answer: the platform took the message but answered too late."""
    config = {"url": f"{server}/messages", "secret": SECRET, "timeout_seconds": 0.2}
    message = OutboundMessage(
        message_id="m-slow",
        channel_id="ch",
        thread_id="th",
        recipient_id="cust",
        recipient_name=None,
        text="hello",
    )
    async with httpx.AsyncClient(base_url=server, timeout=10) as http:
        adapter = WebhookAdapter(http)
        assert (await http.post("/_fake/behaviour", json={"latency": 0.6})).status_code == 200
        timed_out = await adapter.send(config, message)
        assert (await http.post("/_fake/behaviour", json={"latency": 0})).status_code == 200
        retried = await adapter.send(config, message)
        await asyncio.sleep(0.5)  # let the slow first answer finish on the server side
        stats = (await http.get("/_fake/stats")).json()

    assert not timed_out.ok
    assert timed_out.permanent is False
    assert timed_out.error is not None
    assert timed_out.error.startswith("timeout")
    assert retried.ok
    assert (stats["deliveries"], stats["duplicates"]) == (1, 1)

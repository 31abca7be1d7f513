"""The conformance kit: one suite every channel adapter passes, built-in or third-party.

It is a pytest plugin (entry point `pytest11: byoc_relay_conformance`), loaded wherever byoc-relay is
installed; it marks the kit's tests `adapter_conformance`, so `pytest -m adapter_conformance` runs only
them. To run it against an adapter, describe the adapter with an `AdapterHarness` and subclass
`AdapterConformance` in a test module:

    from app.adapters.conformance import AdapterConformance, AdapterHarness

    class MyHarness(AdapterHarness):
        ...                                   # how to build, configure, sign and answer

    class TestMyAdapter(AdapterConformance):
        harness = MyHarness()

What it checks: the config schema renders, marks secrets and refuses bad configs; a validly signed
request verifies; a flipped body byte, a stale timestamp and a malformed signature header are refused
with `SignatureError` (the relay's 401), never another exception (a 500); a resent event keeps its event
id, so the relay stores it once; a customer's file over the size cap is refused, and one within it
arrives whole, with no more than the cap read from the provider; each provider answer is classified as
done, retry, permanent or "destination gone"; the platform's copy of our own message is recognisable as
an echo; `check()` answers.
The tests are synchronous and run their own event loop, so no async plugin is needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any, ClassVar, Literal, TypeVar

import httpx
import pytest

from app.adapters.base import (
    Attachment,
    ChannelAdapter,
    CheckResult,
    InboundMessage,
    InboundRequest,
    OutboundMessage,
    SendResult,
    SignatureError,
)
from app.services.files import FileTooLarge, fetch_attachment

Expected = Literal["delivered", "retry", "permanent", "destination_gone"]
T = TypeVar("T")

DEFAULT_ANSWERS: dict[int, Expected] = {
    200: "delivered",
    408: "retry",
    429: "retry",
    500: "retry",
    503: "retry",
    400: "permanent",
    404: "permanent",
    410: "destination_gone",
}


class AdapterHarness:
    """Everything the kit needs to know about one adapter. Override what your adapter differs in."""

    receives_webhooks: ClassVar[bool] = True
    """False for an adapter with no inbound webhook (such as the loopback fake customer)."""

    sends_over_http: ClassVar[bool] = True
    """False for an adapter that talks to no provider over HTTP (the send tests are skipped)."""

    signs_body: ClassVar[bool] = True
    """False when the provider authenticates with a shared secret header and signs nothing (Telegram):
    then no adapter can tell a changed body, and the flipped-byte test is skipped."""

    sender_id: ClassVar[str] = "+15550100"
    recipient_id: ClassVar[str] = "+15550100"

    expected_answers: ClassVar[dict[int, Expected]] = DEFAULT_ANSWERS
    """How each HTTP status from the provider must be classified."""

    def adapter(self, http: httpx.AsyncClient) -> ChannelAdapter:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """A working config, secrets included, as `prepare_config` returns it."""
        raise NotImplementedError

    def invalid_configs(self) -> list[dict[str, Any]]:
        """Configs that `prepare_config` must refuse with ValueError."""
        return []

    def inbound_message(
        self, config: Mapping[str, Any], *, event_id: str, sender_id: str, text: str
    ) -> InboundRequest:
        """A customer message as the provider would deliver it, validly signed."""
        raise NotImplementedError

    def stale(self, request: InboundRequest, config: Mapping[str, Any]) -> InboundRequest | None:
        """The same request, validly signed but too long ago; None when the scheme has no timestamp."""
        return None

    def malformed(self, request: InboundRequest) -> InboundRequest:
        """The same request with its signature header garbled (not merely wrong)."""
        raise NotImplementedError

    def echo(
        self, config: Mapping[str, Any], sent: OutboundMessage, provider_message_id: str
    ) -> InboundRequest | None:
        """How the provider reports our own message back, if it ever does; None when it does not."""
        return None

    def inbound_with_file(
        self, config: Mapping[str, Any], *, event_id: str, sender_id: str, name: str, content: bytes
    ) -> InboundRequest | None:
        """A customer message carrying one file with these bytes, validly signed (the bytes inside the
        request, or only named there and served by `media_answer`). None: the adapter takes no files in."""
        return None

    def media_answer(self, request: httpx.Request) -> httpx.Response | None:
        """The provider's answer to a request the relay makes while fetching a customer's file: a look-up
        answer where the provider needs one, or None for the download itself, which the kit serves."""
        return None

    def provider_answer(self, request: httpx.Request, status: int) -> httpx.Response:
        """The provider's answer to a send, with this status (its real error body, where it has one)."""
        if status < 300:
            return httpx.Response(status, json={"id": "prov-1"})
        return httpx.Response(status, json={"error": f"failure {status}"})


class _CountedBytes(httpx.AsyncByteStream):
    """A download served in small chunks, with no announced length, counting what the relay pulls."""

    CHUNK = 512

    def __init__(self, content: bytes) -> None:
        self.content = content
        self.served = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.content), self.CHUNK):
            chunk = self.content[start : start + self.CHUNK]
            self.served += len(chunk)
            yield chunk


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def _tampered(request: InboundRequest, **changes: Any) -> InboundRequest:
    values = {"raw_body": request.raw_body, "headers": request.headers, "url": request.url, **changes}
    return InboundRequest(**values)


def _classified(result: SendResult) -> Expected:
    if result.ok:
        return "delivered"
    if result.disable_destination:
        return "destination_gone"
    return "permanent" if result.permanent else "retry"


def _sample_message(harness: AdapterHarness) -> OutboundMessage:
    return OutboundMessage(
        message_id="0b6f3c1e-5a7d-4c1b-9a55-3f0e2d7c9a10",
        channel_id="byoc_conformance",
        thread_id="thread-1",
        recipient_id=harness.recipient_id,
        recipient_name=None,
        text="Your order has shipped",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "adapter_conformance: the channel adapter conformance kit")


@pytest.mark.adapter_conformance
class AdapterConformance:
    """The suite. Subclass it with `harness = YourHarness()`; pytest collects the subclass."""

    harness: ClassVar[AdapterHarness]

    def _with_adapter(
        self, use: Callable[[ChannelAdapter], Coroutine[Any, Any, T]], transport: Any = None
    ) -> T:
        async def run() -> T:
            async with httpx.AsyncClient(transport=transport) as http:
                return await use(self.harness.adapter(http))

        return _run(run())

    def _adapter(self) -> ChannelAdapter:
        async def build(adapter: ChannelAdapter) -> ChannelAdapter:
            return adapter

        return self._with_adapter(build)

    def _webhooks_only(self) -> None:
        if not self.harness.receives_webhooks:
            pytest.skip(f"{type(self.harness).__name__}: this adapter takes no inbound webhooks")

    def _signed(self) -> tuple[ChannelAdapter, dict[str, Any], InboundRequest]:
        self._webhooks_only()
        adapter, config = self._adapter(), self.harness.config()
        request = self.harness.inbound_message(
            config, event_id="evt-1", sender_id=self.harness.sender_id, text="Hi"
        )
        return adapter, config, request

    # Configuration ----------------------------------------------------------------------------------

    def test_config_schema_renders_and_marks_secrets(self) -> None:
        adapter = self._adapter()
        schema = adapter.config_model.model_json_schema()
        properties = schema.get("properties", {})
        for field in adapter.secret_fields:
            assert field in properties, f"secret field {field!r} is not in the config schema"
            variants = [properties[field], *properties[field].get("anyOf", [])]
            assert any(variant.get("writeOnly") for variant in variants), (
                f"secret field {field!r} is not marked write-only (declare it as SecretStr)"
            )

    def test_a_valid_config_is_accepted_and_bad_ones_refused(self) -> None:
        adapter = self._adapter()
        prepared = adapter.prepare_config(self.harness.config())
        assert isinstance(prepared, dict)
        adapter.config_model.model_validate(prepared)
        for bad in self.harness.invalid_configs():
            with pytest.raises(ValueError):  # noqa: PT011 - any message, as long as it is a ValueError
                adapter.prepare_config(bad)

    # Signatures -------------------------------------------------------------------------------------

    def test_a_valid_signature_is_accepted(self) -> None:
        adapter, config, request = self._signed()
        adapter.verify(request, config)
        [event] = adapter.parse(request, config)
        assert isinstance(event, InboundMessage)
        assert (event.sender_id, event.text) == (self.harness.sender_id, "Hi")

    def test_a_flipped_body_byte_is_refused(self) -> None:
        adapter, config, request = self._signed()
        if not self.harness.signs_body:
            pytest.skip("this provider sends a shared secret and signs no body")
        body = bytearray(request.raw_body)
        body[len(body) // 2] ^= 0x01
        with pytest.raises(SignatureError):
            adapter.verify(_tampered(request, raw_body=bytes(body)), config)

    def test_a_stale_timestamp_is_refused(self) -> None:
        adapter, config, request = self._signed()
        stale = self.harness.stale(request, config)
        if stale is None:
            pytest.skip("this provider's signatures carry no timestamp")
        with pytest.raises(SignatureError):
            adapter.verify(stale, config)

    def test_a_malformed_signature_header_is_refused(self) -> None:
        adapter, config, request = self._signed()
        with pytest.raises(SignatureError):
            adapter.verify(self.harness.malformed(request), config)

    def test_an_unsigned_request_is_refused(self) -> None:
        adapter, config, request = self._signed()
        with pytest.raises(SignatureError):
            adapter.verify(_tampered(request, headers={"content-type": "application/json"}), config)

    # Inbound events ---------------------------------------------------------------------------------

    def test_a_resent_event_keeps_its_event_id(self) -> None:
        """The relay stores an event once per (channel, event id): a resend must carry the same id."""
        adapter, config, _ = self._signed()
        first = self.harness.inbound_message(
            config, event_id="evt-7", sender_id=self.harness.sender_id, text="Hi"
        )
        again = self.harness.inbound_message(
            config, event_id="evt-7", sender_id=self.harness.sender_id, text="Hi"
        )
        ids = [
            event.event_id
            for request in (first, again)
            for event in adapter.parse(request, config)
            if isinstance(event, InboundMessage)
        ]
        assert len(ids) == 2
        assert ids[0]
        assert ids[0] == ids[1]

    def test_an_echo_of_our_own_message_is_recognisable(self) -> None:
        adapter, config, _ = self._signed()
        sent = _sample_message(self.harness)
        echo = self.harness.echo(config, sent, "prov-42")
        if echo is None:
            pytest.skip("this provider never reports our own messages back")
        adapter.verify(echo, config)
        for event in adapter.parse(echo, config):
            if isinstance(event, InboundMessage):
                assert event.is_echo or event.event_id in (sent.message_id, "prov-42"), (
                    "an echo must be flagged is_echo or carry our message's id as its event id"
                )

    def test_an_oversize_attachment_is_refused(self) -> None:
        adapter, config, _ = self._signed()
        limit = 4096
        for size in (limit, limit + 1):
            content = bytes(index % 251 for index in range(size))
            request = self.harness.inbound_with_file(
                config,
                event_id=f"evt-file-{size}",
                sender_id=self.harness.sender_id,
                name="scan.pdf",
                content=content,
            )
            if request is None:
                pytest.skip(f"{type(self.harness).__name__}: this adapter takes no files in")
            adapter.verify(request, config)
            [message] = [e for e in adapter.parse(request, config) if isinstance(e, InboundMessage)]
            [attachment] = message.attachments
            download = _CountedBytes(content)

            def serve(sent: httpx.Request, download: _CountedBytes = download) -> httpx.Response:
                answer = self.harness.media_answer(sent)
                return answer if answer is not None else httpx.Response(200, stream=download)

            async def fetch(attachment: Attachment = attachment, serve: Any = serve) -> bytes:
                async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
                    adapter = self.harness.adapter(http)
                    fetched = await fetch_attachment(http, adapter, config, attachment, limit=limit)
                return fetched.content

            if size <= limit:
                assert _run(fetch()) == content, "a file within the cap must arrive whole"
                continue
            with pytest.raises(FileTooLarge):
                _run(fetch())
            assert download.served <= limit + _CountedBytes.CHUNK, "the download must stop at the cap"

    # Sending ----------------------------------------------------------------------------------------

    def _http_only(self) -> None:
        if not self.harness.sends_over_http:
            pytest.skip(f"{type(self.harness).__name__}: this adapter sends over no provider API")

    def test_provider_answers_are_classified(self) -> None:
        self._http_only()
        config = self.harness.config()
        for status, expected in self.harness.expected_answers.items():
            transport = httpx.MockTransport(
                lambda request, s=status: self.harness.provider_answer(request, s)
            )

            async def send(adapter: ChannelAdapter) -> SendResult:
                return await adapter.send(config, _sample_message(self.harness))

            result = self._with_adapter(send, transport)
            assert _classified(result) == expected, f"HTTP {status}: expected {expected}, got {result}"
            if expected == "delivered":
                assert result.provider_message_id

    def test_a_transport_failure_is_retried_not_raised(self) -> None:
        self._http_only()
        config = self.harness.config()

        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("connection refused", request=request)

        async def send(adapter: ChannelAdapter) -> SendResult:
            return await adapter.send(config, _sample_message(self.harness))

        result = self._with_adapter(send, httpx.MockTransport(refuse))
        assert _classified(result) == "retry"

    def test_check_answers(self) -> None:
        config = self.harness.config()

        async def check(adapter: ChannelAdapter) -> CheckResult:
            return await adapter.check(config)

        transport = httpx.MockTransport(lambda request: self.harness.provider_answer(request, 200))
        result = self._with_adapter(check, transport)
        assert isinstance(result, CheckResult)
        assert result.detail

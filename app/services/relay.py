"""The relay's use cases: accept an agent reply from CXone, accept a customer message from a provider.

Each stores the message and its outbox row in the caller's transaction; the delivery worker does the
talking to the outside world after commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.adapters.base import ChannelAdapter, DeliveryReceipt, InboundEvent, InboundMessage
from app.adapters.registry import AdapterRegistry
from app.delivery.kinds import cxone_create, cxone_status, provider_send, provider_typing
from app.delivery.queue import NewDelivery, enqueue
from app.errors import ApiError, RawJSONError, not_found
from app.models import Channel, Integration, Message, Suppression, Thread
from app.models import InboundEvent as SeenEvent
from app.models.base import new_uuid, utcnow
from app.schemas.box import EndUserRecipient, LegacyReplyRequest, OutboundRequest
from app.services.files import FilePolicy, inbound_entry
from app.services.opt_out import Choice, keyword_choice


@dataclass(frozen=True)
class AcceptedReply:
    message: Message
    thread: Thread
    recipients: list[EndUserRecipient]
    delivery_ids: list[int]
    duplicate: bool = False


@dataclass(frozen=True)
class AcceptedInbound:
    message: Message
    thread: Thread
    duplicate: bool


OPTED_OUT = (
    "This customer opted out (they sent STOP or an equivalent), so nothing is sent to them until they "
    "send START."
)


def outbound_validation_failed(problems: list[tuple[int, str]]) -> RawJSONError:
    """CXone's own error shape for recipients it should not send to."""
    return RawJSONError(
        400,
        {
            "displayErrorMessage": problems[0][1],
            "errorCode": "outboundValidationFailed",
            "errors": [
                {"path": ["endUserRecipients", index, "idOnExternalPlatform"], "message": message}
                for index, message in problems
            ],
        },
    )


def delivery_failed(reason: str | None) -> RawJSONError:
    """A permanent provider error met during the inline attempt, in the shape CXone shows to the agent."""
    message = (reason or "The message could not be delivered.")[:300]
    return RawJSONError(
        400,
        {
            "displayErrorMessage": message,
            "errorCode": "outboundDeliveryFailed",
            "errors": [{"path": ["messageContent"], "message": message}],
        },
    )


def check_recipients(adapter: ChannelAdapter, recipients: list[EndUserRecipient]) -> None:
    problems = [
        (index, error)
        for index, recipient in enumerate(recipients)
        if (error := adapter.recipient_error(recipient.idOnExternalPlatform)) is not None
    ]
    if problems:
        raise outbound_validation_failed(problems)


@dataclass(frozen=True)
class CustomerEvents:
    """What one verified webhook call (or one loopback message) carried: kept together or not at all."""

    channel: Channel
    events: list[InboundEvent]


@dataclass(frozen=True)
class AgentReply:
    """An agent's or bot's reply from the box. `thread` is set when the legacy path already named it."""

    channel: Channel
    request: OutboundRequest | LegacyReplyRequest
    request_key: str | None
    thread: Thread | None = None


@dataclass(frozen=True)
class StoredEvents:
    accepted: list[AcceptedInbound]
    delivery_ids: list[int]
    echoes: int = 0


Unit = CustomerEvents | AgentReply
Refused = ApiError | RawJSONError
Stored = StoredEvents | AcceptedReply | Refused


async def store(
    session: AsyncSession, units: list[Unit], registry: AdapterRegistry, files: FilePolicy
) -> list[Stored]:
    """Store many requests' messages in the caller's transaction with a handful of statements.

    A unit refused for its own content gets its error in its place and writes nothing; the others go on.
    A concurrent twin (the same provider event or CXone request stored by another transaction at this
    moment) fails the flush with a unique violation: the caller retries, and the twin is then found."""
    refusals = {index: error for index, unit in enumerate(units) if (error := _refusal(unit, registry))}
    batch = _Batch(session, registry, files)
    await batch.load(unit for index, unit in enumerate(units) if index not in refusals)
    results: list[Stored] = []
    receipts: dict[int, list[DeliveryReceipt]] = {}
    for index, unit in enumerate(units):
        if index in refusals:
            results.append(refusals[index])
        elif isinstance(unit, CustomerEvents):
            accepted, echoes = await batch.customer_events(unit)
            results.append(StoredEvents(accepted, [], echoes))
            receipts[index] = [event for event in unit.events if isinstance(event, DeliveryReceipt)]
        else:
            results.append(await batch.agent_reply(unit))
    await batch.write_opt_outs()
    outbox = await batch.enqueue_all()
    for index, result in enumerate(results):
        if isinstance(result, StoredEvents):
            ids = [outbox[a.message.id] for a in result.accepted if not a.duplicate]
            channel = units[index].channel
            for receipt in receipts[index]:
                ids += await accept_receipt(session, channel=channel, receipt=receipt)
            results[index] = replace(result, delivery_ids=ids)
        elif isinstance(result, AcceptedReply) and not result.duplicate:
            results[index] = replace(result, delivery_ids=[outbox[result.message.id]])
    return results


def delivery_ids(stored: Stored) -> list[int]:
    return [] if isinstance(stored, Refused) else stored.delivery_ids


def stored_messages(stored: Stored) -> list[tuple[int, Message, Thread]]:
    """Each new message with its outbox row and thread (duplicates and receipts have none)."""
    if isinstance(stored, AcceptedReply):
        return [] if stored.duplicate else [(stored.delivery_ids[0], stored.message, stored.thread)]
    if isinstance(stored, StoredEvents):
        new = [a for a in stored.accepted if not a.duplicate]
        return [(i, a.message, a.thread) for i, a in zip(stored.delivery_ids, new, strict=False)]
    return []


def _refusal(unit: Unit, registry: AdapterRegistry) -> Refused | None:
    """What is wrong with a reply on its face, before anything is read or written."""
    if not isinstance(unit, AgentReply):
        return None
    request = unit.request
    if not request.text.strip() and not request.attachments:
        return ApiError(
            422,
            "empty_message",
            "messageContent.payload.text: a reply needs text or at least one attachment.",
        )
    try:
        check_recipients(registry.get(unit.channel.adapter), request.all_recipients)
    except RawJSONError as exc:
        return exc
    return None


def _grouped(pairs: set[tuple[str, str]]) -> dict[str, list[str]]:
    """(channel, key) pairs as one `channel = ? AND key IN (...)` per channel (or per integration), which
    every database answers from an index (SQLite scans the table for a row-value IN)."""
    grouped: dict[str, list[str]] = {}
    for channel_id, key in sorted(pairs):
        grouped.setdefault(channel_id, []).append(key)
    return grouped


class _Batch:
    """The reads a batch needs, done once for all of it, and what it adds, flushed once."""

    def __init__(self, session: AsyncSession, registry: AdapterRegistry, files: FilePolicy) -> None:
        self.files = files
        self.session = session
        self.registry = registry
        self.known: dict[tuple[str, str, str], Message] = {}  # (kind, channel, key) -> stored message
        self.by_external: dict[tuple[str, str], Thread] = {}
        self.latest: dict[tuple[str, str], Thread] = {}
        self.outbox: list[tuple[Message, NewDelivery]] = []
        self.ours: set[tuple[str, str | None]] = set()  # (channel, id) of our outbound messages
        self.suppressed: set[tuple[str, str]] = set()  # (integration, address), as of now in the batch
        self._suppressed_before: set[tuple[str, str]] = set()
        self._opt_changes: dict[tuple[str, str], tuple[Choice, str, str]] = {}

    async def load(self, units: Iterable[Unit]) -> None:
        events: set[tuple[str, str]] = set()
        requests: set[tuple[str, str]] = set()
        externals: set[tuple[str, str]] = set()
        users: set[tuple[str, str]] = set()
        addresses: set[tuple[str, str]] = set()  # whose opt-out matters to this batch
        units = list(units)
        for unit in units:
            channel_id, integration_id = unit.channel.id, unit.channel.integration_id
            if isinstance(unit, CustomerEvents):
                for event in unit.events:
                    if isinstance(event, InboundMessage):
                        users.add((channel_id, event.sender_id))
                        if event.event_id is not None:
                            events.add((channel_id, event.event_id))
                        if keyword_choice(event.text) is not None:
                            addresses.add((integration_id, event.sender_id))
                continue
            addresses.update((integration_id, r.idOnExternalPlatform) for r in unit.request.all_recipients)
            if unit.thread is not None:
                addresses.add((integration_id, unit.thread.end_user_id))
            if unit.request_key is not None:
                requests.add((channel_id, unit.request_key))
            requested = unit.request.thread.idOnExternalPlatform if unit.request.thread else None
            if unit.thread is None and requested:
                externals.add((channel_id, requested))
            elif unit.thread is None and unit.request.all_recipients:
                users.add((channel_id, unit.request.all_recipients[0].idOnExternalPlatform))
        for channel_id, keys in _grouped(events).items():
            query = select(Message).where(
                Message.channel_id == channel_id, Message.provider_event_id.in_(keys)
            )
            for message in await self.session.scalars(query):
                self.known[("event", channel_id, message.provider_event_id or "")] = message
            outbound = select(Message.id, Message.provider_message_id).where(
                Message.channel_id == channel_id,
                Message.direction == "outbound",
                or_(Message.id.in_(keys), Message.provider_message_id.in_(keys)),
            )
            for our_id, provider_id in await self.session.execute(outbound):
                self.ours.update({(channel_id, our_id), (channel_id, provider_id)})
        for channel_id, keys in _grouped(requests).items():
            query = select(Message).where(
                Message.channel_id == channel_id, Message.cxone_request_key.in_(keys)
            )
            for message in await self.session.scalars(query):
                self.known[("request", channel_id, message.cxone_request_key or "")] = message
        thread_integration = {unit.channel.id: unit.channel.integration_id for unit in units}
        for channel_id, keys in _grouped(externals).items():
            named = select(Thread).where(Thread.channel_id == channel_id, Thread.external_id.in_(keys))
            for thread in await self.session.scalars(named):
                self.by_external[(channel_id, thread.external_id)] = thread
                addresses.add((thread_integration[channel_id], thread.end_user_id))
        for channel_id, keys in _grouped(users).items():
            theirs = select(Thread).where(Thread.channel_id == channel_id, Thread.end_user_id.in_(keys))
            for thread in await self.session.scalars(theirs.order_by(Thread.last_message_at, Thread.id)):
                self.latest[(channel_id, thread.end_user_id)] = thread  # the last one wins
        for integration_id, keys in _grouped(addresses).items():
            opted_out = select(Suppression.address).where(
                Suppression.integration_id == integration_id, Suppression.address.in_(keys)
            )
            found = await self.session.scalars(opted_out)
            self.suppressed.update((integration_id, address) for address in found)
        self._suppressed_before = set(self.suppressed)

    def _new_thread(
        self, channel_id: str, end_user_id: str, name: str | None, external_id: str | None
    ) -> Thread:
        thread = Thread(
            id=new_uuid(),
            channel_id=channel_id,
            external_id=external_id or new_uuid(),
            end_user_id=end_user_id,
            end_user_name=name,
        )
        self.session.add(thread)
        self.latest[(channel_id, end_user_id)] = thread
        self.by_external[(channel_id, thread.external_id)] = thread
        return thread

    async def _thread_of(self, message: Message) -> Thread:
        thread = await self.session.get(Thread, message.thread_id)
        assert thread is not None
        return thread

    async def customer_events(self, unit: CustomerEvents) -> tuple[list[AcceptedInbound], int]:
        """Customer messages, and how many were echoes of our own; receipts are the caller's, and
        customer typing is dropped."""
        channel = unit.channel
        accepted: list[AcceptedInbound] = []
        echoes = 0
        for event in unit.events:
            if not isinstance(event, InboundMessage):
                continue  # customer typing has no documented way into CXone (docs/cxone-contract.md §3.6)
            if event.is_echo or (channel.id, event.event_id) in self.ours:
                echoes += 1  # our own message coming back: never a customer's
                continue
            key = ("event", channel.id, event.event_id or "")
            if event.event_id is not None and key in self.known:
                earlier = self.known[key]
                accepted.append(AcceptedInbound(earlier, await self._thread_of(earlier), duplicate=True))
                continue
            thread = self.latest.get((channel.id, event.sender_id))
            if thread is None:
                thread = self._new_thread(channel.id, event.sender_id, event.sender_name, None)
            elif event.sender_name:
                thread.end_user_name = event.sender_name
            now = utcnow()
            thread.last_message_at = now
            message = Message(
                id=new_uuid(),
                channel_id=channel.id,
                thread_id=thread.id,
                direction="inbound",
                text=event.text,
                title=event.title,
                attachments=[inbound_entry(self.session, a, self.files) for a in event.attachments],
                end_user_id=event.sender_id,
                status="received",
                provider_event_id=event.event_id,
                provider_message_id=event.event_id,
                created_at=now,
            )
            self.session.add(message)
            if event.event_id is not None:
                self.known[key] = message
            if (choice := keyword_choice(event.text)) is not None:
                self._opt(channel, event.sender_id, *choice)
            self.outbox.append((message, cxone_create(message, channel.integration_id)))
            accepted.append(AcceptedInbound(message, thread, duplicate=False))
        return accepted, echoes

    async def agent_reply(self, unit: AgentReply) -> AcceptedReply | Refused:
        channel, request = unit.channel, unit.request
        key = ("request", channel.id, unit.request_key or "")
        if unit.request_key is not None and key in self.known:
            return await self._repeated_reply(self.known[key])
        recipients = request.all_recipients
        requested = request.thread.idOnExternalPlatform if request.thread else None
        thread = unit.thread
        if thread is None and requested:
            thread = self.by_external.get((channel.id, requested))
        if thread is None:
            if not recipients:
                return ApiError(
                    422,
                    "recipient_required",
                    "endUserRecipients: a message that starts a conversation needs a recipient.",
                )
            if refused := self._opted_out(channel, recipients):
                return refused  # before a thread is started for them
            end_user = recipients[0]
            if not requested:
                thread = self.latest.get((channel.id, end_user.idOnExternalPlatform))
            if thread is None:
                thread = self._new_thread(channel.id, end_user.idOnExternalPlatform, end_user.name, requested)
        if not recipients:
            recipients = [
                EndUserRecipient(idOnExternalPlatform=thread.end_user_id, name=thread.end_user_name)
            ]
        if refused := self._opted_out(channel, recipients):
            return refused
        now = utcnow()
        thread.last_message_at = now
        message = Message(
            id=new_uuid(),
            channel_id=channel.id,
            thread_id=thread.id,
            direction="outbound",
            text=request.text,
            attachments=[
                {"url": item.url, "friendlyName": item.friendlyName} for item in request.attachments
            ],
            end_user_id=recipients[0].idOnExternalPlatform,
            reply_to_external_id=request.reply_to,
            cxone_request_key=unit.request_key,
            status="queued",
            created_at=now,
        )
        self.session.add(message)
        if unit.request_key is not None:
            self.known[key] = message
        destination = self.registry.get(channel.adapter).destination(channel.config)
        self.outbox.append((message, provider_send(message, destination)))
        return AcceptedReply(message=message, thread=thread, recipients=recipients, delivery_ids=[])

    async def _repeated_reply(self, message: Message) -> AcceptedReply:
        thread = await self._thread_of(message)
        recipient = EndUserRecipient(
            idOnExternalPlatform=message.end_user_id,
            name=thread.end_user_name if thread.end_user_id == message.end_user_id else None,
        )
        return AcceptedReply(
            message=message, thread=thread, recipients=[recipient], delivery_ids=[], duplicate=True
        )

    def _opt(self, channel: Channel, address: str, choice: Choice, keyword: str) -> None:
        key = (channel.integration_id, address)
        self._opt_changes[key] = (choice, keyword, channel.id)
        if choice == "opt_out":
            self.suppressed.add(key)
        else:
            self.suppressed.discard(key)

    def _opted_out(self, channel: Channel, recipients: list[EndUserRecipient]) -> RawJSONError | None:
        problems = [
            (index, OPTED_OUT)
            for index, recipient in enumerate(recipients)
            if (channel.integration_id, recipient.idOnExternalPlatform) in self.suppressed
        ]
        return outbound_validation_failed(problems) if problems else None

    async def write_opt_outs(self) -> None:
        """The batch's opt-outs and opt-ins, as they stand at its end."""
        for (integration_id, address), (choice, keyword, channel_id) in self._opt_changes.items():
            was_suppressed = (integration_id, address) in self._suppressed_before
            if choice == "opt_out" and not was_suppressed:
                self.session.add(
                    Suppression(
                        integration_id=integration_id, address=address, keyword=keyword, channel_id=channel_id
                    )
                )
            elif choice == "opt_in" and was_suppressed:
                await self.session.execute(
                    delete(Suppression).where(
                        Suppression.integration_id == integration_id, Suppression.address == address
                    )
                )

    async def enqueue_all(self) -> dict[str, int]:
        """Each stored message's outbox row, by message id."""
        if not self.outbox:
            await self.session.flush()
            return {}
        deliveries = await enqueue(self.session, *(spec for _, spec in self.outbox))
        return {message.id: d.id for (message, _), d in zip(self.outbox, deliveries, strict=True)}


async def legacy_reply_thread(
    session: AsyncSession, *, integration: Integration, post_id: str, request: LegacyReplyRequest
) -> tuple[Channel, Thread]:
    """`1.0/posts/{postId}/messages`: the post id is CXone's internal thread id, or our own thread id."""
    candidates = {post_id}
    if request.post is not None and request.post.idOnExternalPlatform:
        candidates.add(request.post.idOnExternalPlatform)
    if request.thread is not None and request.thread.idOnExternalPlatform:
        candidates.add(request.thread.idOnExternalPlatform)
    query = (
        select(Thread, Channel)
        .join(Channel, Channel.id == Thread.channel_id)
        .where(
            Channel.integration_id == integration.id,
            Channel.deleted_at.is_(None),
            or_(Thread.cxone_thread_id.in_(candidates), Thread.external_id.in_(candidates)),
        )
        .order_by(Thread.last_message_at.desc())
        .limit(1)
    )
    found = (await session.execute(query)).first()
    if found is None:
        raise not_found("thread", post_id)
    thread, channel = found
    return channel, thread


async def check_not_opted_out(
    session: AsyncSession, channel: Channel, recipients: list[EndUserRecipient]
) -> None:
    """For the recipients-validation call CXone makes before a proactive send."""
    addresses = [r.idOnExternalPlatform for r in recipients]
    query = select(Suppression.address).where(
        Suppression.integration_id == channel.integration_id, Suppression.address.in_(addresses)
    )
    suppressed = set(await session.scalars(query))
    problems = [(index, OPTED_OUT) for index, address in enumerate(addresses) if address in suppressed]
    if problems:
        raise outbound_validation_failed(problems)


async def _thread_by_external_id(session: AsyncSession, channel_id: str, external_id: str) -> Thread | None:
    query = select(Thread).where(Thread.channel_id == channel_id, Thread.external_id == external_id)
    return await session.scalar(query)


async def show_agent_typing(
    session: AsyncSession,
    *,
    channel: Channel,
    thread_external_id: str,
    typing: bool,
    registry: AdapterRegistry,
    ttl_seconds: float,
) -> list[int]:
    """Typing is best effort: an unknown thread is ignored rather than refused, so CXone never retries it."""
    thread = await _thread_by_external_id(session, channel.id, thread_external_id)
    if thread is None:
        return []
    destination = registry.get(channel.adapter).destination(channel.config)
    [delivery] = await enqueue(
        session, provider_typing(thread, destination, typing=typing, ttl_seconds=ttl_seconds)
    )
    return [delivery.id]


RECEIPT_ORDER = {"queued": 0, "sent": 1, "delivered": 2, "seen": 3}


async def accept_receipt(session: AsyncSession, *, channel: Channel, receipt: DeliveryReceipt) -> list[int]:
    """A provider's delivery or read receipt: the message moves on and CXone is told, once per event."""
    if receipt.event_id is not None and not await _first_sighting(
        session, channel.id, receipt.event_id, "receipt"
    ):
        return []
    message = await session.scalar(
        select(Message)
        .where(
            Message.channel_id == channel.id,
            Message.direction == "outbound",
            or_(
                Message.provider_message_id == receipt.provider_message_id,
                Message.id == receipt.provider_message_id,
            ),
        )
        .limit(1)
    )
    if message is None:
        return []
    if receipt.status == "failed":
        message.status, message.error = "failed", receipt.reason or "the provider reported a failure"
    elif RECEIPT_ORDER.get(receipt.status, 0) > RECEIPT_ORDER.get(message.status, 0):
        message.status = receipt.status
    else:
        return []  # a late "delivered" after "seen" changes nothing
    [delivery] = await enqueue(
        session, cxone_status(message, channel.integration_id, receipt.status, receipt.reason)
    )
    return [delivery.id]


async def _first_sighting(session: AsyncSession, channel_id: str, event_id: str, kind: str) -> bool:
    try:
        async with session.begin_nested():
            session.add(SeenEvent(channel_id=channel_id, event_id=event_id, kind=kind))
            await session.flush()
    except IntegrityError:
        return False
    return True

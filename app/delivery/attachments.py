"""Files on a message, made ready for the far side: a customer's files become CXone temporary attachments,
an agent's files become bytes to upload or links the relay serves.

Each file is fetched once. Its progress is written on the message's `attachments` entry (`fileId` once
kept, `cxoneUrl` once uploaded, `refused` with the reason when it cannot go), each step in its own short
transaction, so an attempt that fails or a process that dies resumes where the last one stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
from sqlalchemy import Table, bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.adapters.base import Attachment, ChannelAdapter, MediaUnavailable, OutboundFile
from app.crashpoints import crash_point
from app.cxone.client import Attachment as CxoneAttachment
from app.cxone.client import DfoClient
from app.cxone.errors import DfoAuthError, DfoError, is_retryable
from app.db import session_scope
from app.models import Message, StoredFile
from app.models.base import utcnow
from app.services.files import (
    Fetched,
    FileLinks,
    FilePolicy,
    FileTooLarge,
    fetch_attachment,
    fetch_capped,
    file_name,
    get_request,
    keep,
    load,
)

MESSAGES = cast(Table, Message.__table__)
UPLOAD_MARGIN = timedelta(minutes=5)  # a CXone upload this close to expiring is made again


@dataclass(frozen=True)
class ForCxone:
    attachments: list[CxoneAttachment]
    notes: list[str]  # what the agent is told about files that could not come


class AttachmentRelay:
    def __init__(
        self,
        writes: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
        links: FileLinks,
        files: FilePolicy,
        *,
        crash_at: str = "",
    ) -> None:
        self._writes = writes
        self._http = http
        self._links = links
        self._files = files
        self._crash_at = crash_at

    async def for_cxone(
        self,
        cxone: DfoClient,
        adapter: ChannelAdapter,
        config: dict[str, Any],
        message: Message,
        *,
        last_try: bool = False,
    ) -> ForCxone:
        """A customer's files as CXone temporary attachments. A file too large or gone for good becomes a
        note to the agent, and so does one CXone refuses. A provider or CXone hiccup raises
        (MediaUnavailable, DfoError), to be retried, until the delivery's last try: the file is then
        given up, and the message goes without it."""
        entries = [dict(entry) for entry in message.attachments]
        ready: list[CxoneAttachment] = []
        notes: list[str] = []
        for entry in entries:
            name = file_name(entry.get("friendlyName"), entry.get("url", ""), entry.get("mimeType"))
            if not _fresh(entry):
                stored = await self._kept_or_fetched(adapter, config, message, entries, entry, name, last_try)
                if stored is not None:
                    await self._upload(cxone, stored, message, entries, entry)
            if "refused" in entry:
                notes.append(f"[File “{name}” not forwarded: {entry['refused']}]")
            else:
                ready.append(CxoneAttachment(friendly_name=name, url=entry["cxoneUrl"]))
        return ForCxone(ready, notes)

    async def _upload(
        self,
        cxone: DfoClient,
        stored: StoredFile,
        message: Message,
        entries: list[dict[str, Any]],
        entry: dict[str, Any],
    ) -> None:
        """The kept file to CXone, noted on the message. A refusal (bad type, too large for CXone)
        becomes a note; CXone's retryable errors and credentials trouble are raised, to be retried."""
        try:
            uploaded = await cxone.create_temporary_attachment(stored.content, stored.mime_type)
        except DfoError as error:
            if is_retryable(error) or isinstance(error, DfoAuthError):
                raise
            entry["refused"] = f"CXone refused it ({error.message})"
        else:
            expires = uploaded.expire_at or utcnow() + timedelta(hours=1)
            entry.update(cxoneUrl=uploaded.url, cxoneExpireAt=expires.isoformat())
        await self._record(message, entries)

    async def _kept_or_fetched(
        self,
        adapter: ChannelAdapter,
        config: dict[str, Any],
        message: Message,
        entries: list[dict[str, Any]],
        entry: dict[str, Any],
        name: str,
        last_try: bool,
    ) -> StoredFile | None:
        if "refused" in entry:
            return None
        if "fileId" in entry:
            stored = await self._load(entry["fileId"])
            if stored is not None:
                return stored
            entry["refused"] = "the file is no longer kept"
            await self._record(message, entries)
            return None
        attachment = Attachment(
            url=entry["url"], friendly_name=name, mime_type=entry.get("mimeType"), size=entry.get("size")
        )
        try:
            fetched = await fetch_attachment(self._http, adapter, config, attachment, limit=self._files.limit)
        except FileTooLarge as error:
            entry["refused"] = str(error)
        except MediaUnavailable as error:
            if not (error.permanent or last_try):
                raise
            entry["refused"] = error.reason  # the message itself must not wait for it any longer
        else:
            return await self._keep(message, entries, entry, fetched)
        await self._record(message, entries)
        return None

    async def for_provider(
        self, adapter: ChannelAdapter, message: Message
    ) -> tuple[tuple[Attachment, ...], tuple[OutboundFile, ...]]:
        """An agent's files, fetched once from CXone's links and kept: the bytes for an adapter that
        uploads files, links the relay serves for one that does not. FileTooLarge and MediaUnavailable
        say why a file cannot go."""
        entries = [dict(entry) for entry in message.attachments]
        limit = adapter.capabilities.max_attachment_bytes or self._files.limit
        kept: list[StoredFile] = []
        for entry in entries:
            stored = await self._load(entry["fileId"]) if "fileId" in entry else None
            if stored is None:
                name = file_name(entry.get("friendlyName"), entry["url"], None)
                request = get_request(self._http, entry["url"])
                fetched = await fetch_capped(self._http, request, limit=limit, name=name)
                stored = await self._keep(message, entries, entry, fetched)
            elif stored.size > limit:
                raise FileTooLarge(stored.name, limit, stored.size)
            kept.append(stored)
        if adapter.capabilities.uploads_files:
            return (), tuple(OutboundFile(f.name, f.mime_type, f.content) for f in kept)
        return tuple(Attachment(self._links.url(f), f.name, f.mime_type, f.size) for f in kept), ()

    async def _load(self, file_id: str) -> StoredFile | None:
        async with self._writes() as session:
            return await load(session, file_id)

    async def _keep(
        self, message: Message, entries: list[dict[str, Any]], entry: dict[str, Any], fetched: Fetched
    ) -> StoredFile:
        """The fetched bytes and the message's note of them, in one transaction."""
        async with session_scope(self._writes) as session:
            stored = keep(session, fetched, retention=self._files.retention)
            entry["fileId"] = stored.id
            await session.execute(_SET_ATTACHMENTS, {"m_id": message.id, "entries": entries})
        crash_point(self._crash_at, "attachment.after_keep")
        message.attachments = entries
        return stored

    async def _record(self, message: Message, entries: list[dict[str, Any]]) -> None:
        async with session_scope(self._writes) as session:
            await session.execute(_SET_ATTACHMENTS, {"m_id": message.id, "entries": entries})
        message.attachments = entries


_SET_ATTACHMENTS = (
    update(MESSAGES).where(MESSAGES.c.id == bindparam("m_id")).values(attachments=bindparam("entries"))
)


def _fresh(entry: dict[str, Any]) -> bool:
    """Already uploaded to CXone, and not about to expire there."""
    if "cxoneUrl" not in entry:
        return False
    expires = datetime.fromisoformat(entry["cxoneExpireAt"])
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)  # CXone's time without an offset is UTC
    return expires - UPLOAD_MARGIN > utcnow()

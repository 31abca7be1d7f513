"""Files on their way through the relay: fetched once, streamed under a size cap, kept for a while.

A customer's file is fetched from the provider and handed to CXone as a temporary attachment; an agent's
file is fetched from CXone's short-lived link and uploaded to the provider, or offered to the customer
as a link the relay serves. Either way the bytes are fetched once and kept (`files` table), so a retry
sends the same file even after the far side's link has expired.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.adapters.base import Attachment, FetchesMedia, MediaUnavailable, valid_mime_type
from app.config import Settings
from app.models import StoredFile
from app.models.base import new_uuid, utcnow
from app.security import derived_key

PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 410})
MAX_REDIRECTS = 5
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("fd00:ec2::254")})  # AWS's IPv6 metadata service


def size_text(size: int) -> str:
    return f"{size:,} bytes" if size < 1048576 else f"{size / 1048576:.1f} MB"


class FileTooLarge(Exception):
    def __init__(self, name: str, limit: int, size: int | None = None) -> None:
        shown = size_text(size) if size else f"over {size_text(limit)}"
        super().__init__(f"{name} is {shown}; at most {size_text(limit)} is accepted")
        self.name, self.limit, self.size = name, limit, size


@dataclass(frozen=True)
class FilePolicy:
    """How large a customer's file may be on its way to CXone, and how long fetched files are kept."""

    limit: int
    retention: timedelta


def file_policy(settings: Settings) -> FilePolicy:
    return FilePolicy(settings.max_attachment_bytes, timedelta(hours=settings.file_retention_hours))


@dataclass(frozen=True)
class Fetched:
    name: str
    mime_type: str
    content: bytes


def file_name(name: str | None, url: str, mime_type: str | None) -> str:
    """The name a file is shown with: the sender's, else the last part of its URL, else one by its type."""
    if name:
        return name[:255]
    try:
        last = httpx.URL(url).path.rsplit("/", 1)[-1] if "://" in url else ""
    except (httpx.InvalidURL, ValueError):
        last = ""
    if last and "." in last:
        return last[:255]
    return "attachment" + (mimetypes.guess_extension(mime_type or "") or "")


def _mime(declared: str | None, answered: str | None, name: str) -> str:
    for candidate in (declared, (answered or "").split(";")[0].strip()):
        checked = valid_mime_type(candidate)
        if checked and checked != "application/octet-stream":
            return checked
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def get_request(
    http: httpx.AsyncClient, url: str | httpx.URL, headers: dict[str, str] | None = None
) -> httpx.Request:
    """A plain GET of a file's URL; a URL httpx cannot even parse (or encode) will never give the file."""
    try:
        return http.build_request("GET", url, headers=headers)
    except (httpx.InvalidURL, ValueError):  # UnicodeError (an IDNA name) is a ValueError
        raise MediaUnavailable("the file's URL is not valid", permanent=True) from None


async def fetch_capped(
    http: httpx.AsyncClient, request: httpx.Request, *, limit: int, name: str, mime_type: str | None = None
) -> Fetched:
    """Download one file, reading no more than `limit` bytes: an announced or actual larger size raises
    FileTooLarge. Raises MediaUnavailable, permanent or not, when the far side will not give it.

    Redirects are followed here, hop by hop, so that no hop reaches a link-local address (a cloud's
    metadata service): a URL from a webhook must not make the relay fetch the host's own secrets."""
    for _ in range(MAX_REDIRECTS + 1):
        await _refuse_link_local(request.url)
        try:
            response = await http.send(request, stream=True)
        except httpx.HTTPError as error:
            raise MediaUnavailable(
                f"the file could not be fetched ({type(error).__name__})", permanent=False
            ) from None
        location = response.headers.get("location") if response.is_redirect else None
        if location is None:
            return await _read_capped(response, limit=limit, name=name, mime_type=mime_type)
        await response.aclose()
        target = request.url.join(location)
        same_origin = (target.scheme, target.netloc) == (request.url.scheme, request.url.netloc)
        kept = {k: v for k, v in request.headers.items() if same_origin and k == "authorization"}
        request = get_request(http, target, kept)  # credentials stay with their origin
    raise MediaUnavailable("the file's URL redirects without end", permanent=True)


async def _refuse_link_local(url: httpx.URL) -> None:
    """An address in a link-local or unspecified network, or a cloud's metadata address, is never a file
    host (IPv4 written as IPv6 included). A name that does not resolve here is left to the connection."""
    try:
        addresses = [ipaddress.ip_address(url.host)]
    except ValueError:
        try:
            found = await asyncio.get_running_loop().getaddrinfo(url.host, url.port or 443)
        except (OSError, ValueError):  # not found, or not even encodable (UnicodeError)
            return
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]
    for address in addresses:
        plain = getattr(address, "ipv4_mapped", None) or address
        if plain.is_link_local or plain.is_unspecified or plain in METADATA_ADDRESSES:
            raise MediaUnavailable("the file's address is not allowed (link-local)", permanent=True)


async def _read_capped(response: httpx.Response, *, limit: int, name: str, mime_type: str | None) -> Fetched:
    try:
        if response.status_code >= 300:
            permanent = response.status_code in PERMANENT_STATUSES
            raise MediaUnavailable(
                f"the file could not be fetched (HTTP {response.status_code})", permanent=permanent
            )
        announced = response.headers.get("content-length")
        if announced is not None and announced.isdigit() and int(announced) > limit:
            raise FileTooLarge(name, limit, int(announced))
        chunks: list[bytes] = []
        received = 0
        try:
            async for chunk in response.aiter_bytes():
                received += len(chunk)
                if received > limit:
                    raise FileTooLarge(name, limit)
                chunks.append(chunk)
        except httpx.HTTPError as error:  # the connection broke, or the body does not decode
            raise MediaUnavailable(
                f"the file download broke off ({type(error).__name__})", permanent=False
            ) from None
        return Fetched(name, _mime(mime_type, response.headers.get("content-type"), name), b"".join(chunks))
    finally:
        await response.aclose()


async def fetch_attachment(
    http: httpx.AsyncClient, adapter: object, config: Mapping[str, Any], attachment: Attachment, *, limit: int
) -> Fetched:
    """A customer's file, from the webhook itself or from the provider (through the adapter's
    `media_request` where it has one). A declared size over the cap is refused before any download."""
    name = file_name(attachment.friendly_name, attachment.url, attachment.mime_type)
    if attachment.size is not None and attachment.size > limit:
        raise FileTooLarge(name, limit, attachment.size)
    if attachment.content is not None:
        return _inline(attachment, attachment.content, limit)
    if isinstance(adapter, FetchesMedia):
        request = await adapter.media_request(config, attachment)
    else:
        request = get_request(http, attachment.url)
    return await fetch_capped(http, request, limit=limit, name=name, mime_type=attachment.mime_type)


def keep(session: AsyncSession, fetched: Fetched, *, retention: timedelta) -> StoredFile:
    stored = StoredFile(
        id=new_uuid(),
        name=fetched.name,
        mime_type=fetched.mime_type,
        size=len(fetched.content),
        content=fetched.content,
        expires_at=utcnow() + retention,
    )
    session.add(stored)
    return stored


def inbound_entry(session: AsyncSession, attachment: Attachment, policy: FilePolicy) -> dict[str, Any]:
    """How a customer's file is noted on its stored message. A file that came inside the webhook itself
    is kept now, in the same transaction, or refused there when it is over the cap."""
    entry: dict[str, Any] = {"url": attachment.url, "friendlyName": attachment.friendly_name}
    if attachment.mime_type:
        entry["mimeType"] = attachment.mime_type
    if attachment.size is not None:
        entry["size"] = attachment.size
    if attachment.content is not None:
        try:
            fetched = _inline(attachment, attachment.content, policy.limit)
            entry["fileId"] = keep(session, fetched, retention=policy.retention).id
        except FileTooLarge as error:
            entry["refused"] = str(error)
    return entry


def _inline(attachment: Attachment, content: bytes, limit: int) -> Fetched:
    """A file whose bytes came inside the webhook (an e-mail's), checked against the cap."""
    name = file_name(attachment.friendly_name, attachment.url, attachment.mime_type)
    if len(content) > limit:
        raise FileTooLarge(name, limit, len(content))
    return Fetched(name, _mime(attachment.mime_type, None, name), content)


async def load(session: AsyncSession, file_id: str, now: datetime | None = None) -> StoredFile | None:
    """A kept file; with `now`, only while its retention lasts (what a link may still open)."""
    query = select(StoredFile).where(StoredFile.id == file_id)
    if now is not None:
        query = query.where(StoredFile.expires_at > now)
    return await session.scalar(query)


class FileLinks:
    """Unguessable links to kept files: `/files/{id}/{key}/{name}`, the key an HMAC of the id under the
    service's secret, so links need no table of their own and a guessed id opens nothing."""

    def __init__(self, secret_key: str, public_url: str) -> None:
        self._key = derived_key(secret_key, b"byoc-relay/file-links/v1")
        self._public_url = public_url

    def _mac(self, file_id: str) -> str:
        return hmac.new(self._key, file_id.encode(), hashlib.sha256).hexdigest()[:32]

    def url(self, stored: StoredFile) -> str:
        return f"{self._public_url}/files/{stored.id}/{self._mac(stored.id)}/{quote(stored.name, safe='')}"

    def opens(self, file_id: str, key: str) -> bool:
        return hmac.compare_digest(self._mac(file_id).encode(), key.encode())


async def prune(session: AsyncSession) -> int:
    """Forget files past their retention."""
    result = await session.execute(delete(StoredFile).where(StoredFile.expires_at <= utcnow()))
    return int(getattr(result, "rowcount", 0) or 0)

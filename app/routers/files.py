"""Links to files the relay keeps: what a link-only channel (SMS, a plain webhook) sends the customer in
place of the agent's file. The link is the authority: an unguessable key, no login, valid while the file
is kept."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter
from fastapi.responses import Response

from app.deps import RuntimeDep
from app.errors import ApiError
from app.models.base import utcnow
from app.services.files import load

router = APIRouter(tags=["files"])


def _shown_inline(mime_type: str) -> bool:
    """Pictures, sound and video open in the browser; anything else (PDF, HTML, SVG...) is a download, as
    the sandbox below would keep a browser's PDF viewer from opening it anyway."""
    return mime_type.split("/")[0] in ("image", "audio", "video") and mime_type != "image/svg+xml"


@router.get("/files/{file_id}/{key}/{name:path}", response_class=Response)
async def download(file_id: str, key: str, name: str, runtime: RuntimeDep) -> Response:
    stored = None
    if runtime.file_links.opens(file_id, key):
        async with runtime.reads() as session:
            stored = await load(session, file_id, utcnow())
    if stored is None:
        raise ApiError(404, "file_not_found", "No file is kept under this link, or it has expired.")
    disposition = "inline" if _shown_inline(stored.mime_type) else "attachment"
    return Response(
        stored.content,
        media_type=stored.mime_type,
        headers={
            "content-disposition": f"{disposition}; filename*=UTF-8''{quote(stored.name, safe='')}",
            "content-security-policy": "sandbox; default-src 'none'",  # never a page of our origin
            "x-content-type-options": "nosniff",
            "cache-control": "private, max-age=3600",
        },
    )

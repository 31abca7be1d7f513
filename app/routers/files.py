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


@router.get("/files/{file_id}/{key}/{name}", response_class=Response)
async def download(file_id: str, key: str, name: str, runtime: RuntimeDep) -> Response:
    if not runtime.file_links.opens(file_id, key):
        raise ApiError(404, "file_not_found", "No file is kept under this link, or it has expired.")
    async with runtime.reads() as session:
        stored = await load(session, file_id, utcnow())
    if stored is None:
        raise ApiError(404, "file_not_found", "No file is kept under this link, or it has expired.")
    return Response(
        stored.content,
        media_type=stored.mime_type,
        headers={
            "content-disposition": f"inline; filename*=UTF-8''{quote(stored.name)}",
            "x-content-type-options": "nosniff",
            "cache-control": "private, max-age=3600",
        },
    )

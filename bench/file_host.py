"""The far ends of a file's trip, for bench/attachments.py: a provider serving files, and CXone's
temporary-attachment endpoint, which decodes the base64 it is sent as CXone must.

    python bench/file_host.py --port 9010

`GET /files/{size}` answers `size` bytes (with Content-Length); `POST /attachments/temporary` takes
`{"content": base64, "mimeType": ...}` and answers `{"id", "url", "expireAt"}`.
"""

from __future__ import annotations

import argparse
import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from functools import cache

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@cache
def content(size: int) -> bytes:
    return bytes(index % 251 for index in range(size))


async def serve_file(request: Request) -> Response:
    if request.url.path == "/healthz":
        return Response(b"ok")
    return Response(content(int(request.path_params["size"])), media_type="application/pdf")


async def temporary_attachment(request: Request) -> JSONResponse:
    body = json.loads(await request.body())
    blob = base64.b64decode(body["content"], validate=True)
    attachment_id = f"{uuid.uuid4()}-{len(blob)}"
    expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    return JSONResponse(
        {"id": attachment_id, "url": f"https://cxone.test/a/{attachment_id}", "expireAt": expires}
    )


app = Starlette(
    routes=[
        Route("/files/{size:int}", serve_file),
        Route("/healthz", serve_file),
        Route("/attachments/temporary", temporary_attachment, methods=["POST"]),
    ]
)

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)

"""A fake of Meta's WhatsApp Cloud API for tests: `/{version}/{phone_number_id}/messages` with bearer
auth, Graph API error bodies and codes (131047 outside the 24-hour window, 130429 throughput, 190 token),
webhooks toward the relay signed with X-Hub-Signature-256, and media: uploads to `/{phone_number_id}/media`,
and a customer's files named by `GET /{media-id}` and downloaded with the bearer token."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


class FakeWhatsApp:
    def __init__(self, phone_number_id: str, access_token: str, app_secret: str) -> None:
        self.phone_number_id = phone_number_id
        self.access_token = access_token
        self.app_secret = app_secret
        self.sent: list[dict[str, Any]] = []
        self.refused: list[int] = []
        self.window_open: set[str] = set()  # customers who wrote within 24 hours
        self.throttle_next = 0
        self.media: dict[str, tuple[bytes, str, str | None]] = {}  # id -> content, type, file name
        self.downloads = 0
        self.app = Starlette(
            routes=[
                Route("/lookaside/{media_id}", self._download, methods=["GET"]),
                Route("/{version}/{phone}/messages", self._messages, methods=["POST"]),
                Route("/{version}/{phone}/media", self._upload, methods=["POST"]),
                Route("/{version}/{phone}", self._phone, methods=["GET"]),
            ]
        )

    def _error(self, status: int, code: int, message: str) -> JSONResponse:
        self.refused.append(code)
        error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": uuid.uuid4().hex}
        return JSONResponse({"error": error}, status_code=status)

    def _authorised(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.access_token}"

    async def _upload(self, request: Request) -> JSONResponse:
        if not self._authorised(request):
            return self._error(401, 190, "Error validating access token")
        async with request.form() as form:
            upload = form.get("file")
            if form.get("messaging_product") != "whatsapp" or isinstance(upload, str) or upload is None:
                return self._error(400, 100, "Invalid parameter")
            media_id = str(uuid.uuid4().int)[:15]
            self.media[media_id] = (await upload.read(), str(form.get("type")), upload.filename)
        return JSONResponse({"id": media_id})

    def uploaded(self, media_id: str) -> tuple[bytes, str, str | None]:
        return self.media[media_id]

    async def _download(self, request: Request) -> Response:
        if not self._authorised(request):
            return self._error(401, 190, "Error validating access token")
        found = self.media.get(request.path_params["media_id"])
        if found is None:
            return self._error(404, 100, "Invalid parameter")
        self.downloads += 1
        return Response(found[0], media_type=found[1])

    async def _phone(self, request: Request) -> JSONResponse:
        if not self._authorised(request):
            return self._error(401, 190, "Error validating access token")
        media = self.media.get(request.path_params["phone"])
        if media is not None:  # GET /{media-id}: where to download it
            media_id = request.path_params["phone"]
            return JSONResponse(
                {
                    "messaging_product": "whatsapp",
                    "url": f"{request.base_url}lookaside/{media_id}",
                    "mime_type": media[1],
                    "file_size": len(media[0]),
                    "id": media_id,
                }
            )
        return JSONResponse({"id": self.phone_number_id, "display_phone_number": "+1 555 000 0006"})

    async def _messages(self, request: Request) -> JSONResponse:
        if not self._authorised(request):
            return self._error(401, 190, "Error validating access token")
        if request.path_params["phone"] != self.phone_number_id:
            return self._error(400, 100, "Invalid parameter")
        body = json.loads(await request.body())
        if body.get("messaging_product") != "whatsapp" or not body.get("to"):
            return self._error(400, 100, "Invalid parameter")
        if self.throttle_next:
            self.throttle_next -= 1
            return self._error(429, 130429, "Rate limit hit")
        to = str(body["to"]).lstrip("+")
        if body.get("type") != "template" and to not in self.window_open:
            return self._error(400, 131047, "Re-engagement message")
        wamid = f"wamid.{uuid.uuid4().hex}"
        self.sent.append({**body, "wamid": wamid})
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body["to"], "wa_id": to}],
                "messages": [{"id": wamid}],
            }
        )

    def signed(self, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        raw = json.dumps(payload).encode()
        digest = hmac.new(self.app_secret.encode(), raw, hashlib.sha256).hexdigest()
        return raw, {"content-type": "application/json", "x-hub-signature-256": f"sha256={digest}"}

    def _change(self, value: dict[str, Any]) -> dict[str, Any]:
        metadata = {"display_phone_number": "15550000006", "phone_number_id": self.phone_number_id}
        value = {"messaging_product": "whatsapp", "metadata": metadata, **value}
        return {
            "object": "whatsapp_business_account",
            "entry": [{"id": "WABA1", "changes": [{"field": "messages", "value": value}]}],
        }

    def customer_writes(self, wa_id: str, text: str, name: str = "Ada") -> tuple[bytes, dict[str, str]]:
        self.window_open.add(wa_id)
        message = {
            "from": wa_id,
            "id": f"wamid.{uuid.uuid4().hex}",
            "timestamp": "1764000000",
            "type": "text",
            "text": {"body": text},
        }
        return self.signed(
            self._change({"contacts": [{"profile": {"name": name}, "wa_id": wa_id}], "messages": [message]})
        )

    def customer_sends_file(
        self, wa_id: str, content: bytes, filename: str, caption: str = ""
    ) -> tuple[bytes, dict[str, str]]:
        """A document from the customer: the webhook names it by a media id, the bytes stay with Meta."""
        self.window_open.add(wa_id)
        media_id = str(uuid.uuid4().int)[:15]
        self.media[media_id] = (content, "application/pdf", filename)
        document = {"caption": caption, "filename": filename, "mime_type": "application/pdf", "id": media_id}
        message = {
            "from": wa_id,
            "id": f"wamid.{uuid.uuid4().hex}",
            "timestamp": "1764000000",
            "type": "document",
            "document": document,
        }
        return self.signed(self._change({"contacts": [{"wa_id": wa_id}], "messages": [message]}))

    def status(self, wamid: str, status: str, recipient: str) -> tuple[bytes, dict[str, str]]:
        entry = {"id": wamid, "status": status, "timestamp": "1764000001", "recipient_id": recipient}
        return self.signed(self._change({"statuses": [entry]}))

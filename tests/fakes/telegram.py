"""A fake of the Telegram Bot API for tests: `/bot<token>/<method>` with Telegram's answer shapes
(`ok`, `result`, `error_code`, `description`, `parameters.retry_after`), a registered webhook with its
secret token, updates sent the way Telegram sends them, and files: uploaded with `sendDocument` as
multipart/form-data, and a customer's files served through `getFile` and `/file/bot<token>/<path>`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class BotCall:
    method: str
    payload: dict[str, Any]


class FakeTelegram:
    def __init__(self, token: str, username: str = "acme_support_bot") -> None:
        self.token = token
        self.username = username
        self.calls: list[BotCall] = []
        self.webhook_url: str | None = None
        self.secret_token: str | None = None
        self.blocked: set[int] = set()
        self.flood_next = 0
        self._next_id = 100
        self._update_id = 5000
        self.files: dict[str, tuple[str, bytes]] = {}  # file_id -> (file_path, content)
        self.downloads = 0
        self.app = Starlette(
            routes=[
                Route("/bot{token}/{method}", self._method, methods=["POST", "GET"]),
                Route("/file/bot{token}/{path:path}", self._download, methods=["GET"]),
            ]
        )

    def _fail(self, code: int, description: str, **parameters: Any) -> JSONResponse:
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if parameters:
            body["parameters"] = parameters
        return JSONResponse(body, status_code=code)

    async def _method(self, request: Request) -> JSONResponse:
        if request.path_params["token"] != self.token:
            return self._fail(401, "Unauthorized")
        method = request.path_params["method"]
        payload: dict[str, Any]
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            payload = {}
            async with request.form() as form:
                for key, value in form.multi_items():
                    if isinstance(value, str):
                        payload[key] = value
                    else:
                        content = await value.read()
                        payload[key] = {
                            "name": value.filename,
                            "type": value.content_type,
                            "content": content,
                        }
        else:
            raw = await request.body()
            payload = json.loads(raw) if raw else {}
        self.calls.append(BotCall(method, payload))
        if method == "getMe":
            return JSONResponse({"ok": True, "result": {"id": 1, "is_bot": True, "username": self.username}})
        if method == "getFile":
            found = self.files.get(str(payload.get("file_id")))
            if found is None:
                return self._fail(400, "Bad Request: invalid file_id")
            return JSONResponse(
                {"ok": True, "result": {"file_id": payload["file_id"], "file_path": found[0]}}
            )
        if method == "setWebhook":
            self.webhook_url, self.secret_token = payload.get("url"), payload.get("secret_token")
            return JSONResponse({"ok": True, "result": True, "description": "Webhook was set"})
        chat_id = payload.get("chat_id")
        if not isinstance(chat_id, int | str) or not str(chat_id).lstrip("-").isdigit():
            return self._fail(400, "Bad Request: chat not found")
        if int(chat_id) in self.blocked:
            return self._fail(403, "Forbidden: bot was blocked by the user")
        if method == "sendChatAction":
            return JSONResponse({"ok": True, "result": True})
        if method in ("sendMessage", "sendDocument"):
            if self.flood_next:
                self.flood_next -= 1
                return self._fail(429, "Too Many Requests: retry after 3", retry_after=3)
            self._next_id += 1
            return JSONResponse(
                {"ok": True, "result": {"message_id": self._next_id, "chat": {"id": int(chat_id)}}}
            )
        return self._fail(404, "Not Found")

    async def _download(self, request: Request) -> Response:
        if request.path_params["token"] != self.token:
            return self._fail(401, "Unauthorized")
        for path, content in self.files.values():
            if path == request.path_params["path"]:
                self.downloads += 1
                return Response(content, media_type="application/octet-stream")
        return self._fail(404, "Not Found")

    def sent(self, method: str = "sendMessage") -> list[dict[str, Any]]:
        return [call.payload for call in self.calls if call.method == method]

    def update(
        self,
        chat_id: int,
        text: str,
        *,
        first_name: str = "Ada",
        is_bot: bool = False,
        document: tuple[str, bytes] | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """A private-chat message as Telegram POSTs it to the registered webhook; with `document`
        (a name and its bytes), the customer sent that file with the text as its caption."""
        self._update_id += 1
        self._next_id += 1
        message: dict[str, Any] = {
            "message_id": self._next_id,
            "from": {"id": chat_id, "is_bot": is_bot, "first_name": first_name},
            "chat": {"id": chat_id, "type": "private", "first_name": first_name},
            "date": 1764000000,
        }
        if document is None:
            message["text"] = text
        else:
            file_id = f"BQACAgIAAx{self._next_id}"
            self.files[file_id] = (f"documents/file_{self._next_id}.bin", document[1])
            message["caption"] = text
            message["document"] = {
                "file_id": file_id,
                "file_unique_id": f"u{self._next_id}",
                "file_name": document[0],
                "mime_type": "application/pdf",
                "file_size": len(document[1]),
            }
        update = {"update_id": self._update_id, "message": message}
        headers = {"content-type": "application/json"}
        if self.secret_token is not None:
            headers["x-telegram-bot-api-secret-token"] = self.secret_token
        return json.dumps(update).encode(), headers

"""A fake of the Telegram Bot API for tests: `/bot<token>/<method>` with Telegram's answer shapes
(`ok`, `result`, `error_code`, `description`, `parameters.retry_after`), a registered webhook with its
secret token, and updates sent the way Telegram sends them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
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
        self.app = Starlette(routes=[Route("/bot{token}/{method}", self._method, methods=["POST", "GET"])])

    def _fail(self, code: int, description: str, **parameters: Any) -> JSONResponse:
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if parameters:
            body["parameters"] = parameters
        return JSONResponse(body, status_code=code)

    async def _method(self, request: Request) -> JSONResponse:
        if request.path_params["token"] != self.token:
            return self._fail(401, "Unauthorized")
        method = request.path_params["method"]
        raw = await request.body()
        payload: dict[str, Any] = json.loads(raw) if raw else {}
        self.calls.append(BotCall(method, payload))
        if method == "getMe":
            return JSONResponse({"ok": True, "result": {"id": 1, "is_bot": True, "username": self.username}})
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

    def sent(self, method: str = "sendMessage") -> list[dict[str, Any]]:
        return [call.payload for call in self.calls if call.method == method]

    def update(
        self, chat_id: int, text: str, *, first_name: str = "Ada", is_bot: bool = False
    ) -> tuple[bytes, dict[str, str]]:
        """A private-chat message as Telegram POSTs it to the registered webhook."""
        self._update_id += 1
        self._next_id += 1
        update = {
            "update_id": self._update_id,
            "message": {
                "message_id": self._next_id,
                "from": {"id": chat_id, "is_bot": is_bot, "first_name": first_name},
                "chat": {"id": chat_id, "type": "private", "first_name": first_name},
                "date": 1764000000,
                "text": text,
            },
        }
        headers = {"content-type": "application/json"}
        if self.secret_token is not None:
            headers["x-telegram-bot-api-secret-token"] = self.secret_token
        return json.dumps(update).encode(), headers

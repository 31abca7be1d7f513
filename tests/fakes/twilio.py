"""A fake of Twilio's Programmable Messaging API, for tests: the Messages resource with HTTP Basic auth,
form bodies and Twilio's error bodies and codes, and signed webhooks toward the relay (incoming messages
and status callbacks, with `X-Twilio-Signature` computed as Twilio documents it)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


@dataclass
class SentSms:
    sid: str
    to: str
    sender: str
    body: str
    media: list[str]
    status_callback: str | None
    form: list[tuple[str, str]] = field(default_factory=list)


def twilio_signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    payload = url + "".join(name + value for name, value in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


class FakeTwilio:
    def __init__(self, account_sid: str, auth_token: str, from_number: str) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.from_number = from_number
        self.sent: list[SentSms] = []
        self.refused: list[tuple[int, int]] = []  # (HTTP status, Twilio code)
        self.unsubscribed: set[str] = set()
        self.landlines: set[str] = set()
        self.throttle_next = 0
        self.media: dict[str, tuple[bytes, str]] = {}  # media sid -> content, type
        self.downloads = 0
        base = f"/2010-04-01/Accounts/{account_sid}"
        self.app = Starlette(
            routes=[
                Route(f"{base}/Messages.json", self._create_message, methods=["POST"]),
                Route(f"{base}.json", self._account, methods=["GET"]),
                Route(f"{base}/Messages/{{sid}}/Media/{{media_sid}}", self._media, methods=["GET"]),
                Route("/cdn/{media_sid}", self._cdn, methods=["GET"]),
            ]
        )

    @staticmethod
    def new_account_sid() -> str:
        return "AC" + uuid.uuid4().hex

    def _authorised(self, request: Request) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return False
        return hmac.compare_digest(user, self.account_sid) and hmac.compare_digest(password, self.auth_token)

    def _error(self, status: int, code: int, message: str) -> JSONResponse:
        self.refused.append((status, code))
        body = {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}"}
        return JSONResponse({**body, "status": status}, status_code=status)

    async def _account(self, request: Request) -> JSONResponse:
        if not self._authorised(request):
            return self._error(401, 20003, "Authenticate")
        return JSONResponse({"sid": self.account_sid, "status": "active"})

    async def _media(self, request: Request) -> Response:
        """Media under the account takes Basic auth, then redirects to the CDN, as Twilio's does."""
        if not self._authorised(request):
            return self._error(401, 20003, "Authenticate")
        if request.path_params["media_sid"] not in self.media:
            return self._error(404, 20404, "The requested resource was not found")
        return RedirectResponse(f"/cdn/{request.path_params['media_sid']}", status_code=307)

    async def _cdn(self, request: Request) -> Response:
        content, mime_type = self.media[request.path_params["media_sid"]]
        self.downloads += 1
        return Response(content, media_type=mime_type)

    async def _create_message(self, request: Request) -> JSONResponse:
        if not self._authorised(request):
            return self._error(401, 20003, "Authenticate")
        if request.headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded":
            return self._error(400, 20001, "Expected a form body")
        form = parse_qsl((await request.body()).decode(), keep_blank_values=True)
        values = dict(form)
        to, body = values.get("To", ""), values.get("Body", "")
        if self.throttle_next:
            self.throttle_next -= 1
            return self._error(429, 20429, "Too Many Requests")
        if not E164.fullmatch(to):
            return self._error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if values.get("From") != self.from_number:
            return self._error(400, 21212, "The 'From' number is not a valid phone number for this account.")
        if to in self.unsubscribed:
            return self._error(400, 21610, "Attempt to send to unsubscribed recipient")
        if to in self.landlines:
            return self._error(400, 21614, f"'To' number {to} is not a valid mobile number")
        media = [value for name, value in form if name == "MediaUrl"]
        if not body and not media:
            return self._error(400, 21602, "Message body is required.")
        sms = SentSms(
            sid="SM" + uuid.uuid4().hex,
            to=to,
            sender=self.from_number,
            body=body,
            media=media,
            status_callback=values.get("StatusCallback"),
            form=form,
        )
        self.sent.append(sms)
        answer = {"sid": sms.sid, "status": "queued", "to": to, "from": sms.sender, "body": body}
        return JSONResponse(answer, status_code=201)

    # Webhooks toward the relay -------------------------------------------------------------------------

    def signed(self, url: str, params: list[tuple[str, str]]) -> tuple[bytes, dict[str, str]]:
        headers = {
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": twilio_signature(self.auth_token, url, params),
        }
        return urlencode(params).encode(), headers

    def incoming(
        self,
        url: str,
        *,
        sender: str,
        body: str,
        sid: str | None = None,
        media: Sequence[tuple[bytes, str]] = (),
        api_base: str = "https://api.twilio.com",
    ) -> tuple[bytes, dict[str, str]]:
        """An SMS, or an MMS with `media` (bytes and type each), as Twilio posts it to the relay."""
        sid = sid or "SM" + uuid.uuid4().hex
        params = [
            ("AccountSid", self.account_sid),
            ("MessageSid", sid),
            ("From", sender),
            ("To", self.from_number),
            ("Body", body),
            ("NumMedia", str(len(media))),
            ("SmsStatus", "received"),
        ]
        for index, (content, mime_type) in enumerate(media):
            media_sid = "ME" + uuid.uuid4().hex
            self.media[media_sid] = (content, mime_type)
            path = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}/Media/{media_sid}"
            params += [(f"MediaUrl{index}", api_base + path), (f"MediaContentType{index}", mime_type)]
        return self.signed(url, params)

    def status_callback(
        self, sms: SentSms, status: str, error_code: str | None = None
    ) -> tuple[bytes, dict[str, str]]:
        assert sms.status_callback is not None
        params = [
            ("AccountSid", self.account_sid),
            ("MessageSid", sms.sid),
            ("MessageStatus", status),
            ("To", sms.to),
            ("From", sms.sender),
        ]
        if error_code:
            params.append(("ErrorCode", error_code))
        return self.signed(sms.status_callback, params)

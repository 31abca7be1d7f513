"""SendGrid's webhooks as a fake: each inbound e-mail posted as multipart/form-data with Inbound Parse's
field names, and Event Webhook events as a JSON array, both signed the way SendGrid signs them (ECDSA
P-256 over timestamp + body)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from email.utils import parseaddr

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


class FakeInboundParse:
    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key = base64.b64encode(der).decode()

    def sign(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = self._key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "x-twilio-email-event-webhook-signature": base64.b64encode(signature).decode(),
            "x-twilio-email-event-webhook-timestamp": stamp,
        }

    def events(self, *events: tuple[str, str]) -> tuple[bytes, dict[str, str]]:
        """Event Webhook events, each an (event, smtp-id) pair, about mail sent through SendGrid's SMTP."""
        body = json.dumps(
            [
                {
                    "email": "ada@mail.example",
                    "timestamp": int(time.time()),
                    "smtp-id": smtp_id,
                    "event": event,
                    "sg_event_id": uuid.uuid4().hex,
                    "sg_message_id": f"{uuid.uuid4().hex}.filter0001",
                }
                for event, smtp_id in events
            ]
        ).encode()
        return body, {"content-type": "application/json", **self.sign(body)}

    def email(
        self,
        *,
        sender: str,
        to: str,
        subject: str,
        text: str,
        message_id: str | None = None,
        in_reply_to: str | None = None,
        files: list[tuple[str, str, bytes]] = [],  # noqa: B006 - read only
        timestamp: int | None = None,
        verified: bool = True,
        fields: dict[str, str] | None = None,
    ) -> tuple[bytes, dict[str, str], str]:
        """One e-mail as SendGrid posts it: body, headers (content type and signature), and its Message-ID.
        `verified`: SPF and DKIM passed for the sender's domain; `fields` replace or add form fields."""
        message_id = message_id or f"<{uuid.uuid4().hex}@mail.example>"
        header_lines = [
            f"Message-ID: {message_id}",
            f"From: {sender}",
            f"To: {to}",
            f"Subject: {subject}",
            "Date: Wed, 25 Nov 2026 09:00:00 +0000",
        ]
        if in_reply_to:
            header_lines += [f"In-Reply-To: {in_reply_to}", f"References: {in_reply_to}"]
        domain = sender.rstrip(">").rsplit("@", 1)[-1]
        form = {
            "headers": "\r\n".join(header_lines),
            "from": sender,
            "to": to,
            "subject": subject,
            "text": text,
            "envelope": json.dumps({"to": [to], "from": parseaddr(sender)[1]}),
            "attachments": str(len(files)),
            "attachment-info": json.dumps(
                {f"attachment{i}": {"filename": n, "type": t} for i, (n, t, _) in enumerate(files, 1)}
            ),
            "SPF": "pass" if verified else "softfail",
            "dkim": f"{{@{domain} : pass}}" if verified else "none",
            **(fields or {}),
        }
        boundary = f"xYzZY{uuid.uuid4().hex}"
        parts = []
        for name, value in form.items():
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
                + value.encode()
                + b"\r\n"
            )
        for index, (name, mime_type, content) in enumerate(files, 1):
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="attachment{index}"; '
                f'filename="{name}"\r\nContent-Type: {mime_type}\r\n\r\n'.encode()
                + content
                + b"\r\n"
            )
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        headers = {"content-type": f"multipart/form-data; boundary={boundary}", **self.sign(body, timestamp)}
        return body, headers, message_id

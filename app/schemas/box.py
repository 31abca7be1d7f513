"""What CXone sends to the box and what we answer. Liberal in, strict out (see docs/cxone-contract.md §2)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Liberal(BaseModel):
    """CXone's bodies are only partly documented: keep unknown fields instead of refusing them."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class EndUserRecipient(_Liberal):
    """Checked by the channel adapter's rules, so a bad id gets CXone's `outboundValidationFailed` body."""

    idOnExternalPlatform: str
    name: str | None = None


class ThreadRef(_Liberal):
    idOnExternalPlatform: str | None = Field(None, max_length=200)
    threadName: str | None = None


class PostRef(_Liberal):
    id: str | None = None
    idOnExternalPlatform: str | None = None


class MessageRef(_Liberal):
    id: str | None = None
    idOnExternalPlatform: str | None = None


class MessagePayload(_Liberal):
    text: str | None = None


class MessageContent(_Liberal):
    type: str = "TEXT"
    payload: MessagePayload | None = None
    fallbackText: str | None = None


class AttachmentRef(_Liberal):
    url: str = Field(min_length=1, max_length=4000)
    friendlyName: str | None = None


class _ReplyBody(_Liberal):
    messageContent: MessageContent | None = None
    attachments: list[AttachmentRef] = Field(default_factory=list)
    endUserRecipients: list[EndUserRecipient] | None = None
    recipients: list[EndUserRecipient] | None = None
    thread: ThreadRef | None = None
    brand: dict[str, Any] | None = None
    replyToMessage: MessageRef | None = None

    @property
    def text(self) -> str:
        content = self.messageContent
        if content is None:
            return ""
        if content.payload is not None and content.payload.text:
            return content.payload.text
        return content.fallbackText or ""

    @property
    def cxone_request_key(self) -> str | None:
        """CXone's own id for this send, where the body carries one, so a retried call is recognised."""
        extra = self.model_extra or {}
        nested = extra.get("message")
        candidates = [extra.get("idempotencyKey"), extra.get("messageId"), extra.get("id")]
        if isinstance(nested, dict):
            candidates.append(nested.get("id"))
        return next((str(c) for c in candidates if isinstance(c, str | int) and str(c)), None)

    @property
    def reply_to(self) -> str | None:
        """Which message this answers: our id when CXone knows it, else CXone's own message id."""
        ref = self.replyToMessage
        return (ref.idOnExternalPlatform or ref.id) if ref is not None else None

    @property
    def all_recipients(self) -> list[EndUserRecipient]:
        """S2 saw `endUserRecipients`; the agent-side body says `recipients`. Take either."""
        return list(self.endUserRecipients or self.recipients or [])


class OutboundRequest(_ReplyBody):
    """`POST 2.0/channel/{channelId}/outbound`: an agent or bot reply, or a proactive send."""


class LegacyReplyRequest(_ReplyBody):
    """`POST 1.0/posts/{postId}/messages`: the reply callback when "DFO 3.0 outbound" is off."""

    post: PostRef | None = None


class OutboundMessageOut(BaseModel):
    idOnExternalPlatform: str
    createdAtWithMilliseconds: str
    url: str


class ThreadOut(BaseModel):
    idOnExternalPlatform: str


class OutboundResponse(BaseModel):
    message: OutboundMessageOut
    thread: ThreadOut
    recipients: list[EndUserRecipient]


class LegacyReplyResponse(BaseModel):
    idOnExternalPlatform: str


class SenderAction(_Liberal):
    action: Literal["isTypingOn", "isTypingOff"]


class SenderActionRequest(_Liberal):
    senderAction: SenderAction


class RecipientsValidationRequest(_Liberal):
    endUserRecipients: list[EndUserRecipient] | None = None
    recipients: list[EndUserRecipient] | None = None

    @model_validator(mode="after")
    def _some_recipient(self) -> RecipientsValidationRequest:
        if not (self.endUserRecipients or self.recipients):
            raise ValueError("endUserRecipients must hold at least one recipient")
        return self

    @property
    def all_recipients(self) -> list[EndUserRecipient]:
        return list(self.endUserRecipients or self.recipients or [])


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int

"""Shapes of the loopback fake customer's API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class CustomerAttachment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=4000)
    friendly_name: str | None = Field(None, max_length=200)


class CustomerMessageIn(BaseModel):
    """What the fake customer types. `event_id` makes a resend harmless, as a provider's event id would."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    sender: str = Field(alias="from", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9+@._:\-]+$")
    name: str | None = Field(None, max_length=200)
    text: str = Field("", max_length=20000)
    event_id: str | None = Field(None, min_length=1, max_length=200)
    attachments: list[CustomerAttachment] = Field(default_factory=list, max_length=10)


class CustomerMessageAccepted(BaseModel):
    message_id: str
    thread_id: str
    status: str
    duplicate: bool


class ReceivedMessageOut(BaseModel):
    provider_message_id: str
    message_id: str
    thread_id: str
    recipient_id: str
    text: str
    attachments: list[str]
    reply_to: str | None
    received_at: datetime


class LoopbackInbox(BaseModel):
    channel_id: str
    messages: list[ReceivedMessageOut]


class CustomerReceiptIn(BaseModel):
    """The fake customer's phone reports a message it received: delivered, read, or failed."""

    model_config = ConfigDict(extra="forbid")

    message_id: str = Field(min_length=1, max_length=200, description="Our message id or the loopback's own.")
    status: Literal["delivered", "seen", "failed"]
    reason: str | None = Field(None, max_length=500)


class CustomerReceiptAccepted(BaseModel):
    message_id: str
    provider_message_id: str
    status: str

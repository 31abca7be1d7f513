"""Every message that crosses the relay, and the inbound events already seen."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime, new_uuid, utcnow


class Message(Base):
    """Our id is the `idOnExternalPlatform` CXone sees; the provider's id is kept beside it."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("channel_id", "provider_event_id"),
        UniqueConstraint("channel_id", "cxone_request_key"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id"), index=True)
    thread_id: Mapped[str] = mapped_column(ForeignKey("threads.id"), index=True)
    direction: Mapped[str] = mapped_column(String(10))
    text: Mapped[str] = mapped_column(Text, default="")
    title: Mapped[str | None] = mapped_column(String(500), default=None)  # an e-mail's subject
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    end_user_id: Mapped[str] = mapped_column(String(200))
    reply_to_external_id: Mapped[str | None] = mapped_column(String(200), default=None)
    status: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text, default=None)
    provider_event_id: Mapped[str | None] = mapped_column(String(200), default=None)
    provider_message_id: Mapped[str | None] = mapped_column(String(200), index=True, default=None)
    cxone_request_key: Mapped[str | None] = mapped_column(String(200), default=None)
    cxone_message_id: Mapped[str | None] = mapped_column(String(100), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class InboundEvent(Base):
    """The inbox: one row per provider event ever accepted, so a resent event has no second effect."""

    __tablename__ = "inbound_events"

    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id"), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

"""Channels (CXone points of contact) and the conversation threads on them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime, new_uuid, utcnow


class Channel(Base):
    """Our id is also the channel id in CXone, so both sides name the channel the same way."""

    __tablename__ = "channels"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    integration_id: Mapped[str] = mapped_column(ForeignKey("integrations.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    adapter: Mapped[str] = mapped_column(String(50))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    secrets_sealed: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class Thread(Base):
    """One conversation with one end user. `external_id` is the thread id CXone knows."""

    __tablename__ = "threads"
    __table_args__ = (
        UniqueConstraint("channel_id", "external_id"),
        # A customer's next message joins their latest thread on the channel.
        Index("ix_threads_end_user", "channel_id", "end_user_id", "last_message_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id"), index=True)
    external_id: Mapped[str] = mapped_column(String(200))
    end_user_id: Mapped[str] = mapped_column(String(200))
    end_user_name: Mapped[str | None] = mapped_column(String(200), default=None)
    cxone_thread_id: Mapped[str | None] = mapped_column(String(100), index=True, default=None)
    cxone_contact_id: Mapped[str | None] = mapped_column(String(100), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_message_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

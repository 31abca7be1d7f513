"""Customers who asked not to be messaged (opt-out keywords such as STOP)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime, utcnow


class Suppression(Base):
    """No message goes from this integration to this address until the customer opts back in (START).

    The address is the end user's id on the channel (a phone number, a chat id). It is kept per
    integration, so an opt-out received on one channel covers the integration's other channels too."""

    __tablename__ = "suppressions"

    integration_id: Mapped[str] = mapped_column(
        ForeignKey("integrations.id", ondelete="CASCADE"), primary_key=True
    )
    address: Mapped[str] = mapped_column(String(200), primary_key=True)
    keyword: Mapped[str] = mapped_column(String(20))
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

"""A BYOC integration (one per "Add BYOC" record in CXone) and the box tokens we issue to CXone."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime, new_uuid, utcnow


class Integration(Base):
    __tablename__ = "integrations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(100))
    cxone_integration_id: Mapped[str | None] = mapped_column(String(100), unique=True, default=None)
    cxone_issuer_url: Mapped[str] = mapped_column(String(500))
    cxone_api_host: Mapped[str | None] = mapped_column(String(500), default=None)
    cxone_auth_kind: Mapped[str] = mapped_column(String(20))
    cxone_credentials_encrypted: Mapped[str] = mapped_column(Text)
    box_client_id: Mapped[str] = mapped_column(String(64), unique=True)
    box_client_secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class BoxToken(Base):
    """An access token CXone got from our box token endpoint; only its SHA-256 is stored."""

    __tablename__ = "box_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    integration_id: Mapped[str] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

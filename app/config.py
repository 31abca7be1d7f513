"""Settings, read once from the environment (`BYOC_` prefix) and an optional `.env` file."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_KEY = "dev-insecure-secret-key-change-me"
GLOBAL_CXONE_ISSUER = "https://cxone.niceincontact.com"


class Settings(BaseSettings):
    """Every knob of the service. Unknown `BYOC_` keys are refused so a typo in `.env` fails loudly."""

    model_config = SettingsConfigDict(
        env_prefix="BYOC_", env_file=".env", env_file_encoding="utf-8", extra="forbid"
    )

    env: Literal["dev", "prod"] = "prod"
    secret_key: str = Field(DEV_SECRET_KEY, min_length=16)
    database_url: str = "sqlite+aiosqlite:///./byoc.db"
    public_url: str = Field(
        "", description="Where CXone reaches us. Empty: http://HOST:PORT of `byoc serve`."
    )
    box_path: str = "/integration/box"
    box_token_ttl_seconds: int = Field(3600, ge=30, le=7 * 24 * 3600)
    cxone_issuer_url: str = GLOBAL_CXONE_ISSUER
    cxone_timeout_seconds: float = Field(15.0, gt=0)
    simulator: bool = False
    worker: bool = True
    worker_poll_seconds: float = Field(0.2, gt=0)
    worker_concurrency: int = Field(32, ge=1, le=1000)
    lease_seconds: float = Field(30.0, ge=1)
    shutdown_grace_seconds: float = Field(20.0, ge=0)
    inline_delivery_budget_seconds: float = Field(2.0, ge=0)
    config_cache_seconds: float = Field(
        5.0, ge=0, description="How long a process may reuse channels, integrations and box tokens it read."
    )
    retry_base_seconds: float = Field(1.0, gt=0)
    retry_cap_seconds: float = Field(300.0, gt=0)
    retry_max_attempts: int = Field(12, ge=1)
    retry_max_age_seconds: float = Field(24 * 3600.0, gt=0)
    breaker_failure_threshold: int = Field(5, ge=1)
    breaker_cooldown_seconds: float = Field(30.0, gt=0)
    typing_ttl_seconds: float = Field(15.0, gt=0)
    idempotency_key_ttl_seconds: float = Field(24 * 3600.0, gt=0)
    max_attachment_bytes: int = Field(
        25 * 1024 * 1024,
        ge=1,
        description="The largest customer file handed to CXone (base64 makes it a third larger on the wire).",
    )
    max_webhook_body_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="A provider's webhook call larger than this is refused with 413.",
    )
    file_retention_hours: float = Field(
        7 * 24.0, gt=0, description="How long fetched files, and the links sent for them, are kept."
    )
    crash_at: str = Field("", description="Tests only: exit the process abruptly at this named point.")
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> Settings:
        if self.secret_key == DEV_SECRET_KEY and self.env != "dev":
            raise ValueError(
                "BYOC_SECRET_KEY is the built-in development key; set a random one "
                "(python -c 'import secrets; print(secrets.token_urlsafe(32))') or BYOC_ENV=dev"
            )
        self.public_url = self.public_url.rstrip("/")
        self.box_path = "/" + self.box_path.strip("/")
        return self

    @property
    def box_url(self) -> str:
        return self.public_url + self.box_path


@lru_cache
def get_settings() -> Settings:
    return Settings()

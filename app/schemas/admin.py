"""Shapes of the JSON admin API (`/api/v1`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

NAME = Field(min_length=1, max_length=100)


def _check_http_url(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().rstrip("/")
    if not value.startswith(("https://", "http://")) or len(value) < 10:
        raise ValueError("must be an absolute http(s) URL")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CxoneCredentialsIn(_Strict):
    """Either an access key (with the registered app's client id/secret if your tenant needs one),
    or a fixed bearer token for tests."""

    access_key_id: str | None = Field(None, min_length=1, max_length=200)
    access_key_secret: SecretStr | None = None
    client_id: str | None = Field(None, max_length=200)
    client_secret: SecretStr | None = None
    bearer_token: SecretStr | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> CxoneCredentialsIn:
        has_key = self.access_key_id is not None or self.access_key_secret is not None
        if has_key and self.bearer_token is not None:
            raise ValueError("give either access_key_id/access_key_secret or bearer_token, not both")
        if self.bearer_token is None and not (self.access_key_id and self.access_key_secret):
            raise ValueError("access_key_id and access_key_secret are both required (or give bearer_token)")
        return self

    @property
    def kind(self) -> Literal["access_key", "bearer"]:
        return "bearer" if self.bearer_token is not None else "access_key"

    def to_stored(self) -> dict[str, str]:
        stored: dict[str, str] = {}
        for field in ("access_key_id", "client_id"):
            if (value := getattr(self, field)) is not None:
                stored[field] = value
        for field in ("access_key_secret", "client_secret", "bearer_token"):
            if (secret := getattr(self, field)) is not None:
                stored[field] = secret.get_secret_value()
        return stored


class IntegrationCreate(_Strict):
    name: str = NAME
    cxone: CxoneCredentialsIn
    cxone_issuer_url: str | None = Field(None, description="Default: the global CXone issuer.")
    cxone_api_host: str | None = Field(None, description="Default: discovered from the issuer.")
    cxone_integration_id: str | None = Field(None, min_length=1, max_length=100)

    _urls = field_validator("cxone_issuer_url", "cxone_api_host")(_check_http_url)


class IntegrationUpdate(_Strict):
    name: str | None = Field(None, min_length=1, max_length=100)
    cxone: CxoneCredentialsIn | None = None
    cxone_issuer_url: str | None = None
    cxone_api_host: str | None = None
    cxone_integration_id: str | None = Field(None, min_length=1, max_length=100)

    _urls = field_validator("cxone_issuer_url", "cxone_api_host")(_check_http_url)


class IntegrationOut(BaseModel):
    id: str
    name: str
    cxone_integration_id: str | None
    cxone_issuer_url: str
    cxone_api_host: str | None
    cxone_auth_kind: str
    cxone_form: dict[str, str] = Field(
        description="What to type into CXone > ACD > Digital > Bring Your Own Channel > Add."
    )
    created_at: datetime
    updated_at: datetime


class IntegrationWithSecret(IntegrationOut):
    secret_notice: str = "The Client Secret is shown only now. Store it in CXone; it cannot be read again."


class ChannelCreate(_Strict):
    integration_id: str = Field(min_length=1, max_length=36)
    name: str = NAME
    adapter: str = Field("loopback", min_length=1, max_length=50)
    config: dict[str, Any] = Field(default_factory=dict)


class ChannelOut(BaseModel):
    id: str
    integration_id: str
    name: str
    adapter: str
    config: dict[str, Any]
    created_at: datetime
    deleted_at: datetime | None


class ChannelCreated(ChannelOut):
    secrets: dict[str, str] = Field(
        default_factory=dict,
        description="The channel's secrets (e.g. a webhook signing secret), shown only now.",
    )


class ThreadOut(BaseModel):
    id: str
    channel_id: str
    external_id: str
    end_user_id: str
    end_user_name: str | None
    cxone_thread_id: str | None
    cxone_contact_id: str | None
    created_at: datetime
    last_message_at: datetime


class MessageOut(BaseModel):
    id: str
    channel_id: str
    thread_id: str
    direction: str
    text: str
    attachments: list[dict[str, Any]]
    end_user_id: str
    reply_to_external_id: str | None
    status: str
    error: str | None
    provider_message_id: str | None
    cxone_message_id: str | None
    created_at: datetime


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]


class AdapterOut(BaseModel):
    """An installed channel adapter: what it can carry and the config a channel of it takes."""

    name: str
    capabilities: dict[str, Any]
    config_schema: dict[str, Any]
    secret_fields: list[str]


class ChannelCheck(BaseModel):
    """Whether the channel's configuration works against its provider right now."""

    ok: bool
    detail: str

"""Settings refuse what would be unsafe or a typo, and say why."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import DEV_SECRET_KEY, Settings


def test_the_built_in_secret_key_is_refused_outside_dev(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BYOC_SECRET_KEY", raising=False)
    with pytest.raises(ValidationError, match="BYOC_SECRET_KEY"):
        Settings(_env_file=None, env="prod")
    assert Settings(_env_file=None, env="dev").secret_key == DEV_SECRET_KEY
    assert Settings(_env_file=None, env="prod", secret_key="x" * 32).env == "prod"


def test_unknown_keys_in_the_env_file_are_refused(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("BYOC_ENV=dev\nBYOC_DATABSE_URL=sqlite:///typo.db\n")
    with pytest.raises(ValidationError, match="databse_url"):
        Settings(_env_file=env_file)


def test_env_file_values_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BYOC_PUBLIC_URL", raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("BYOC_ENV=dev\nBYOC_PUBLIC_URL=https://relay.example.com/\nBYOC_BOX_PATH=box/\n")
    settings = Settings(_env_file=env_file)
    assert settings.box_url == "https://relay.example.com/box"


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BYOC_ENV", "dev")
    monkeypatch.setenv("BYOC_BOX_TOKEN_TTL_SECONDS", "120")
    assert Settings(_env_file=None).box_token_ttl_seconds == 120
    monkeypatch.setenv("BYOC_BOX_TOKEN_TTL_SECONDS", "5")
    with pytest.raises(ValidationError, match="box_token_ttl_seconds"):
        Settings(_env_file=None)

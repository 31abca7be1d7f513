"""Secrets round-trip, never appear in what is stored, and compare only when equal."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.security import CredentialBox, generate_secret, hash_secret, secret_matches

BOX = CredentialBox("unit-test-secret-key-0123456789")
TEXT = st.text(min_size=1, max_size=80)


@given(st.dictionaries(st.sampled_from(["access_key_id", "access_key_secret", "bearer_token"]), TEXT))
def test_sealed_credentials_round_trip_and_hide_their_values(payload: dict[str, str]) -> None:
    sealed = BOX.seal(payload)
    assert BOX.open(sealed) == payload
    for value in payload.values():
        if len(value) >= 4:
            assert value not in sealed


def test_another_key_cannot_open_sealed_credentials() -> None:
    sealed = BOX.seal({"access_key_secret": "s3cret"})
    with pytest.raises(ValueError, match="BYOC_SECRET_KEY"):
        CredentialBox("another-secret-key-0123456789").open(sealed)


@given(TEXT, TEXT)
def test_secret_matches_only_the_same_secret(a: str, b: str) -> None:
    assert secret_matches(a, hash_secret(a))
    assert secret_matches(b, hash_secret(a)) == (a == b)


def test_generated_secrets_are_long_and_distinct() -> None:
    secrets = {generate_secret() for _ in range(100)}
    assert len(secrets) == 100
    assert min(len(s) for s in secrets) >= 40

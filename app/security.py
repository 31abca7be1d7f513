"""Secrets: generated here, shown once, stored as hashes or encrypted, compared in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def generate_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def hash_secret(secret: str) -> str:
    """SHA-256 is enough for the 256-bit random secrets we mint (no dictionary to attack)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(presented: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(presented), stored_hash)


def derived_key(secret_key: str, purpose: bytes) -> bytes:
    """A 256-bit key for one purpose, derived (HKDF) from the service's secret key."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret_key.encode())


class CredentialBox:
    """Encrypts stored third-party credentials with a key derived from the service's secret key."""

    def __init__(self, secret_key: str) -> None:
        derived = derived_key(secret_key, b"byoc-relay/credentials/v1")
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def seal(self, payload: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(payload).encode()).decode()

    def open(self, sealed: str) -> dict[str, Any]:
        try:
            data = json.loads(self._fernet.decrypt(sealed.encode()))
        except InvalidToken as exc:
            raise ValueError("stored credentials cannot be decrypted: was BYOC_SECRET_KEY changed?") from exc
        if not isinstance(data, dict):
            raise ValueError("stored credentials are not an object")
        return data

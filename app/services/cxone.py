"""One DFO client per integration, so tokens and discovery are cached across requests."""

from __future__ import annotations

import httpx

from app.cxone.client import DfoClient, DfoCredentials
from app.models import Integration
from app.security import CredentialBox


class CxoneGateway:
    def __init__(self, http: httpx.AsyncClient, credential_box: CredentialBox) -> None:
        self._http = http
        self._box = credential_box
        self._clients: dict[str, tuple[object, DfoClient]] = {}

    def client_for(self, integration: Integration) -> DfoClient:
        version = (
            integration.cxone_credentials_encrypted,
            integration.cxone_issuer_url,
            integration.cxone_api_host,
        )
        cached = self._clients.get(integration.id)
        if cached is not None and cached[0] == version:
            return cached[1]
        stored = self._box.open(integration.cxone_credentials_encrypted)
        credentials = DfoCredentials(
            issuer_url=integration.cxone_issuer_url,
            access_key_id=stored.get("access_key_id"),
            access_key_secret=stored.get("access_key_secret"),
            client_id=stored.get("client_id"),
            client_secret=stored.get("client_secret"),
            bearer_token=stored.get("bearer_token"),
            api_host=integration.cxone_api_host,
        )
        client = DfoClient(credentials, http=self._http)
        self._clients[integration.id] = (version, client)
        return client

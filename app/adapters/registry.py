"""Which adapter serves which channel. Start-up fails when a configured channel's adapter is missing."""

from __future__ import annotations

from collections.abc import Iterable

import httpx

from app.adapters.base import ChannelAdapter
from app.adapters.loopback import LoopbackAdapter
from app.adapters.webhook import WebhookAdapter
from app.errors import ApiError


class MissingAdapterError(RuntimeError):
    pass


class AdapterRegistry:
    def __init__(self, adapters: Iterable[ChannelAdapter] = ()) -> None:
        self._adapters: dict[str, ChannelAdapter] = {}
        for adapter in adapters:
            self.register(adapter)

    def register(self, adapter: ChannelAdapter) -> None:
        if adapter.name in self._adapters:
            raise ValueError(f"two adapters are named {adapter.name!r}")
        self._adapters[adapter.name] = adapter

    def names(self) -> list[str]:
        return sorted(self._adapters)

    def get(self, name: str) -> ChannelAdapter:
        try:
            return self._adapters[name]
        except KeyError:
            raise MissingAdapterError(f"no channel adapter named {name!r} is installed") from None

    def for_new_channel(self, name: str) -> ChannelAdapter:
        """Like `get`, but as a 422 the admin API can show."""
        if name not in self._adapters:
            raise ApiError(
                422,
                "unknown_adapter",
                f"No channel adapter named {name!r}. Installed: {', '.join(self.names())}.",
            )
        return self._adapters[name]

    def check_configured(self, adapter_names: Iterable[str]) -> None:
        missing = sorted(set(adapter_names) - set(self._adapters))
        if missing:
            raise MissingAdapterError(
                "channels are configured for adapters that are not installed: "
                + ", ".join(missing)
                + f" (installed: {', '.join(self.names())})"
            )


def default_registry(http: httpx.AsyncClient) -> AdapterRegistry:
    """The built-in adapters; they share the app's HTTP client and its connection pool."""
    return AdapterRegistry([LoopbackAdapter(), WebhookAdapter(http)])

"""Which adapter serves which channel. Start-up fails when a configured channel's adapter is missing.

Adapters are found through the `byoc_relay.adapters` entry-point group, the built-in ones included, so a
third-party package installed beside the relay adds its adapter with no change here:

    [project.entry-points."byoc_relay.adapters"]
    my_platform = "my_package:create_adapter"      # create_adapter(context: AdapterContext) -> adapter
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

import httpx

from app.adapters.base import ChannelAdapter
from app.errors import ApiError

ENTRY_POINT_GROUP = "byoc_relay.adapters"
log = logging.getLogger("byoc.adapters")


@dataclass(frozen=True)
class AdapterContext:
    """What the relay lends an adapter: its shared HTTP client (one connection pool for all), and the
    public base URL providers reach it at (for callbacks such as delivery reports)."""

    http: httpx.AsyncClient
    public_url: str = ""


class MissingAdapterError(RuntimeError):
    pass


class AdapterRegistry:
    def __init__(self, adapters: Iterable[ChannelAdapter] = ()) -> None:
        self._adapters: dict[str, ChannelAdapter] = {}
        self._broken: dict[str, str] = {}  # entry points that failed to load, and why
        for adapter in adapters:
            self.register(adapter)

    @classmethod
    def from_entry_points(cls, context: AdapterContext) -> AdapterRegistry:
        """Every installed adapter. One that fails to load is remembered, not fatal: start-up stops only
        if a configured channel needs it, and then says why it is missing."""
        registry = cls()
        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
            registry._load(entry_point, context)
        return registry

    def _load(self, entry_point: EntryPoint, context: AdapterContext) -> None:
        try:
            adapter = entry_point.load()(context)
            if adapter.name != entry_point.name:
                raise ValueError(f"it calls itself {adapter.name!r}")
            self.register(adapter)
        except Exception as exc:
            self._broken[entry_point.name] = (
                f"{entry_point.value} failed to load: {type(exc).__name__}: {exc}"
            )
            log.error("channel adapter %r: %s", entry_point.name, self._broken[entry_point.name])

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
            reasons = "; ".join(self._broken.get(name, f"{name}: not installed") for name in missing)
            raise MissingAdapterError(
                f"channels are configured for adapters that are not available: {', '.join(missing)}. "
                f"{reasons}. Installed: {', '.join(self.names())}. Install the package that provides "
                f"each (entry-point group {ENTRY_POINT_GROUP!r}) or delete its channels."
            )

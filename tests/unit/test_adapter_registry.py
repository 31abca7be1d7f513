"""Adapters come from the `byoc_relay.adapters` entry points, built-ins included; a channel whose adapter
is missing or broken stops start-up with a message that names it and says why."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import httpx
import pytest

from app.adapters import registry as registry_module
from app.adapters.registry import AdapterContext, AdapterRegistry, MissingAdapterError


def context() -> AdapterContext:
    return AdapterContext(http=httpx.AsyncClient())


def test_the_built_in_adapters_register_through_entry_points() -> None:
    assert AdapterRegistry.from_entry_points(context()).names() == [
        "email",
        "loopback",
        "telegram",
        "twilio_sms",
        "webhook",
        "whatsapp_cloud",
    ]


def test_a_channel_whose_adapter_is_not_installed_stops_start_up_naming_it() -> None:
    registry = AdapterRegistry.from_entry_points(context())
    registry.check_configured(["webhook", "loopback"])
    with pytest.raises(MissingAdapterError) as raised:
        registry.check_configured(["webhook", "carrier_pigeon"])
    assert "carrier_pigeon: not installed" in str(raised.value)
    assert "Installed: email, loopback, telegram, twilio_sms, webhook, whatsapp_cloud" in str(raised.value)


def test_a_broken_adapter_package_is_reported_only_when_a_channel_needs_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    group = registry_module.ENTRY_POINT_GROUP
    broken = EntryPoint(name="broken", value="no_such_module_anywhere:create", group=group)
    misnamed = EntryPoint(name="alias", value="app.adapters.webhook:create_adapter", group=group)
    real = EntryPoint(name="loopback", value="app.adapters.loopback:create_adapter", group=group)

    def fake_entry_points(**selection: Any) -> list[EntryPoint]:
        assert selection == {"group": group}
        return [broken, misnamed, real]

    monkeypatch.setattr(registry_module, "entry_points", fake_entry_points)
    registry = AdapterRegistry.from_entry_points(context())
    assert registry.names() == ["loopback"]
    registry.check_configured(["loopback"])  # nobody needs the broken ones: start-up goes on
    with pytest.raises(MissingAdapterError) as raised:
        registry.check_configured(["broken", "alias"])
    message = str(raised.value)
    assert "no_such_module_anywhere:create failed to load: ModuleNotFoundError" in message
    assert "it calls itself 'webhook'" in message

"""The agent's discovery settings (RFC 8995 §4): method names, order, defaults, and the
clear errors of a bad configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from zerotouch_plugin.config import DeviceConfig, load_config
from zerotouch_plugin.errors import ConfigError

REGISTRAR = "https://registrar.example:8443"
VENDOR = "https://registrar.vendor.example"


@pytest.mark.parametrize(
    ("settings", "methods"),
    [
        ({}, ("grasp", "mdns", "dns-sd")),
        ({"vendor_registrar": VENDOR}, ("grasp", "mdns", "dns-sd", "vendor")),
        ({"registrars": [REGISTRAR]}, ("configured",)),
        ({"discovery": ["mdns", "grasp"]}, ("mdns", "grasp")),
        # registrars given with a list that lacks 'configured' come first
        ({"registrars": [REGISTRAR], "discovery": ["grasp"]}, ("configured", "grasp")),
        (
            {"registrars": [REGISTRAR], "discovery": ["grasp", "configured"]},
            ("grasp", "configured"),
        ),
    ],
)
def test_methods_in_order(settings: dict[str, object], methods: tuple[str, ...]) -> None:
    assert load_config(DeviceConfig, None, settings).discovery_methods == methods


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"discovery": ["grasp", "bonjour"]}, "unknown method.*'bonjour'.*known: configured"),
        ({"discovery": ["grasp", "grasp"]}, "named once"),
        ({"discovery": "grasp"}, "list of method names"),
        ({"discovery": ["configured"]}, "'configured' needs registrars"),
        ({"discovery": ["vendor"]}, "'vendor' needs vendor_registrar"),
        ({"vendor_registrar": "http://vendor.example"}, "vendor_registrar.*https"),
        ({"interface": "eth0/1"}, "not an interface name"),
        ({"discovery_timeout": 0}, "discovery_timeout must be positive"),
        ({"discovery_timeouts": {"carrier-pigeon": 1}}, "unknown method 'carrier-pigeon'"),
        ({"discovery_timeouts": {"mdns": -1}}, "mdns must be a positive number"),
    ],
)
def test_bad_discovery_settings_are_named(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(DeviceConfig, None, settings)


def test_device_toml_keys(tmp_path: Path) -> None:
    path = tmp_path / "device.toml"
    path.write_text(
        'discovery = ["grasp", "vendor"]\ninterface = "eth0"\n'
        f'vendor_registrar = "{VENDOR}"\ndiscovery_timeouts = {{ grasp = 3.5 }}\n'
    )
    config = load_config(DeviceConfig, path, {})
    assert config.discovery_methods == ("grasp", "vendor")
    assert config.interface == "eth0"
    assert config.vendor_registrar == VENDOR
    assert dict(config.discovery_timeouts) == {"grasp": 3.5}

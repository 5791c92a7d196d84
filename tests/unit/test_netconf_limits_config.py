"""``[netconf_limits]`` in device.toml: defaults, dashed keys, refused values."""

from __future__ import annotations

from pathlib import Path

import pytest

from zerotouch_plugin.config import DeviceConfig, NetconfLimits, load_config
from zerotouch_plugin.errors import ConfigError


def test_defaults_bound_every_resource() -> None:
    limits = DeviceConfig().netconf_limits
    assert limits.max_message == 16 * 1024 * 1024
    assert limits.max_buffered == 64 * 1024 * 1024
    assert limits.max_sessions == 64
    assert limits.max_auth_attempts == 6
    assert 0 < limits.login_timeout <= 120


def test_a_toml_table_with_dashed_keys(tmp_path: Path) -> None:
    path = tmp_path / "device.toml"
    path.write_text("[netconf_limits]\nmax-sessions = 4\nidle_timeout = 0\n")
    limits = load_config(DeviceConfig, path, {}).netconf_limits
    assert limits == NetconfLimits(max_sessions=4, idle_timeout=0)


@pytest.mark.parametrize(
    "table",
    [
        "max_sessions = 0",
        "max_message = -1",
        'hello_timeout = "soon"',
        "max_sessions = 1.5",
        "no_such_limit = 1",
    ],
)
def test_bad_limits_are_refused(tmp_path: Path, table: str) -> None:
    path = tmp_path / "device.toml"
    path.write_text(f"[netconf_limits]\n{table}\n")
    with pytest.raises(ConfigError):
        load_config(DeviceConfig, path, {})

"""DeviceConfig from a device folder's device.toml: users, cert-to-name rules, listeners."""

from __future__ import annotations

from pathlib import Path

import pytest

from zerotouch_plugin.config import (
    AgentConfig,
    CertToName,
    DeviceConfig,
    DeviceUser,
    check_password,
    hash_password,
    load_config,
)
from zerotouch_plugin.errors import ConfigError


def test_toml_with_users_and_rules(tmp_path: Path) -> None:
    path = tmp_path / "device.toml"
    path.write_text(
        'netconf_ssh = "127.0.0.1:830"\n'
        '[[users]]\nname = "admin"\npassword = "pw"\n'
        '[[cert_to_name]]\nfingerprint = "SHA256:' + ":".join(["AB"] * 32) + '"\n'
        'map_type = "specified"\nname = "nms"\n'
    )
    config = load_config(DeviceConfig, path, {"restconf": "[::1]:8443"})
    assert config.users == (DeviceUser("admin", "pw"),)
    assert config.cert_to_name == (CertToName("ab" * 32, "specified", "nms"),)
    assert (config.netconf_ssh, config.restconf, config.netconf_tls) == (
        "127.0.0.1:830",
        "[::1]:8443",
        None,
    )


def test_budgets_from_the_file(tmp_path: Path) -> None:
    """Issue 11 items 1, 2: the XPath time budget and the edit entry budget."""
    assert (DeviceConfig().max_edit_entries, DeviceConfig().netconf_limits.xpath_budget) == (
        20_000,
        2.0,
    )
    path = tmp_path / "device.toml"
    path.write_text("max-edit-entries = 500\n[netconf_limits]\nxpath-budget = 0.25\n")
    config = load_config(DeviceConfig, path, {})
    assert (config.max_edit_entries, config.netconf_limits.xpath_budget) == (500, 0.25)


def test_default_rule_maps_common_name() -> None:
    assert DeviceConfig().cert_to_name == (CertToName("*", "common-name"),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('netconf_ssh = "localhost"\n', "HOST:PORT"),
        ('netconf_ssh = "localhost:8\u00b2"\n', "'localhost:8\u00b2' is not HOST:PORT"),
        ("[netconf_limits]\nmax_unread = 0\n", "max_unread must be positive"),
        ('[[users]]\nname = "x"\n', "neither a password nor a public key"),
        (
            '[[users]]\nname = "x"\npassword = "a"\n[[users]]\nname = "x"\npassword = "b"\n',
            "unique",
        ),
        ('[[cert_to_name]]\nfingerprint = "*"\nmap_type = "subject"\n', "map_type"),
        ('[[cert_to_name]]\nfingerprint = "abc"\nmap_type = "common-name"\n', "fingerprint"),
        ('users = "admin"\n', "list"),
        ('colour = "red"\n', "unknown configuration keys"),
        ('registrars = "https://a.example"\n', "list of URLs"),
        ('registrars = ["http://a.example"]\n', "https://HOST"),
        ('registrars = ["https://a.example:99999"]\n', "a.example:99999"),
        ("bootstrap_retry_delay = 0\n", "positive"),
        ("bootstrap_retry_delay = 10\nbootstrap_max_delay = 5\n", "at least bootstrap_retry"),
        ("bootstrap_rounds = -1\n", "at least 0"),
        ("bootstrap_history = 70000\n", "at most 65535"),
        ('bootstrap_timeout = "10"\n', "number of seconds"),
        ("max_edit_entries = 0\n", "max_edit_entries must be at least 1"),
        ("max_edit_entries = 1.5\n", "max_edit_entries must be an integer"),
        ("[netconf_limits]\nxpath_budget = 0\n", "xpath_budget must be positive"),
    ],
)
def test_bad_configuration_names_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "device.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(DeviceConfig, path, {})


def test_password_hashes() -> None:
    stored = hash_password("s3cret", salt=b"0123456789abcdef", iterations=1000)
    assert stored.startswith("pbkdf2-sha256$1000$")
    assert check_password(stored, "s3cret")
    assert not check_password(stored, "s3cret ")
    assert check_password("plain", "plain") and not check_password("plain", "Plain")
    assert not check_password("pbkdf2-sha256$x$y$z", "anything")  # malformed: refuse


def test_registrars_from_the_file_and_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "device.toml"
    path.write_text(
        'registrars = ["https://a.example:8443", "https://b.example"]\n'
        "bootstrap_retry_delay = 0.5\nbootstrap_rounds = 3\n"
    )
    config = load_config(DeviceConfig, path, {"registrars": None})
    assert config.registrars == ("https://a.example:8443", "https://b.example")
    assert (config.bootstrap_retry_delay, config.bootstrap_rounds) == (0.5, 3)
    override = load_config(DeviceConfig, path, {"registrars": ["https://c.example:1"]})
    assert override.registrars == ("https://c.example:1",)


def test_the_agent_keys_become_its_own_configuration(tmp_path: Path) -> None:
    path = tmp_path / "device.toml"
    path.write_text(
        'registrars = ["https://registrar.example:8443"]\nbootstrap_rounds = 3\n'
        "renew_fraction = 0.6\nrenewal = false\n"
        '[[users]]\nname = "admin"\npassword = "pw"\n'
    )
    agent = load_config(DeviceConfig, path, {}).agent_config()
    assert isinstance(agent, AgentConfig)
    assert agent.registrars == ("https://registrar.example:8443",)
    assert agent.bootstrap_rounds == 3
    assert (agent.renewal, agent.renew_fraction) == (False, 0.6)
    assert AgentConfig().renewal is True and AgentConfig().renew_fraction == 0.75


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"renew_fraction": 0.4}, ValueError, "between 0.5 and 0.9"),
        ({"renew_fraction": 0.95}, ValueError, "between 0.5 and 0.9"),
        ({"renew_fraction": float("nan")}, ValueError, "finite"),
        ({"renew_fraction": "half"}, TypeError, "renew_fraction"),
        ({"renewal": "yes"}, TypeError, "renewal must be true or false"),
        ({"registrars": ["http://plain"]}, ValueError, "https"),
        ({"bootstrap_history": 0}, ValueError, "at least 1"),
    ],
)
def test_agent_config_checks_itself(
    settings: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        AgentConfig(**settings)  # type: ignore[arg-type]
    with pytest.raises(error, match=message):
        DeviceConfig(**settings)  # type: ignore[arg-type]

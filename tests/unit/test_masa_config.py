"""MasaConfig: defaults, TOML loading, and a clear error for every bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from zerotouch_plugin.config import MasaConfig, load_config
from zerotouch_plugin.errors import ConfigError


def test_defaults_are_the_lab_policy() -> None:
    config = MasaConfig()
    assert config.policy == "first-come" and config.pin == "domain-ca"
    assert not config.nonceless_allowed and config.voucher_lifetime == 3600
    assert config.db is None and config.registrar_cas == ()


def test_toml_then_command_line(tmp_path: Path) -> None:
    path = tmp_path / "masa.toml"
    path.write_text(
        'policy = "claims"\nnonceless-allowed = true\nregistrar_cas = ["a.pem"]\n'
        "require_client_cert = true\n"
    )
    config = load_config(MasaConfig, path, {"policy": "first-come", "db": None})
    assert config.policy == "first-come"  # the command line wins
    assert config.nonceless_allowed and config.registrar_cas == ("a.pem",)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"policy": "anyone"}, "policy 'anyone' is not one of first-come, claims"),
        ({"pin": "leaf"}, "pin 'leaf' is not one of"),
        ({"nonceless_allowed": "yes"}, "nonceless_allowed must be true or false"),
        ({"voucher_lifetime": 0}, "voucher_lifetime must be at least 1"),
        ({"max_body_bytes": "big"}, "max_body_bytes must be an integer"),
        ({"registrar_cas": "one.pem"}, "registrar_cas must be a list of file paths"),
        ({"require_client_cert": True}, "require_client_cert needs registrar_cas"),
        ({"colour": "blue"}, "unknown configuration keys: colour"),
    ],
)
def test_bad_values_name_the_key(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(MasaConfig, None, values)

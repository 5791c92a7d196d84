"""``ldevid_lifetime_seconds`` in registrar.toml: the LDevID lifetime of enrollment and
renewal, in seconds, overriding ``ldevid_days``; a value that is no whole number of seconds
in range is a ConfigError naming the key and the file."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from zerotouch_plugin.config import LDEVID_LIFETIME_BOUNDS, RegistrarConfig, load_config
from zerotouch_plugin.errors import ConfigError


def load(tmp_path: Path, text: str) -> RegistrarConfig:
    path = tmp_path / "registrar.toml"
    path.write_text(text)
    return load_config(RegistrarConfig, path, {})


def test_lifetime_in_seconds_overrides_days(tmp_path: Path) -> None:
    config = load(tmp_path, "ldevid_days = 30\nldevid_lifetime_seconds = 120\n")
    assert config.ldevid_lifetime == timedelta(seconds=120)


def test_days_when_no_seconds_are_given(tmp_path: Path) -> None:
    assert load(tmp_path, "ldevid_days = 30\n").ldevid_lifetime == timedelta(days=30)
    assert load(tmp_path, "").ldevid_lifetime == timedelta(days=365)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("9", "must be between 10 and"),
        (str(LDEVID_LIFETIME_BOUNDS[1] + 1), "must be between 10 and"),
        ("0", "must be at least 1"),
        ("-5", "must be at least 1"),
        ("true", "must be an integer"),
        ("1.5", "must be an integer"),
        ('"60"', "must be an integer"),
    ],
)
def test_bad_lifetimes_name_the_key(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"registrar.toml: ldevid_lifetime_seconds {message}"):
        load(tmp_path, f"ldevid_lifetime_seconds = {value}\n")

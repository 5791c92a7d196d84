from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from zerotouch_plugin.config import load_config
from zerotouch_plugin.errors import ConfigError


@dataclass(frozen=True)
class Sample:
    listen: str = "127.0.0.1:8443"
    retries: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.retries, int):
            raise TypeError("retries must be an integer")
        if self.retries < 0:
            raise ValueError("retries must be >= 0")


def test_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('listen = "127.0.0.1:1"\nretries = 5\n')
    cfg = load_config(Sample, path, {"retries": 7, "listen": None})
    assert cfg == Sample(listen="127.0.0.1:1", retries=7)


def test_missing_file_uses_defaults(tmp_path: Path) -> None:
    assert load_config(Sample, tmp_path / "absent.toml", {}) == Sample()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("retries = -1\n", "retries must be >= 0"),
        ('retries = "x"\n', "retries must be an integer"),
        ("colour = 1\n", "unknown configuration keys: colour"),
        ("retries = \n", "not valid TOML"),
    ],
)
def test_bad_config_names_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_config(Sample, path, {})

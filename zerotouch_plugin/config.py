"""Role configuration: one frozen dataclass per role, loaded from TOML plus CLI overrides.

Each role's dataclass validates itself in ``__post_init__`` (wrong types raise ``TypeError``,
wrong values ``ValueError``); ``load_config`` turns both into a ``ConfigError`` that names the
file and the key, so a bad configuration never starts a half-configured service.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from zerotouch_plugin.errors import ConfigError

__all__ = ["RegistrarConfig", "load_config"]

T = TypeVar("T")


def load_config(cls: type[T], path: Path | None, overrides: Mapping[str, Any]) -> T:
    """Build ``cls`` from the TOML file at ``path`` (if it exists), then ``overrides``.

    Overrides whose value is ``None`` are ignored, so argparse defaults of ``None`` mean
    "not given on the command line".
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    data: dict[str, Any] = {}
    source = "command line"
    if path is not None and path.exists():
        source = str(path)
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    data.update({k.replace("-", "_"): v for k, v in overrides.items() if v is not None})
    data = {k.replace("-", "_"): v for k, v in data.items()}
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown configuration keys: {', '.join(unknown)}")
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def _paths(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{name} must be a list of file paths")
    return tuple(value)


@dataclasses.dataclass(frozen=True)
class RegistrarConfig:
    """The registrar (``R/registrar.toml``); relative paths are relative to the folder R."""

    listen: str = "127.0.0.1:8443"
    manufacturer_cas: tuple[str, ...] = ()  # PEM files of IDevID trust anchors
    masa_url: str | None = None  # override of the IDevID's MASA URL extension (RFC 8995 §2.3.2)
    masa_trust: tuple[str, ...] = ()  # PEM files: MASA TLS anchors (and voucher signer anchors)
    auto_accept: bool = False  # accept any pledge with a trusted IDevID (no allow list)
    ldevid_days: int = 365
    db: str | None = None  # database URL; None = R/registrar.db (SQLite)
    max_body_bytes: int = 65536  # larger request bodies are refused with 413
    masa_timeout: float = 10.0  # seconds for one MASA call
    retry_after: int = 10  # Retry-After seconds sent with 503 when the MASA is unreachable

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "manufacturer_cas", _paths(self.manufacturer_cas, "manufacturer_cas")
        )
        object.__setattr__(self, "masa_trust", _paths(self.masa_trust, "masa_trust"))
        if not isinstance(self.listen, str) or ":" not in self.listen:
            raise TypeError("listen must be a 'HOST:PORT' string")
        host, _, port = self.listen.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(f"listen {self.listen!r} is not HOST:PORT")
        for name in ("masa_url", "db"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a string")
        if not isinstance(self.auto_accept, bool):
            raise TypeError("auto_accept must be true or false")
        for name in ("ldevid_days", "max_body_bytes", "retry_after"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer")
            if value < 1:
                raise ValueError(f"{name} must be at least 1")
        if not isinstance(self.masa_timeout, int | float) or isinstance(self.masa_timeout, bool):
            raise TypeError("masa_timeout must be a number")
        if self.masa_timeout <= 0:
            raise ValueError("masa_timeout must be positive")

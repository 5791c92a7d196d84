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

__all__ = ["MasaConfig", "RegistrarConfig", "load_config"]

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


MASA_POLICIES = ("first-come", "claims")
MASA_PINS = ("domain-ca", "registrar")


@dataclasses.dataclass(frozen=True)
class MasaConfig:
    """The MASA (``V/masa.toml``); relative paths are relative to the vendor folder V.

    ``policy``: "first-come" (the first domain to ask owns the device; labs) or "claims" (only
    devices claimed for a domain with ``zerotouch masa claim``). ``pin``: pinned-domain-cert is
    the domain CA (top of the registrar's chain, RFC 8995 §5.5.2) or the registrar's own
    certificate; ``pinned_domain_cert`` (a PEM file) overrides both.
    """

    policy: str = "first-come"
    nonceless_allowed: bool = False  # RFC 8995 §5.5.4: only for authenticated registrars
    voucher_lifetime: int = 3600  # seconds until expires-on of nonceless vouchers
    pin: str = "domain-ca"
    pinned_domain_cert: str | None = None
    registrar_cas: tuple[str, ...] = ()  # PEM files: domain CAs whose registrars are known
    require_client_cert: bool = False  # TLS client certificate from registrar_cas mandatory
    db: str | None = None  # database URL; None = V/masa.db (SQLite)
    max_body_bytes: int = 65536  # larger request bodies are refused with 413
    audit_max_events: int = 1024  # longer audit logs are abridged (RFC 8995 §5.8.1)

    def __post_init__(self) -> None:
        object.__setattr__(self, "registrar_cas", _paths(self.registrar_cas, "registrar_cas"))
        for name, allowed in (("policy", MASA_POLICIES), ("pin", MASA_PINS)):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a string")
            if value not in allowed:
                raise ValueError(f"{name} {value!r} is not one of {', '.join(allowed)}")
        for name in ("nonceless_allowed", "require_client_cert"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be true or false")
        for name in ("pinned_domain_cert", "db"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a string")
        for name in ("voucher_lifetime", "max_body_bytes", "audit_max_events"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer")
            if value < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.require_client_cert and not self.registrar_cas:
            raise ValueError("require_client_cert needs registrar_cas to verify the certificates")

"""Role configuration: one frozen dataclass per role, loaded from TOML plus CLI overrides.

Each role's dataclass validates itself in ``__post_init__`` (wrong types raise ``TypeError``,
wrong values ``ValueError``); ``load_config`` turns both into a ``ConfigError`` that names the
file and the key, so a bad configuration never starts a half-configured service.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import ipaddress
import re
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import urlsplit

from zerotouch_plugin._checks import require_count, require_positive
from zerotouch_plugin._text import is_decimal
from zerotouch_plugin.errors import ConfigError

__all__ = [
    "AGENT_KEYS",
    "DEFAULT_DEVICE_DOMAIN",
    "DISCOVERY_METHODS",
    "AgentConfig",
    "CertToName",
    "ConnectionLimits",
    "DeviceConfig",
    "DeviceUser",
    "EventsConfig",
    "MasaConfig",
    "NetconfLimits",
    "RegistrarConfig",
    "WebhookConfig",
    "check_device_domain",
    "check_password",
    "dns_server_address",
    "hash_password",
    "is_dns_label",
    "load_config",
    "normalise_fingerprint",
]

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


# Where LDevID DNS names live unless configured (``.internal`` is reserved for private use).
DEFAULT_DEVICE_DOMAIN = "devices.zerotouch.internal"
# A DNS label (RFC 1035 §2.3.1, RFC 1123 §2.1): letters, digits, inner hyphens, 1..63.
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def is_dns_label(text: str) -> bool:
    """Whether ``text`` is one lower-case DNS label."""
    return _DNS_LABEL.fullmatch(text) is not None


BOOTSTRAP_PROTOCOLS = ("sztp", "brski")


def _dns_domain(domain: str) -> str:
    """A DNS domain of one or more labels, lower case, without the final dot."""
    if not isinstance(domain, str):
        raise TypeError("bootstrap_dns_domain must be a string")
    lowered = domain.lower().rstrip(".")
    if len(lowered) > 253 - 64 or not all(is_dns_label(label) for label in lowered.split(".")):
        raise ValueError(f"bootstrap_dns_domain {domain!r} is not a DNS domain")
    return lowered


def dns_server_address(server: str, default_port: int = 53) -> tuple[str, int]:
    """``ADDRESS``, ``ADDRESS:PORT`` or ``[V6]:PORT`` of a resolver as an address and port
    (ValueError): a resolver is named by address, not by a name it would resolve itself."""
    if server.count(":") > 1 and not server.startswith("["):
        server = f"[{server}]"  # a bare IPv6 address
    try:
        parts = urlsplit(f"//{server}")
        host = parts.hostname or ""
        ipaddress.ip_address(host)
        return host, parts.port or default_port
    except ValueError:
        raise ValueError(f"DNS server {server!r} is not ADDRESS[:PORT]") from None


def check_device_domain(domain: str) -> str:
    """The device domain of LDevID names, lower case (TypeError / ValueError)."""
    if not isinstance(domain, str):
        raise TypeError("device_domain must be a string")
    lowered = domain.lower().rstrip(".")
    labels = lowered.split(".")
    if len(labels) < 2 or not all(is_dns_label(label) for label in labels):
        raise ValueError(
            f"device_domain {domain!r} is not a DNS domain of two or more labels (letters, "
            "digits, inner hyphens; e.g. devices.example.net)"
        )
    if len(lowered) > 253 - 64:
        raise ValueError(f"device_domain {domain!r} leaves no room for a device label")
    return lowered


@dataclasses.dataclass(frozen=True)
class ConnectionLimits:
    """What one client may hold of a listener (TOML table ``[limits]`` of every role).

    Caps on open connections (all peers, and per source address) and the seconds a client
    gets to finish the TLS handshake, to send a request's header (also the keep-alive idle
    time) and to send its body: past them the connection is closed, so idle or slow
    clients cannot pin memory or every slot.
    """

    max_connections: int = 1000
    max_connections_per_ip: int = 100
    handshake_timeout: float = 10.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_connections_per_ip"):
            require_count(getattr(self, name), f"limits.{name}")
        for name in ("handshake_timeout", "header_timeout", "body_timeout"):
            require_positive(getattr(self, name), f"limits.{name}", "a number of seconds")


def _limits(value: Any) -> ConnectionLimits:
    """A ``[limits]`` table (or ConnectionLimits) as ConnectionLimits; unknown keys refused."""
    if isinstance(value, ConnectionLimits):
        return value
    if not isinstance(value, Mapping):
        raise TypeError("limits must be a table")
    known = {f.name for f in dataclasses.fields(ConnectionLimits)}
    table = {str(k).replace("-", "_"): v for k, v in value.items()}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ValueError(f"unknown limits keys: {', '.join(unknown)}")
    return ConnectionLimits(**table)


def _paths(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{name} must be a list of file paths")
    return tuple(value)


@dataclasses.dataclass(frozen=True)
class EventsConfig:
    """The registrar's device events (TOML table ``[events]``): how long and how many are
    kept, and what one server-sent-events subscriber of the admin API may hold."""

    retention_days: int = 30  # events older than this are deleted
    max_events: int = 100_000  # and all but the newest this many
    max_subscribers: int = 32  # concurrent GET /admin/events streams; more get 503
    subscriber_queue: int = 1000  # events queued per subscriber; beyond, it reads the table
    max_lag: int = 10_000  # events a subscriber may be behind before it is dropped
    heartbeat: float = 15.0  # seconds between comment lines on an idle stream
    poll: float = 1.0  # seconds between looks for events other registrar processes wrote

    def __post_init__(self) -> None:
        for name in (
            "retention_days",
            "max_events",
            "max_subscribers",
            "subscriber_queue",
            "max_lag",
        ):
            require_count(getattr(self, name), f"events.{name}")
        for name in ("heartbeat", "poll"):
            require_positive(getattr(self, name), f"events.{name}", "a number of seconds")


@dataclasses.dataclass(frozen=True)
class WebhookConfig:
    """One webhook (TOML array ``[[webhooks]]``): every device event (of ``types``, if
    given) is POSTed to ``url`` in order, its body signed with HMAC-SHA256 under the key in
    ``secret_file``. ``url`` is https, or http to a loopback address only; ``ca`` (PEM)
    replaces the system trust, ``cert``/``key`` a client certificate. A failed delivery is
    retried after ``backoff`` seconds, doubled up to ``max_backoff``; the last delivered id
    is kept in the database under ``name``, so a restarted registrar resumes after it."""

    name: str
    url: str
    secret_file: str
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    timeout: float = 10.0
    backoff: float = 1.0
    max_backoff: float = 300.0
    types: tuple[str, ...] = ()  # only these event types (checked by the registrar); () all

    def __post_init__(self) -> None:
        if isinstance(self.types, str) or not all(isinstance(t, str) for t in self.types):
            raise TypeError(f"webhook {self.name}: types must be a list of event types")
        object.__setattr__(self, "types", tuple(self.types))
        for name in ("name", "url", "secret_file"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise TypeError(f"webhooks.{name} must be a non-empty string")
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", self.name):
            raise ValueError(f"webhooks.name {self.name!r}: letters, digits, '.', '_', '-'")
        for name in ("ca", "cert", "key"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise TypeError(f"webhooks.{name} must be a file path")
        if (self.cert is None) != (self.key is None):
            raise ValueError(f"webhook {self.name}: cert and key go together")
        parts = urlsplit(self.url)
        loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise ValueError(
                f"webhook {self.name}: url {self.url!r} must be https (http only to loopback)"
            )
        if not parts.hostname:
            raise ValueError(f"webhook {self.name}: url {self.url!r} names no host")
        for name in ("timeout", "backoff", "max_backoff"):
            require_positive(getattr(self, name), f"webhooks.{name}", "a number of seconds")
        if self.max_backoff < self.backoff:
            raise ValueError(f"webhook {self.name}: max_backoff must not be below backoff")


def _table(value: Any, cls: type[T], name: str) -> T:
    """A TOML table (or an instance of ``cls``) as ``cls``; unknown keys refused."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a table")
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    table = {str(k).replace("-", "_"): v for k, v in value.items()}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ValueError(f"unknown {name} keys: {', '.join(unknown)}")
    return cls(**table)


def _webhooks(value: Any) -> tuple[WebhookConfig, ...]:
    if isinstance(value, Mapping | str):
        raise TypeError("webhooks must be an array of tables ([[webhooks]])")
    hooks = tuple(_table(v, WebhookConfig, "webhooks") for v in value)
    names = [h.name for h in hooks]
    if len(set(names)) != len(names):
        raise ValueError("webhooks: every name must be different")
    return hooks


# ldevid_lifetime_seconds: long enough for a renewal round trip, at most a century.
LDEVID_LIFETIME_BOUNDS = (10, 36500 * 86400)


@dataclasses.dataclass(frozen=True)
class RegistrarConfig:
    """The registrar (``registrar.toml``); relative paths are relative to the registrar folder."""

    listen: str = "127.0.0.1:8443"
    manufacturer_cas: tuple[str, ...] = ()  # PEM files of IDevID trust anchors
    masa_url: str | None = None  # override of the IDevID's MASA URL extension (RFC 8995 §2.3.2)
    masa_trust: tuple[str, ...] = ()  # PEM files: MASA TLS anchors (and voucher signer anchors)
    auto_accept: bool = False  # accept any pledge with a trusted IDevID (no allow list)
    ask: bool = False  # a trusted pledge not on the allow list waits for approval (202)
    ldevid_days: int = 365
    # LDevID lifetime in seconds; overrides ldevid_days (short-lived LDevIDs renewed often)
    ldevid_lifetime_seconds: int | None = None
    device_domain: str = DEFAULT_DEVICE_DOMAIN  # LDevID dNSName: <serial label>.<domain>
    # the domain CA key as an RFC 7512 PKCS#11 URI (pkcs11:...); None: ca.key in the folder
    ca_key: str | None = None
    db: str | None = None  # database URL; None = registrar.db in the folder (SQLite)
    max_body_bytes: int = 65536  # larger request bodies are refused with 413
    # the MASA's max_body_bytes: a pledge request whose registrar voucher-request would be
    # larger is refused here with 413, before the MASA is asked
    masa_max_request_bytes: int = 65536
    masa_timeout: float = 10.0  # seconds for one MASA call
    retry_after: int = 10  # Retry-After seconds sent with 503 when the MASA is unreachable
    # MASA outages (docs/cli/registrar.md, "When the MASA is gone"): attempts per call within
    # masa_timeout, then a circuit breaker per MASA opened after masa_breaker_threshold
    # failed calls in a row, for masa_breaker_cooldown seconds doubling up to the maximum
    masa_attempts: int = 3
    masa_breaker_threshold: int = 3
    masa_breaker_cooldown: float = 2.0
    masa_breaker_max_cooldown: float = 60.0
    masa_gone: bool = False  # never call the MASA: answer from escrow only
    # vouchers held in escrow: lifetime asked for, and renewal this many days before expiry
    escrow_lifetime_days: int = 365
    escrow_renew_days: int = 30
    escrow_renew_poll: float = 3600.0  # seconds between looks for vouchers due for renewal
    refuse_on_audit_alert: bool = False  # no enrollment after any audit-log alert
    # day-0 hand-off (docs/cli/registrar.md, "Day-0 hand-off")
    day0_yang_dirs: tuple[str, ...] = ()  # extra YANG folders day-0 documents are checked with
    day0_yang_modules: tuple[str, ...] = ()  # "name" or "name@revision" to implement
    handoff_attempts: int = 8  # attempts before a hand-off is marked failed
    handoff_backoff: float = 2.0  # seconds before the first retry, doubled each time
    handoff_max_backoff: float = 300.0  # cap on the retry delay
    handoff_timeout: float = 30.0  # seconds for one attempt (connect, RPCs, close)
    handoff_poll: float = 5.0  # seconds between looks for hand-offs queued elsewhere
    limits: ConnectionLimits = dataclasses.field(default_factory=ConnectionLimits)
    events: EventsConfig = dataclasses.field(default_factory=EventsConfig)
    webhooks: tuple[WebhookConfig, ...] = ()  # docs/admin-api.md, "Webhooks"

    def __post_init__(self) -> None:
        object.__setattr__(self, "limits", _limits(self.limits))
        object.__setattr__(self, "events", _table(self.events, EventsConfig, "events"))
        object.__setattr__(self, "webhooks", _webhooks(self.webhooks))
        object.__setattr__(
            self, "manufacturer_cas", _paths(self.manufacturer_cas, "manufacturer_cas")
        )
        object.__setattr__(self, "masa_trust", _paths(self.masa_trust, "masa_trust"))
        object.__setattr__(self, "day0_yang_dirs", _paths(self.day0_yang_dirs, "day0_yang_dirs"))
        object.__setattr__(
            self, "day0_yang_modules", _paths(self.day0_yang_modules, "day0_yang_modules")
        )
        if not isinstance(self.listen, str) or ":" not in self.listen:
            raise TypeError("listen must be a 'HOST:PORT' string")
        host, _, port = self.listen.rpartition(":")
        if not host or not is_decimal(port) or not 0 <= int(port) < 65536:
            raise ValueError(f"listen {self.listen!r} is not HOST:PORT")
        for name in ("masa_url", "db", "ca_key"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a string")
        if self.ca_key is not None and not self.ca_key.startswith("pkcs11:"):
            raise ValueError("ca_key must be a PKCS#11 URI (pkcs11:..., RFC 7512)")
        for name in ("auto_accept", "ask", "masa_gone", "refuse_on_audit_alert"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be true or false")
        object.__setattr__(self, "device_domain", check_device_domain(self.device_domain))
        for name in (
            "ldevid_days",
            "max_body_bytes",
            "masa_max_request_bytes",
            "retry_after",
            "handoff_attempts",
            "masa_attempts",
            "masa_breaker_threshold",
            "escrow_lifetime_days",
        ):
            require_count(getattr(self, name), name)
        if not isinstance(self.escrow_renew_days, int) or self.escrow_renew_days < 0:
            raise ValueError("escrow_renew_days must be a whole number of days, 0 or more")
        for name in (
            "masa_timeout",
            "handoff_backoff",
            "handoff_max_backoff",
            "handoff_timeout",
            "handoff_poll",
            "masa_breaker_cooldown",
            "masa_breaker_max_cooldown",
            "escrow_renew_poll",
        ):
            require_positive(getattr(self, name), name)
        if self.masa_breaker_max_cooldown < self.masa_breaker_cooldown:
            raise ValueError("masa_breaker_max_cooldown must not be below masa_breaker_cooldown")
        if self.handoff_max_backoff < self.handoff_backoff:
            raise ValueError("handoff_max_backoff must not be below handoff_backoff")
        if self.ldevid_lifetime_seconds is not None:
            require_count(self.ldevid_lifetime_seconds, "ldevid_lifetime_seconds")
            low, high = LDEVID_LIFETIME_BOUNDS
            if not low <= self.ldevid_lifetime_seconds <= high:
                raise ValueError(
                    f"ldevid_lifetime_seconds must be between {low} and {high} "
                    f"({high // 86400} days)"
                )

    @property
    def ldevid_lifetime(self) -> timedelta:
        """How long an LDevID the registrar issues is valid (enrollment and renewal)."""
        if self.ldevid_lifetime_seconds is not None:
            return timedelta(seconds=self.ldevid_lifetime_seconds)
        return timedelta(days=self.ldevid_days)


MASA_POLICIES = ("first-come", "claims")
MASA_PINS = ("domain-ca", "registrar")


@dataclasses.dataclass(frozen=True)
class MasaConfig:
    """The MASA (``masa.toml``); relative paths are relative to the vendor folder.

    ``policy``: "first-come" (the first domain to ask owns the device; labs) or "claims" (only
    devices claimed for a domain with ``zerotouch masa claim``). ``pin``: pinned-domain-cert is
    the domain CA (top of the registrar's chain, RFC 8995 §5.5.2) or the registrar's own
    certificate; ``pinned_domain_cert`` (a PEM file) overrides both.
    """

    policy: str = "first-come"
    nonceless_allowed: bool = False  # RFC 8995 §5.5.4: only for authenticated registrars
    voucher_lifetime: int = 3600  # seconds until expires-on of nonceless vouchers
    # the longest expires-on (seconds) a claimed domain's registrar may ask for when it
    # fetches vouchers ahead for escrow (a voucher-request with expires-on and no pledge)
    escrow_max_lifetime: int = 400 * 86400
    # the voucher-signing key as an RFC 7512 PKCS#11 URI (pkcs11:...); None: masa-signer.key
    signer_key: str | None = None
    pin: str = "domain-ca"
    pinned_domain_cert: str | None = None
    registrar_cas: tuple[str, ...] = ()  # PEM files: domain CAs whose registrars are known
    require_client_cert: bool = False  # TLS client certificate from registrar_cas mandatory
    db: str | None = None  # database URL; None = masa.db in the folder (SQLite)
    max_body_bytes: int = 65536  # larger request bodies are refused with 413
    audit_max_events: int = 1024  # longer audit logs are abridged (RFC 8995 §5.8.1)
    # a file holding the bearer token GET /metrics needs; None: no metrics served
    metrics_token_file: str | None = None
    limits: ConnectionLimits = dataclasses.field(default_factory=ConnectionLimits)

    def __post_init__(self) -> None:
        object.__setattr__(self, "limits", _limits(self.limits))
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
        for name in ("pinned_domain_cert", "db", "metrics_token_file", "signer_key"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a string")
        for name in (
            "voucher_lifetime",
            "escrow_max_lifetime",
            "max_body_bytes",
            "audit_max_events",
        ):
            require_count(getattr(self, name), name)
        if self.signer_key is not None and not self.signer_key.startswith("pkcs11:"):
            raise ValueError("signer_key must be a PKCS#11 URI (pkcs11:..., RFC 7512)")
        if self.require_client_cert and not self.registrar_cas:
            raise ValueError("require_client_cert needs registrar_cas to verify the certificates")


# Discovery methods of the pledge agent (``roles.discovery.Method``, RFC 8995 §4.1).
DISCOVERY_METHODS = ("configured", "grasp", "mdns", "dns-sd", "vendor")
# A Linux interface name: 1..15 characters, no slash, colon or white space.
_INTERFACE = re.compile(r"[^/:\s%]{1,15}")

# ietf-x509-cert-to-name map types (RFC 7407 §5) the device supports.
CERT_MAP_TYPES = (
    "specified",
    "san-rfc822-name",
    "san-dns-name",
    "san-ip-address",
    "san-any",
    "common-name",
)


def normalise_fingerprint(text: str) -> str:
    """``sha256:<hex>``, ``SHA256:AA:BB..`` or an RFC 7407 tls-fingerprint ``04:aa:..``
    (hash algorithm 4 = SHA-256) -> lowercase hex of the SHA-256 digest; ``*`` stays."""
    if not isinstance(text, str):
        raise TypeError("fingerprint must be a string")
    text = text.strip()
    if text == "*":
        return text
    lowered = text.lower()
    if lowered.startswith("sha256:"):
        lowered = lowered[len("sha256:") :]
    elif lowered.startswith("04:") and len(lowered.replace(":", "")) == 66:
        lowered = lowered[3:]
    digest = lowered.replace(":", "")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"not a SHA-256 fingerprint: {text!r}")
    return digest


@dataclasses.dataclass(frozen=True)
class CertToName:
    """A cert-to-name rule (RFC 7407 ``cert-to-name``, RFC 7589 §7): a fingerprint of the
    client certificate or of any CA of the chain it was validated by, trust anchor included
    (``*``: any verified certificate), and where the username comes from."""

    fingerprint: str
    map_type: str
    name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.map_type, str):
            raise TypeError("map_type must be a string")
        if self.map_type not in CERT_MAP_TYPES:
            raise ValueError(
                f"map_type {self.map_type!r} is not one of {', '.join(CERT_MAP_TYPES)}"
            )
        if self.name is not None and not isinstance(self.name, str):
            raise TypeError("name must be a string")
        if (self.map_type == "specified") != bool(self.name):
            raise ValueError("a name is given exactly for map_type 'specified'")
        object.__setattr__(self, "fingerprint", normalise_fingerprint(self.fingerprint))


PASSWORD_HASH_PREFIX = "pbkdf2-sha256$"


def hash_password(password: str, *, salt: bytes, iterations: int = 200_000) -> str:
    """``pbkdf2-sha256$ITERATIONS$SALT$HASH`` (base64), for ``password`` in device.toml."""
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"{PASSWORD_HASH_PREFIX}{iterations}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(stored: str, offered: str) -> bool:
    """Constant-time check of ``offered`` against a plain or ``hash_password`` value."""
    if not stored.startswith(PASSWORD_HASH_PREFIX):
        return hmac.compare_digest(stored.encode(), offered.encode())
    try:
        iterations, salt, digest = stored[len(PASSWORD_HASH_PREFIX) :].split("$")
        expected = base64.b64decode(digest, validate=True)
        got = hashlib.pbkdf2_hmac(
            "sha256", offered.encode(), base64.b64decode(salt, validate=True), int(iterations)
        )
    except ValueError:
        return False
    return hmac.compare_digest(expected, got)


@dataclasses.dataclass(frozen=True)
class NetconfLimits:
    """Resource limits of the device's NETCONF sessions and SSH logins (``[netconf_limits]``).

    ``max_message``: bytes of one incoming message (RFC 6242 sets no limit); ``max_buffered``:
    bytes buffered over all sessions; ``max_sessions``: concurrent sessions; ``hello_timeout``
    and ``idle_timeout``: seconds until a session without a hello, or without an RPC, is
    closed (RFC 6241 mandates neither; 0 turns the idle timeout off). SSH: failed
    authentications per connection (``max_auth_attempts``) and per source address within
    ``auth_failure_window`` seconds (``auth_failures_per_source``, then refused for
    ``auth_lockout`` seconds), and ``login_timeout`` seconds to authenticate.
    ``xpath_budget``: seconds one XPath filter (RFC 6241 §8.9) may be evaluated; past it the
    request gets ``resource-denied``. ``max_unread``: bytes of notifications held for a
    subscriber whose transport is over its high-water mark; past it the session is closed.
    """

    max_message: int = 16 * 1024 * 1024
    max_buffered: int = 64 * 1024 * 1024
    max_sessions: int = 64
    hello_timeout: float = 60.0
    idle_timeout: float = 3600.0
    max_auth_attempts: int = 6
    auth_failures_per_source: int = 20
    auth_failure_window: float = 60.0
    auth_lockout: float = 300.0
    login_timeout: float = 60.0
    xpath_budget: float = 2.0
    max_unread: int = 4 * 1024 * 1024

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            kind = int if field.type == "int" else (int, float)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise TypeError(f"netconf_limits.{field.name} must be a number")
            if value < 0 or (value == 0 and field.name != "idle_timeout"):
                raise ValueError(f"netconf_limits.{field.name} must be positive")


@dataclasses.dataclass(frozen=True)
class DeviceUser:
    """A NETCONF/SSH user: a password (plain, or from ``zerotouch device hash-password``)
    and/or OpenSSH public keys (``authorized_keys`` lines)."""

    name: str
    password: str | None = None
    authorized_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError("user name must be a string")
        if not self.name:
            raise ValueError("user name must not be empty")
        if self.password is not None and not isinstance(self.password, str):
            raise TypeError("password must be a string")
        keys = self.authorized_keys
        if isinstance(keys, str) or not all(isinstance(k, str) for k in keys):
            raise TypeError("authorized_keys must be a list of public key lines")
        object.__setattr__(self, "authorized_keys", tuple(keys))
        if not self.password and not self.authorized_keys:
            raise ValueError(f"user {self.name!r} has neither a password nor a public key")


def _records(value: Any, cls: type[T], name: str) -> tuple[T, ...]:
    """A TOML array of tables (or the dataclasses themselves) as a tuple of ``cls``."""
    if isinstance(value, (str, bytes, Mapping)):
        raise TypeError(f"{name} must be a list")
    out = []
    for item in value:
        if isinstance(item, cls):
            out.append(item)
        elif isinstance(item, Mapping):
            out.append(cls(**{str(k).replace("-", "_"): v for k, v in item.items()}))
        else:
            raise TypeError(f"{name} entries must be tables")
    return tuple(out)


def _urls(value: Any, name: str) -> tuple[str, ...]:
    """https://HOST[:PORT] URLs (registrars: RFC 8995 §5 runs over HTTPS only)."""
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{name} must be a list of URLs")
    for url in value:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"{name}: {url!r} is not https://HOST[:PORT]")
        try:
            parts.port  # noqa: B018 -- raises ValueError for a bad port
        except ValueError as exc:
            raise ValueError(f"{name}: {url!r}: {exc}") from None
    return tuple(value)


def _address(value: str | None, name: str) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a 'HOST:PORT' string")
    host, sep, port = value.rpartition(":")
    if not sep or not host or not is_decimal(port) or not 0 <= int(port) < 65536:
        raise ValueError(f"{name} {value!r} is not HOST:PORT")


def _check_integers(config: object, bounds: tuple[tuple[str, int, int | None], ...]) -> None:
    for name, low, high in bounds:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an integer")
        if value < low:
            raise ValueError(f"{name} must be at least {low}")
        if high is not None and value > high:
            raise ValueError(f"{name} must be at most {high}")


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """The pledge agent's own configuration, whatever server hosts it.

    ``registrars`` (https URLs, tried in order), the wait after a round through all of them
    failed (``bootstrap_retry_delay``, doubled each round up to ``bootstrap_max_delay``, with
    jitter), ``bootstrap_rounds`` before giving up (0: never), ``bootstrap_timeout`` per
    request, ``bootstrap_history`` events kept; ``nonceless_allowed`` accepts a voucher
    without nonce that has a future expires-on (RFC 8995 §7.2, a voucher the registrar held
    for offline use).

    Discovery (RFC 8995 §4): ``discovery`` names the methods in the order they are tried
    (``configured``, ``grasp``, ``mdns``, ``dns-sd``, ``vendor``); empty means ``configured``
    when registrars are given, else grasp, mdns, dns-sd and vendor. Registrars given with a
    list that lacks ``configured`` are tried first. ``interface`` is the link to search on
    (default: every up interface but loopback); ``vendor_registrar`` the manufacturer's
    well-known registrar (method ``vendor``); ``discovery_timeout`` the seconds each method
    searches (``discovery_timeouts`` per method). A failed candidate is set aside for
    ``bootstrap_retry_delay``, doubled per failure up to ``bootstrap_max_delay``.

    Renewal (RFC 7030 §4.2.2): with ``renewal`` the agent renews the LDevID by EST
    simplereenroll at ``renew_fraction`` (0.5 to 0.9) of its validity period, at the
    registrar that enrolled the device.

    SZTP (RFC 8572): with ``bootstrap_servers`` (https URLs, tried in order), ``bootstrap_dhcp``
    (an interface to ask DHCPv4 and DHCPv6 on for options 143 and 136), ``bootstrap_dhcp_lease``
    (a dhclient lease file with option 143 or 136), ``bootstrap_dns_domain`` (TXT and SRV
    records under it, RFC 8572 §4.2, asked of ``bootstrap_dns_server`` ADDRESS[:PORT] or the
    system resolver), ``bootstrap_mdns_interface`` (the same records under ``.local`` by
    one-shot multicast DNS on that interface, asked first) or ``bootstrap_media`` (a
    removable-storage folder) the agent bootstraps by SZTP instead of BRSKI; ``bootstrap_order``
    (``["sztp", "brski"]`` or the reverse) makes it try both, in that order, until one succeeds;
    ``bootstrap_server_ca`` names PEM files of the servers' trust anchors (the trusted path,
    §5.1); ``hw_model``, ``os_name``, ``os_version`` go in get-bootstrapping-data; scripts run
    with ``script_interpreter`` (default: executed themselves, no shell) for at most
    ``script_timeout`` seconds. ``bootstrap_encoding`` (``json`` or ``xml``) is the RESTCONF
    encoding of the RPCs; ``bootstrap_credentials`` names a file ``USER:PASSWORD`` for HTTP
    basic authentication beside the IDevID (§5.2).
    """

    registrars: tuple[str, ...] = ()
    bootstrap_retry_delay: float = 2.0
    bootstrap_max_delay: float = 300.0
    bootstrap_rounds: int = 0
    bootstrap_timeout: float = 30.0
    bootstrap_history: int = 64
    nonceless_allowed: bool = False
    discovery: tuple[str, ...] = ()
    interface: str | None = None
    vendor_registrar: str | None = None
    discovery_timeout: float = 2.0
    discovery_timeouts: Mapping[str, float] = dataclasses.field(default_factory=dict)
    renewal: bool = True
    renew_fraction: float = 0.75
    bootstrap_servers: tuple[str, ...] = ()
    bootstrap_server_ca: tuple[str, ...] = ()
    bootstrap_media: str | None = None
    bootstrap_dhcp: str | None = None
    bootstrap_dhcp_lease: str | None = None
    bootstrap_dns_domain: str | None = None
    bootstrap_dns_server: str | None = None
    bootstrap_mdns_interface: str | None = None
    bootstrap_order: tuple[str, ...] = ()
    hw_model: str | None = None
    os_name: str | None = None
    os_version: str | None = None
    script_interpreter: str | None = None
    script_timeout: float = 300.0
    bootstrap_encoding: str = "json"
    bootstrap_credentials: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "registrars", _urls(self.registrars, "registrars"))
        self._check_sztp()
        self._check_discovery()
        for name in (
            "bootstrap_retry_delay",
            "bootstrap_max_delay",
            "bootstrap_timeout",
            "discovery_timeout",
        ):
            require_positive(getattr(self, name), name, "a number of seconds")
        if self.bootstrap_max_delay < self.bootstrap_retry_delay:
            raise ValueError("bootstrap_max_delay must be at least bootstrap_retry_delay")
        for name in ("nonceless_allowed", "renewal"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be true or false")
        _check_integers(self, (("bootstrap_rounds", 0, None), ("bootstrap_history", 1, 65535)))
        # the bounds of roles/renewal.py: earlier wastes certificates, later leaves too
        # little time to retry through a registrar outage
        require_positive(self.renew_fraction, "renew_fraction", "a fraction")
        if not 0.5 <= self.renew_fraction <= 0.9:
            raise ValueError("renew_fraction must be between 0.5 and 0.9 of the LDevID's lifetime")

    @property
    def sztp(self) -> bool:
        """Whether the agent bootstraps by SZTP (a bootstrap server or media is given)."""
        return bool(self.bootstrap_servers) or any(
            getattr(self, name) is not None
            for name in (
                "bootstrap_media",
                "bootstrap_dhcp",
                "bootstrap_dhcp_lease",
                "bootstrap_dns_domain",
                "bootstrap_mdns_interface",
            )
        )

    def _check_sztp(self) -> None:
        """The SZTP keys: https URLs (RFC 8572 §4.4), PEM paths, strings, a timeout."""
        object.__setattr__(
            self, "bootstrap_servers", _urls(self.bootstrap_servers, "bootstrap_servers")
        )
        object.__setattr__(
            self, "bootstrap_server_ca", _paths(self.bootstrap_server_ca, "bootstrap_server_ca")
        )
        for name in (
            "bootstrap_media",
            "bootstrap_dhcp",
            "bootstrap_dhcp_lease",
            "bootstrap_dns_server",
            "bootstrap_mdns_interface",
            "hw_model",
            "os_name",
            "os_version",
            "script_interpreter",
        ):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise TypeError(f"{name} must be a non-empty string")
        require_positive(self.script_timeout, "script_timeout", "a number of seconds")
        if self.bootstrap_encoding not in ("json", "xml"):
            raise ValueError("bootstrap_encoding must be json or xml (RFC 8040 §3.6)")
        if self.bootstrap_credentials is not None and (
            not isinstance(self.bootstrap_credentials, str) or not self.bootstrap_credentials
        ):
            raise TypeError("bootstrap_credentials must be a file path")
        if self.bootstrap_dns_domain is not None:
            object.__setattr__(self, "bootstrap_dns_domain", _dns_domain(self.bootstrap_dns_domain))
        if self.bootstrap_dns_server is not None:
            dns_server_address(self.bootstrap_dns_server)
        object.__setattr__(self, "bootstrap_order", self._order())

    def _order(self) -> tuple[str, ...]:
        """``bootstrap_order``: ``sztp`` and ``brski``, each once, SZTP with a source."""
        order = self.bootstrap_order
        if isinstance(order, str) or not all(isinstance(o, str) for o in order):
            raise TypeError("bootstrap_order must be a list of protocol names")
        order = tuple(order)
        if any(o not in BOOTSTRAP_PROTOCOLS for o in order) or len(set(order)) != len(order):
            raise ValueError(
                f"bootstrap_order {list(order)!r}: each of {', '.join(BOOTSTRAP_PROTOCOLS)} "
                "at most once"
            )
        if "sztp" in order and not self.sztp:
            raise ValueError(
                "bootstrap_order names sztp but no SZTP source (bootstrap server, DHCP, DNS "
                "domain or media) is configured"
            )
        return order

    def _check_discovery(self) -> None:
        """Method names known (RFC 8995 §4.1), each once, with what they need."""
        methods = self.discovery
        if isinstance(methods, str) or not all(isinstance(m, str) for m in methods):
            raise TypeError("discovery must be a list of method names")
        methods = tuple(methods)
        unknown = [m for m in methods if m not in DISCOVERY_METHODS]
        if unknown:
            raise ValueError(
                f"discovery: unknown method(s) {', '.join(map(repr, unknown))}; known: "
                + ", ".join(DISCOVERY_METHODS)
            )
        if len(set(methods)) != len(methods):
            raise ValueError("discovery: each method may be named once")
        object.__setattr__(self, "discovery", methods)
        if "configured" in methods and not self.registrars:
            raise ValueError("discovery method 'configured' needs registrars (--registrar URL)")
        if self.vendor_registrar is not None:
            _urls((self.vendor_registrar,), "vendor_registrar")
        if "vendor" in methods and self.vendor_registrar is None:
            raise ValueError("discovery method 'vendor' needs vendor_registrar (an https URL)")
        if self.interface is not None and (
            not isinstance(self.interface, str) or not _INTERFACE.fullmatch(self.interface)
        ):
            raise ValueError(f"interface {self.interface!r} is not an interface name")
        timeouts = self.discovery_timeouts
        if not isinstance(timeouts, Mapping):
            raise TypeError("discovery_timeouts must be a table of method = seconds")
        for method, value in timeouts.items():
            if method not in DISCOVERY_METHODS:
                raise ValueError(f"discovery_timeouts: unknown method {method!r}")
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"discovery_timeouts: {method} must be a positive number")
        object.__setattr__(self, "discovery_timeouts", MappingProxyType(dict(timeouts)))

    @property
    def discovery_methods(self) -> tuple[str, ...]:
        """The methods in the order they are tried (see the class docstring)."""
        if not self.discovery:
            if self.registrars:
                return ("configured",)
            methods = ("grasp", "mdns", "dns-sd", "vendor")
            return methods if self.vendor_registrar else methods[:-1]
        if self.registrars and "configured" not in self.discovery:
            return ("configured", *self.discovery)
        return self.discovery


AGENT_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(AgentConfig))


@dataclasses.dataclass(frozen=True)
class DeviceConfig(AgentConfig):
    """The reference device (``device.toml``): listeners, users, cert-to-name rules, YANG.

    Listeners are off unless given; they bind only the address given. ``cert_to_name`` maps
    NETCONF/TLS and RESTCONF client certificates (already chained to the domain CA) to
    usernames; the default takes the certificate's common name. Another device's LDevID is
    mapped only by a rule with its own fingerprint (``services/netconf/certmap.py``).
    ``yang_dirs``/``yang_modules``
    (``name`` or ``name@revision``) extend the YANG library.

    The pledge agent's keys (the fields of ``AgentConfig``, which this class extends) are
    read from the same file and checked as ``AgentConfig`` checks them; ``agent_config()``
    hands them to the agent. ``netconf_limits``: see ``NetconfLimits``.

    ``max_edit_entries``: list entries one write (edit-config, copy-config, RESTCONF) may have
    validated, those it adds or changes (all of a subtree whose schema has must, when or
    leafref); a larger write is refused with too-big (413) before validation starts.
    """

    netconf_ssh: str | None = None
    netconf_tls: str | None = None
    restconf: str | None = None
    users: tuple[DeviceUser, ...] = ()
    cert_to_name: tuple[CertToName, ...] = (CertToName("*", "common-name"),)
    yang_dirs: tuple[str, ...] = ()
    yang_modules: tuple[str, ...] = ()
    max_edit_entries: int = 20_000
    netconf_limits: NetconfLimits = NetconfLimits()
    limits: ConnectionLimits = dataclasses.field(default_factory=ConnectionLimits)

    def __post_init__(self) -> None:
        object.__setattr__(self, "limits", _limits(self.limits))
        limits = self.netconf_limits
        if isinstance(limits, Mapping):
            limits = NetconfLimits(**{str(k).replace("-", "_"): v for k, v in limits.items()})
        elif not isinstance(limits, NetconfLimits):
            raise TypeError("netconf_limits must be a table")
        object.__setattr__(self, "netconf_limits", limits)
        for name in ("netconf_ssh", "netconf_tls", "restconf"):
            _address(getattr(self, name), name)
        super().__post_init__()  # the agent's keys
        _check_integers(self, (("max_edit_entries", 1, None),))
        object.__setattr__(self, "users", _records(self.users, DeviceUser, "users"))
        object.__setattr__(
            self, "cert_to_name", _records(self.cert_to_name, CertToName, "cert_to_name")
        )
        object.__setattr__(self, "yang_dirs", _paths(self.yang_dirs, "yang_dirs"))
        object.__setattr__(self, "yang_modules", _paths(self.yang_modules, "yang_modules"))
        names = [u.name for u in self.users]
        if len(set(names)) != len(names):
            raise ValueError("user names must be unique")

    def agent_config(self) -> AgentConfig:
        """The pledge agent's keys of this file as the agent's own configuration."""
        return AgentConfig(**{name: getattr(self, name) for name in AGENT_KEYS})

"""Client certificates the registrar issues from the domain CA (``registrar
issue-client-cert``: an NMS's, or an admin's for the admin API and the console), as plain
values, and the rule by which a running registrar refuses the revoked ones.

A registrar process does not ask the database on every admin request: it holds the set of
revoked, unexpired client certificates, reloads it every ``REVOCATIONS_RELOAD``, and refuses
every admin request while the set it holds is older than ``REVOCATIONS_MAX_AGE`` (the
database did not answer). So a revocation committed by any process on the database stops
the certificate in every process within ``REVOCATIONS_MAX_AGE``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from zerotouch_plugin.roles.records import json_value

__all__ = [
    "REVOCATIONS_MAX_AGE",
    "REVOCATIONS_RELOAD",
    "ClientCertificate",
    "RevokedClients",
]

REVOCATIONS_RELOAD = timedelta(seconds=2)
REVOCATIONS_MAX_AGE = timedelta(seconds=10)


@dataclass(frozen=True)
class ClientCertificate:
    """What the registrar recorded about a client certificate it issued."""

    fingerprint: str  # sha256:<hex> of the certificate's DER
    name: str  # its subject common name
    admin: bool  # OU=zerotouch-admin: the admin API and the console
    issued_at: datetime
    not_after: datetime
    revoked_at: datetime | None = None
    revoked_reason: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return {f.name: json_value(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class RevokedClients:
    """The revoked client certificates a process knows of, as read when ``loaded_at`` (the
    time the read began, so a revocation committed before it is in ``fingerprints``)."""

    fingerprints: frozenset[str]
    loaded_at: datetime

    def __post_init__(self) -> None:
        if not isinstance(self.fingerprints, frozenset):
            raise TypeError("fingerprints must be a frozenset")
        if self.loaded_at.tzinfo is None:
            raise ValueError("loaded_at must be timezone-aware")

    def current(self, now: datetime) -> bool:
        """Whether this set may still decide at ``now``: a revocation it misses is at most
        ``REVOCATIONS_MAX_AGE`` old."""
        return now - self.loaded_at <= REVOCATIONS_MAX_AGE

    def revoked(self, fingerprint: str) -> bool:
        return fingerprint in self.fingerprints

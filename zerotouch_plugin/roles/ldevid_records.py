"""What the registrar records about each LDevID it issued, as plain values: the store returns
them and ``roles.reenrollment`` decides on them. Kept apart from the roles' logic so that the
store (and every short CLI command that opens it) imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["EVENT_RENEWED", "EVENT_REVOKED", "IssuedCertificate"]

# What the certificate history records beside each issued LDevID.
EVENT_RENEWED = "renewed"  # this LDevID authenticated a renewal; detail: the new fingerprint
EVENT_REVOKED = "revoked"  # no longer accepted; detail: why


@dataclass(frozen=True)
class IssuedCertificate:
    """What the registrar recorded about a certificate it issued."""

    serial: str
    fingerprint: str
    kind: str  # enroll | reenroll
    issued_at: datetime
    not_after: datetime
    revoked_at: datetime | None = None
    revoked_reason: str | None = None

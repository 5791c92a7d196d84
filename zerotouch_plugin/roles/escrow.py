"""Vouchers the owner holds in escrow against a MASA that goes away (RFC 8995 §7.2,
"nonceless" vouchers; RFC 8366 §5.3: without a nonce a voucher must carry expires-on).

The registrar asks the MASA ahead of time, with no pledge present: a registrar
voucher-request with the device's serial-number, no nonce, no prior-signed-voucher-request
and the expires-on it wants. A MASA in claims mode answers it for devices claimed for the
registrar's domain. Held vouchers are renewed while the MASA is alive, some days before
they expire. Sans-IO: ``now`` is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from zerotouch_plugin.artifacts import cms
from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.artifacts.voucher import Assertion, VoucherRequest
from zerotouch_plugin.errors import InvalidInput
from zerotouch_plugin.roles.registrar import RegistrarContext

__all__ = ["Held", "build_escrow_request", "due_for_renewal", "escrow_expiry"]

MAX_LIFETIME_DAYS = 3650  # a longer-lived voucher outlives any sensible trust decision


@dataclass(frozen=True)
class Held:
    """What the renewal needs to know of one held voucher."""

    serial: str
    expires_on: datetime


def escrow_expiry(now: datetime, days: int) -> datetime:
    """The expires-on to ask for: ``days`` ahead (1 to MAX_LIFETIME_DAYS)."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_LIFETIME_DAYS:
        raise InvalidInput(f"the lifetime must be 1 to {MAX_LIFETIME_DAYS} days, not {days!r}")
    return now + timedelta(days=days)


def build_escrow_request(
    ctx: RegistrarContext, serial: str, *, expires_on: datetime, now: datetime
) -> bytes:
    """The registrar voucher-request for a voucher to hold in escrow: the registrar's own
    assertion of ownership (RFC 8366 §5.3 "verified": the MASA checks its claim), no nonce,
    the expiry wanted; CMS-signed with the registrar key and its chain up to the domain CA,
    as every registrar voucher-request is (RFC 8995 §5.5)."""
    if expires_on <= now:
        raise InvalidInput("the voucher to hold in escrow must expire after now")
    request = VoucherRequest(
        created_on=now,
        assertion=Assertion.VERIFIED,
        serial_number=serial,
        expires_on=expires_on,
    )
    reg = ctx.registrar
    chain = reg.chain if ctx.domain_ca.cert in reg.chain else (*reg.chain, ctx.domain_ca.cert)
    return cms.sign(request.to_json(), signer=Identity(reg.cert, reg.key, chain), now=now)


def due_for_renewal(held: Iterable[Held], *, now: datetime, before: timedelta) -> list[str]:
    """Serials whose held voucher expires within ``before`` of ``now`` (or has expired)."""
    return sorted(h.serial for h in held if h.expires_on - before <= now)

"""Devices that wait for an operator (registrar policy ``ask``): a trusted pledge that is not
on the allow list gets 202 with Retry-After (RFC 8995 §5.5: the registrar may answer 202
while it decides) and is held as a ``pending`` entry; the pledge resends the same
voucher-request (§5.6) until an operator approves (an allow entry: the next resend gets its
voucher) or denies it. The entries live in the database, so every registrar process on it
answers the same.
"""

from __future__ import annotations

import logging

from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import NameOID

from zerotouch_plugin.errors import NotFound
from zerotouch_plugin.roles import registrar as role
from zerotouch_plugin.services.registrar.common import in_thread, utc_now
from zerotouch_plugin.services.registrar.loader import Registrar

__all__ = ["approve", "hold_for_approval", "who_is"]

log = logging.getLogger(__name__)


async def hold_for_approval(reg: Registrar, serial: str, manufacturer: str) -> web.Response:
    """Hold the device for an operator and answer 202 + Retry-After (a voucher-request, RFC
    8995 §5.6, or an enrollment with the IDevID, RFC 7030 §4.2.3)."""
    held = await in_thread(reg.repo.hold_pending, serial, manufacturer=manufacturer, now=utc_now())
    if held:
        log.info("device %s (%s) waits for approval", serial, manufacturer)
    return web.Response(
        status=202,
        text=f"device {serial} is waiting for an operator's approval\n",
        headers={"Retry-After": str(reg.config.retry_after)},
    )


async def approve(reg: Registrar, serial: str, decision: role.PolicyDecision, who: str) -> int:
    """Decide the held entries of ``serial``; NotFound (404) when none is held."""
    decided = await in_thread(
        reg.repo.decide_pending, serial, str(decision), actor=who, now=utc_now()
    )
    if decided == 0:
        raise NotFound(f"device {serial} is not waiting for approval")
    log.info("device %s: %s by %s", serial, decision, who)
    return decided


def who_is(cert: x509.Certificate) -> str:
    """How an admin certificate's holder is named in the record of their actions."""
    names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return f"admin certificate {names[0] if names else cert.subject.rfc4514_string()}"

"""The MASA audit log check (RFC 8995 §5.8.3), shared by voucher_status and EST: a voucher
from the MASA is enrolled only once its audit log has been read and judged."""

from __future__ import annotations

import logging

from cryptography import x509

from zerotouch_plugin.errors import NotFound, PolicyRefused, ZerotouchError
from zerotouch_plugin.roles import registrar as role
from zerotouch_plugin.services.registrar.common import in_thread, utc_now
from zerotouch_plugin.services.registrar.loader import Registrar

__all__ = ["judge_audit_log", "judge_request_audit", "refuse_on_any_alert"]

log = logging.getLogger(__name__)


async def judge_audit_log(reg: Registrar, serial: str, idevid: x509.Certificate) -> role.AuditLevel:
    """Fetch the audit log of the device's last registrar voucher-request and record the
    verdict, as ``judge_request_audit``."""
    return await judge_request_audit(
        reg, serial, idevid, await in_thread(reg.repo.latest_registrar_request, serial)
    )


async def judge_request_audit(
    reg: Registrar, serial: str, idevid: x509.Certificate, rvr: bytes | None
) -> role.AuditLevel:
    """Fetch the audit log of ``rvr``, the device's last registrar voucher-request answered
    by the MASA, and record the verdict. A failure is recorded on the device and raised:
    enrollment waits for a verdict (fail closed), and a MASA that did not answer gives 503
    so the pledge retries."""
    try:
        if rvr is None:
            raise NotFound(f"no registrar voucher-request on record for {serial}")
        masa_url = role.masa_url_for(idevid, reg.config.masa_url)
        log_json = await reg.masa.request_audit_log(masa_url, rvr)
        own = [
            role.domain_id(reg.context.domain_ca.cert),
            role.domain_id(reg.context.registrar.cert),
        ]
        verdict = role.evaluate_audit_log(log_json, own_ids=own)
    except ZerotouchError as exc:
        log.warning("audit log of %s not judged: %s", serial, exc.one_line())
        await in_thread(
            reg.repo.record_error, serial, f"audit log: {exc.one_line()}", now=utc_now()
        )
        raise
    await in_thread(
        reg.repo.record_audit,
        serial,
        level=str(verdict.level),
        summary=verdict.summary,
        log=log_json.decode("utf-8", "replace"),
        now=utc_now(),
    )
    return verdict.level


def refuse_on_any_alert(facts: role.DeviceFacts | None) -> None:
    """``refuse_on_audit_alert``: a warning verdict (another domain held the device, the log
    has no entry for us, events were dropped) refuses enrollment as an alert always does; the
    verdict itself reached the event stream and metrics when it was recorded."""
    if facts is not None and facts.audit_level is role.AuditLevel.WARNING:
        raise PolicyRefused(
            f"the MASA audit log of device {facts.serial} raised a warning and this registrar "
            "refuses enrollment on any audit alert (refuse_on_audit_alert, RFC 8995 §5.8.3)"
        )

"""The MASA audit log check (RFC 8995 §5.8.3), shared by voucher_status and EST: a voucher
from the MASA is enrolled only once its audit log has been read and judged."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from cryptography import x509

from zerotouch_plugin.errors import NotFound, PolicyRefused, UpstreamUnavailable, ZerotouchError
from zerotouch_plugin.roles import registrar as role
from zerotouch_plugin.services.registrar.common import in_thread, utc_now
from zerotouch_plugin.services.registrar.loader import Registrar

__all__ = [
    "PREFETCH_KEY",
    "AuditPrefetch",
    "judge_audit_log",
    "judge_request_audit",
    "refuse_on_any_alert",
]

log = logging.getLogger(__name__)

# Devices whose audit log is fetched or judged ahead of their voucher_status at once; past
# it the oldest is dropped and its voucher_status asks the MASA itself.
_PREFETCH_LIMIT = 1024


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
    recorded = await in_thread(
        reg.repo.record_audit,
        serial,
        judged=rvr,
        level=str(verdict.level),
        summary=verdict.summary,
        log=log_json.decode("utf-8", "replace"),
        now=utc_now(),
    )
    if not recorded:
        raise UpstreamUnavailable(
            f"a newer voucher was issued for {serial} while the audit log of the one before "
            "was read: ask again, its own log is judged then",
            retry_after=1,
        )
    return verdict.level


class AuditPrefetch:
    """Audit logs fetched and judged in the background right after a MASA voucher is relayed,
    so that voucher_status finds the verdict recorded instead of asking the MASA while the
    pledge waits (RFC 8995 §5.8.3). One task per device; a verdict counts only for the
    registrar voucher-request it was fetched for, and a failed or dropped task leaves
    voucher_status to fetch the log itself (fail closed, as without the prefetch)."""

    def __init__(self, reg: Registrar, *, limit: int = _PREFETCH_LIMIT) -> None:
        self._reg = reg
        self._limit = limit
        self._tasks: dict[str, tuple[bytes, asyncio.Task[bool]]] = {}

    def start(self, serial: str, idevid: x509.Certificate, rvr: bytes) -> None:
        """Fetch and judge the audit log of ``rvr`` in the background."""
        self._drop(serial)
        if len(self._tasks) >= self._limit:
            self._drop(next(iter(self._tasks)))
        self._tasks[serial] = (rvr, asyncio.create_task(self._judge(serial, idevid, rvr)))

    async def judged(self, serial: str, rvr: bytes | None) -> bool:
        """True when the background task for ``rvr`` recorded a verdict (waiting for it if it
        is still running); False when there is none to wait for or it failed."""
        entry = self._tasks.pop(serial, None)
        if entry is None or rvr is None or entry[0] != rvr:
            if entry is not None:
                entry[1].cancel()
            return False
        return await asyncio.shield(entry[1])

    async def close(self) -> None:
        """Cancel what is still running (at shutdown)."""
        tasks = [task for _, task in self._tasks.values()]
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _drop(self, serial: str) -> None:
        entry = self._tasks.pop(serial, None)
        if entry is not None:
            entry[1].cancel()

    async def _judge(self, serial: str, idevid: x509.Certificate, rvr: bytes) -> bool:
        try:
            await judge_request_audit(self._reg, serial, idevid, rvr)
        except ZerotouchError:
            return False  # logged and recorded on the device by judge_request_audit
        except Exception:
            log.exception("audit log of %s not judged in the background", serial)
            return False
        return True


PREFETCH_KEY = web.AppKey("audit_prefetch", AuditPrefetch)


def refuse_on_any_alert(facts: role.DeviceFacts | None) -> None:
    """``refuse_on_audit_alert``: a warning verdict (another domain held the device, the log
    has no entry for us, events were dropped) refuses enrollment as an alert always does; the
    verdict itself reached the event stream and metrics when it was recorded."""
    if facts is not None and facts.audit_level is role.AuditLevel.WARNING:
        raise PolicyRefused(
            f"the MASA audit log of device {facts.serial} raised a warning and this registrar "
            "refuses enrollment on any audit alert (refuse_on_audit_alert, RFC 8995 §5.8.3)"
        )

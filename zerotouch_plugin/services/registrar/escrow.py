"""Fetching vouchers ahead for escrow, and renewing them in the background (``roles.escrow``).

A fetched voucher is verified as an imported one is (``roles.registrar.check_escrow_voucher``)
before it replaces the one held, so a MASA that answers with something else leaves the
held voucher in place. The MASA is asked at ``masa_url`` (registrar.toml): with no pledge
present there is no IDevID to read its URL from.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from zerotouch_plugin.errors import ConfigError, ZerotouchError
from zerotouch_plugin.roles import escrow as escrow_role
from zerotouch_plugin.roles.registrar import check_escrow_voucher
from zerotouch_plugin.services._tasks import cancel_task
from zerotouch_plugin.services.registrar.common import in_thread, utc_now
from zerotouch_plugin.services.registrar.loader import Registrar

__all__ = ["EscrowRenewal", "Fetched", "VendorCollector", "prefetch"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fetched:
    """The outcome for one serial: held until ``expires_on``, or ``error``."""

    serial: str
    expires_on: datetime | None = None
    error: str | None = None


async def _fetch_one(reg: Registrar, serial: str, masa_url: str, days: int) -> Fetched:
    now = utc_now()
    try:
        rvr = escrow_role.build_escrow_request(
            reg.context, serial, expires_on=escrow_role.escrow_expiry(now, days), now=now
        )
        data = await reg.masa.request_voucher(masa_url, rvr)
        held = check_escrow_voucher(reg.context, data, serial=serial, now=utc_now())
    except ZerotouchError as exc:
        log.warning("no voucher fetched for escrow of %s: %s", serial, exc.one_line())
        return Fetched(serial, error=exc.one_line())
    await in_thread(reg.repo.hold_escrow, held, now=utc_now())
    log.info("voucher for %s held in escrow until %s", serial, held.expires_on.isoformat())
    return Fetched(serial, expires_on=held.expires_on)


async def prefetch(reg: Registrar, serials: Sequence[str], *, days: int) -> list[Fetched]:
    """Ask the MASA for a nonceless voucher valid ``days`` for each serial and hold it."""
    if reg.config.masa_url is None:
        raise ConfigError(
            "fetching vouchers ahead needs masa_url in registrar.toml: with no pledge "
            "present there is no IDevID naming its MASA (RFC 8995 §2.3.2)"
        )
    escrow_role.escrow_expiry(utc_now(), days)  # a bad lifetime fails before any request
    return [await _fetch_one(reg, serial, reg.config.masa_url, days) for serial in serials]


class EscrowRenewal:
    """Renews held vouchers ``escrow_renew_days`` before they expire, looking every
    ``escrow_renew_poll`` seconds; idle when the MASA is gone or no masa_url is set."""

    def __init__(self, reg: Registrar) -> None:
        self._reg = reg
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        config = self._reg.config
        if config.masa_gone or config.masa_url is None or self._task is not None:
            return
        self._task = asyncio.create_task(self._run(), name="escrow-renewal")

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel_task(task)

    async def renew_due(self, now: datetime) -> list[Fetched]:
        """One pass: renew what is due at ``now``."""
        config = self._reg.config
        rows = await in_thread(self._reg.repo.escrows)
        due = escrow_role.due_for_renewal(
            (escrow_role.Held(r.serial, r.expires_on) for r in rows),
            now=now,
            before=timedelta(days=config.escrow_renew_days),
        )
        if not due:
            return []
        log.info("renewing %d voucher(s) held in escrow: %s", len(due), ", ".join(due))
        return await prefetch(self._reg, due, days=config.escrow_lifetime_days)

    async def _run(self) -> None:
        while True:
            try:
                await self.renew_due(utc_now())
            except ZerotouchError as exc:
                log.warning("escrow renewal: %s", exc.one_line())
            except Exception:  # a bug must not end the renewals for good: logged, next round
                log.exception("escrow renewal failed")
            await asyncio.sleep(self._reg.config.escrow_renew_poll)


# Audit verdicts the registrar raised as events (store/registrar/events.py), by level.
_AUDIT_EVENTS = {"audit-alert": "alert", "audit-warning": "warning"}


class VendorCollector(Collector):
    """At scrape time: each MASA's circuit, the vouchers held in escrow (and how many are due
    for renewal), and the audit-log alerts and warnings raised so far."""

    def __init__(self, reg: Registrar) -> None:
        self._reg = reg

    def collect(self) -> Iterator[Metric]:
        circuits = GaugeMetricFamily(
            "zerotouch_registrar_masa_circuit",
            "The circuit breaker of each MASA called (1 for its current state)",
            labels=["masa", "state"],
        )
        for masa, state in self._reg.masa.breaker_states().items():
            circuits.add_metric([masa, str(state)], 1)
        yield circuits
        try:
            held = self._reg.repo.escrows()
            events = self._reg.repo.event_counts()
        except ZerotouchError as exc:
            log.warning("metrics: the database did not answer: %s", exc.one_line())
            return
        due = escrow_role.due_for_renewal(
            (escrow_role.Held(r.serial, r.expires_on) for r in held),
            now=utc_now(),
            before=timedelta(days=self._reg.config.escrow_renew_days),
        )
        escrow = GaugeMetricFamily(
            "zerotouch_registrar_escrow_vouchers",
            "Nonceless vouchers held in escrow (due: expiring within escrow_renew_days)",
            labels=["status"],
        )
        escrow.add_metric(["held"], len(held))
        escrow.add_metric(["due"], len(due))
        yield escrow
        audits = GaugeMetricFamily(
            "zerotouch_registrar_audit_events",
            "Audit-log verdicts raised as events on record, by level",
            labels=["level"],
        )
        for kind, level in _AUDIT_EVENTS.items():
            audits.add_metric([level], events.get(kind, 0))
        yield audits

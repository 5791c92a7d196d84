"""The registrar's day-0 hand-off worker: pushes configuration over NETCONF/TLS (RFC 7589).

A successful enrollstatus queues a hand-off in the database (``registrar_handoffs``) and wakes
the worker; the HTTP response does not wait for it. The worker of every registrar process
looks for due hand-offs (at start, when woken, when a retry falls due, and every
``handoff_poll`` seconds for work queued by another process or left by a restart), takes the
leases of the due ones with one conditional UPDATE so that one process does each, runs one
attempt each within ``handoff_timeout`` and records the outcomes the role
(``roles/handoff.py``) decides; a round records the outcomes and takes the leases of all that
ended or fell due since the last one, a write transaction each, not one per device.

The registrar authenticates with its own client certificate from the domain CA
(the registrar folder's ``handoff-client.pem``, key and certificate in one file, written
atomically) and accepts only the LDevID it issued to that serial, checked by the DNS name
that LDevID carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

from zerotouch_plugin._files import write_atomic
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.config import RegistrarConfig
from zerotouch_plugin.errors import (
    CertificateError,
    InvalidInput,
    NotFound,
    PeerRpcError,
    SignatureInvalid,
    UnsupportedOperation,
    UpstreamUnavailable,
    ZerotouchError,
)
from zerotouch_plugin.roles import handoff as role
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services._tls import client_context, identity_pem
from zerotouch_plugin.services.netconf.client import NetconfClient
from zerotouch_plugin.store.registrar import HandoffJob, RegistrarRepository
from zerotouch_plugin.store.registrar.handoff_queue import HandoffOutcome

__all__ = [
    "HANDOFF_CLIENT_FILE",
    "HANDOFF_CLIENT_NAME",
    "HandoffWorker",
    "ensure_handoff_identity",
    "requeue_handoff",
]

log = logging.getLogger(__name__)

HANDOFF_CLIENT_FILE = "handoff-client.pem"
HANDOFF_CLIENT_NAME = "zerotouch-registrar"  # the NETCONF username on devices (cert CN)
_CLIENT_DAYS = 825
_RENEW_BEFORE = timedelta(days=7)
_CONCURRENCY = 16  # attempts one process runs at once

# Error class -> failure kind, first match wins (tables, not if-chains).
_FAILURES: tuple[tuple[type[ZerotouchError], role.FailureKind], ...] = (
    (PeerRpcError, role.FailureKind.RPC_ERROR),
    (CertificateError, role.FailureKind.UNTRUSTED),
    (SignatureInvalid, role.FailureKind.UNTRUSTED),  # the chain check of the role
    (UnsupportedOperation, role.FailureKind.UNSUPPORTED),
    (NotFound, role.FailureKind.NO_CONFIG),
    (UpstreamUnavailable, role.FailureKind.UNREACHABLE),
    (InvalidInput, role.FailureKind.PROTOCOL),
)


def _now() -> datetime:
    return datetime.now(UTC)


def ensure_handoff_identity(folder: Path, ca: certs.Issuer, *, now: datetime) -> Identity:
    """The registrar's NETCONF client identity, issued by the domain CA when missing or
    close to expiry (``registrar init`` does it; folders made before get it on first use)."""
    path = folder / HANDOFF_CLIENT_FILE
    if path.exists():
        identity = certfiles.load_identity(path, path)
        if identity.cert.not_valid_after_utc - _RENEW_BEFORE > now:
            return identity
    identity = certs.issue_client(ca, HANDOFF_CLIENT_NAME, now=now, days=_CLIENT_DAYS)
    # one file: two processes renewing at once can never pair one's key with the other's cert
    write_atomic(path, certs.key_pem(identity.key) + identity_pem(identity), 0o600)
    log.info("hand-off client certificate %s written", certs.fingerprint(identity.cert))
    return identity


def requeue_handoff(repo: RegistrarRepository, serial: str, *, now: datetime) -> role.Target:
    """Queue the hand-off of an enrolled device again (``registrar handoff``, ``POST
    /admin/devices/{serial}/handoff``): pending, attempts 0, due now, with the configuration
    stored when the attempt runs. It is durable, so any registrar process on the database
    takes it up, the one asked at once (woken), the others within ``handoff_poll``."""
    record = repo.device(serial)
    configured, override = repo.day0_plan(serial)
    current = repo.handoff(serial)
    reported = repo.management(serial)
    plan = role.plan_repush(
        serial=serial,
        device_state=record.state if record is not None else None,
        handoff_state=current.state,
        configured=configured,
        override=override,
        reported=reported.address if reported is not None else None,
        known_target=current.target,
    )
    assert plan.target is not None  # plan_repush raises when it has none
    repo.queue_handoff(
        serial,
        state=str(plan.state),
        host=plan.target.host,
        port=plan.target.port,
        error=None,
        now=now,
    )
    log.info("hand-off of %s queued again for %s", serial, plan.target)
    return plan.target


def _failure(exc: ZerotouchError) -> role.AttemptFailure:
    for cls, kind in _FAILURES:
        if isinstance(exc, cls):
            tag = exc.error_tag if isinstance(exc, PeerRpcError) else None
            return role.AttemptFailure(kind, str(exc), tag)
    return role.AttemptFailure(role.FailureKind.PROTOCOL, exc.one_line())


def _log_outcome(outcome: HandoffOutcome, recorded: bool) -> None:
    serial = outcome.serial
    if not recorded:
        log.warning("hand-off of %s: lease lost, outcome not recorded", serial)
    elif outcome.state == role.HandoffState.APPLIED:
        log.info("hand-off of %s: day-0 configuration applied", serial)
    elif outcome.state == role.HandoffState.PENDING:
        wait = (outcome.next_at - _now()).total_seconds() if outcome.next_at else 0.0
        log.warning("hand-off of %s: %s; retry in %.1f s", serial, outcome.error, wait)
    else:
        log.error("hand-off of %s failed: %s", serial, outcome.error)


class HandoffWorker:
    """Runs the due hand-offs of the shared database from one registrar process."""

    def __init__(
        self,
        repo: RegistrarRepository,
        *,
        domain_ca: certs.Issuer,
        identity: Identity,
        config: RegistrarConfig,
    ) -> None:
        self._repo = repo
        self._ca = domain_ca.cert
        # The server is checked by the name its current LDevID carries
        # (<serial label>.<device_domain>, whatever address it is reached at, NAT included) and,
        # in any case, pinned to the LDevIDs issued to its serial (role check). LDevIDs issued
        # before names were given carry none: for them only the pinning applies.
        self._named = client_context(identity, trust=[domain_ca.cert], check_hostname=True)
        self._unnamed = client_context(identity, trust=[domain_ca.cert], check_hostname=False)
        self._policy = role.HandoffPolicy(
            config.handoff_attempts, config.handoff_backoff, config.handoff_max_backoff
        )
        self._timeout = config.handoff_timeout
        self._poll = config.handoff_poll
        # a lease outlives the attempt it covers; an expired one is taken over elsewhere
        self._lease = timedelta(seconds=2 * config.handoff_timeout + 10)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(_CONCURRENCY)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._finished: list[HandoffOutcome] = []  # outcomes the next round records
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def wake(self) -> None:
        """Look for due hand-offs now (one was just queued)."""
        self._wake.set()

    async def close(self) -> None:
        """Stop; attempts in flight are cancelled (not counted) and their leases released, so
        another process, or this one after a restart, takes them up again."""
        # Python 3.11's wait_for can swallow a cancel that meets its timeout: the flag ends the
        # loop whatever happens to the cancel, and gather lets a cancel of close() through.
        self._closing = True
        self._wake.set()
        tasks = [t for t in (self._task, *self._running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        await self._record_finished()
        try:
            await asyncio.to_thread(self._repo.release_handoffs, self.owner)
        except ZerotouchError as exc:  # the leases expire on their own
            log.warning("hand-off: leases not released: %s", exc.one_line())

    async def _loop(self) -> None:
        """Rounds until cancelled: a fault in one is logged and the next runs after a pause,
        so a bug never stops the hand-offs of this process silently."""
        while not self._closing:
            try:
                await self._round()
            except Exception:
                log.exception(
                    "hand-off: internal error in the worker; going on in %g s", self._poll
                )
                await asyncio.sleep(self._poll)

    async def _round(self) -> None:
        """Record the outcomes of the attempts that ended, start the due ones, then wait until
        woken, a retry falls due or the poll. Wake-ups that come while a round runs are
        served by the next one, so the outcomes and the claims of a burst of hand-offs each
        take one write transaction, not one per device."""
        self._wake.clear()
        await self._record_finished()
        free = _CONCURRENCY - len(self._running)
        next_at = None
        if free > 0:  # when every slot is busy, the attempt that ends first wakes the loop
            try:
                jobs, next_at = await asyncio.to_thread(self._claim, free, set(self._running))
            except ZerotouchError as exc:
                log.warning("hand-off: cannot read the queue: %s", exc.one_line())
                jobs = []
            for job in jobs:
                self._running[job.serial] = asyncio.get_running_loop().create_task(
                    self._attempt(job)
                )
        delay = self._poll
        if next_at is not None:
            delay = min(delay, max((next_at - _now()).total_seconds(), 0.0))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)

    def _claim(self, free: int, running: set[str]) -> tuple[list[HandoffJob], datetime | None]:
        """The due hand-offs this process does not run yet, leased to it (in a thread)."""
        now = _now()
        found, next_at = self._repo.due_handoffs(now, free)
        due = [serial for serial in found if serial not in running]
        if len(due) < len(found) and next_at == now:
            # queued again while its attempt runs: the end of that attempt wakes the loop,
            # no need to look again at once (and again, until it ends)
            next_at = None
        jobs = self._repo.claim_handoffs(due, self.owner, now=now, lease_until=now + self._lease)
        if len(jobs) < len(due):  # another process took some: look again soon
            next_at = now
        return jobs, next_at

    async def _attempt(self, job: HandoffJob) -> None:
        try:
            async with self._slots:
                log.info("hand-off of %s: attempt %d", job.serial, job.attempts + 1)
                failure = await self._run_attempt(job)
            decision = role.after_attempt(
                self._policy,
                attempts=job.attempts,
                failure=failure,
                now=_now(),
                rand=random.random(),
            )
            self._finished.append(
                HandoffOutcome(
                    job.serial,
                    str(decision.state),
                    decision.attempts,
                    decision.next_at,
                    decision.error,
                )
            )
        except Exception:  # a bug outside the attempt itself: the lease expires, retried later
            log.exception("hand-off of %s: internal error", job.serial)
        finally:
            self._running.pop(job.serial, None)
            self._wake.set()

    async def _run_attempt(self, job: HandoffJob) -> role.AttemptFailure | None:
        """One attempt's failure (None: applied); a bug is a counted failed attempt, never
        left leased."""
        try:
            return await self._outcome(job)
        except Exception as exc:
            log.exception("hand-off of %s: internal error", job.serial)
            return role.AttemptFailure(
                role.FailureKind.INTERNAL, f"{type(exc).__name__} in the registrar (see its log)"
            )

    async def _outcome(self, job: HandoffJob) -> role.AttemptFailure | None:
        """Run one attempt; its failure (None: applied). Only bugs escape."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._push(job)
        except ZerotouchError as exc:
            return _failure(exc)
        except TimeoutError:
            return role.AttemptFailure(
                role.FailureKind.UNREACHABLE, f"no answer within {self._timeout:g} s"
            )
        return None

    async def _record_finished(self) -> None:
        """Store the outcomes the role decided, where this process still holds the lease, in
        one transaction; when the database fails they are kept for the next round (their
        leases expire meanwhile only if it stays down longer than an attempt's lease)."""
        if not self._finished:
            return
        outcomes = list(self._finished)
        try:
            kept = await asyncio.to_thread(
                self._repo.finish_handoffs, self.owner, outcomes, now=_now()
            )
        except ZerotouchError as exc:
            log.warning("hand-off: outcomes not recorded yet: %s", exc.one_line())
            return
        del self._finished[: len(outcomes)]
        for outcome, recorded in zip(outcomes, kept, strict=True):
            _log_outcome(outcome, recorded)

    async def _push(self, job: HandoffJob) -> None:
        """One attempt: connect, check the device, edit-config, copy-config, close-session."""
        if job.edit_xml is None:
            raise NotFound(f"the day-0 configuration of {job.serial} was removed")
        if job.address:
            target = role.parse_address(job.address)
        elif job.host is not None and job.port is not None:
            target = role.Target(job.host, job.port)
        else:
            raise NotFound(f"no management address for {job.serial}")
        client = await NetconfClient.connect(
            target.host,
            target.port,
            context=self._named if job.server_name else self._unnamed,
            server_hostname=job.server_name,
        )
        try:
            role.check_device_certificate(
                client.peer_certificate,
                serial=job.serial,
                domain_ca=self._ca,
                issued_fingerprints=job.issued_fingerprints,
                now=_now(),
            )
            for operation in role.handoff_rpcs(client.capabilities, job.edit_xml):
                await client.rpc(operation)
            await client.close()
        finally:
            client.abort()

"""The pledge agent: bootstraps the device it runs in, through the plugin host interface.

It runs discovery (``services/discovery/driver.py`` over the sans-IO machine of
``roles/discovery.py``, RFC 8995 §4.1.1): each method of the configured order searches with
its finder (the configured registrars, GRASP and mDNS on the device's links, unicast DNS-SD,
the vendor's registrar), and each candidate found is tried with the sans-IO pledge machine
(``roles/pledge.py``) and the HTTPS client of ``services/pledge_client.py``: a join proxy is
connected to like a registrar, the TLS runs through it end to end. A candidate that fails is
set aside with backoff and jitter and the next one tried, cycle after cycle, until one
enrolls the device; errors retrying cannot fix (the device's own files, storage) stop it in
phase ``failed``. The identity is installed with ``PluginHost.install_identity`` before
enrollstatus (RFC 8995 §5.9.4); a restart between the two finds the identity installed and
sends the enrollstatus then. Every step is published as ``/zerotouch-bootstrap:bootstrap``
(``roles/bootstrap.py``), phase changes are notified, and the event history, the voucher and
the pending report are kept in the host's ``AgentStore`` across restarts.

Everything device-specific comes through the host (``device/host.py``): the IDevID chain and
its Signer, the manufacturer's anchors, the LDevID key generation, the store, the YANG
publishing. ``restart-bootstrap`` starts a fresh run at once (also after ``failed``); on an
enrolled device it needs ``factory-reset true``, which forgets the domain identity first and
claims nothing when the host cannot forget it.

The discovery driver and the HTTPS clients are imported when a run, a pending report or a
renewal needs them: an enrolled device that only waits does not keep them in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, cast

from cryptography import x509

from zerotouch_plugin.artifacts import certs, cms
from zerotouch_plugin.artifacts.certs.keys import KEY_KINDS, KeyKind
from zerotouch_plugin.artifacts.signer import SigningIdentity, make_csr, tls_identity
from zerotouch_plugin.artifacts.voucher import Voucher, format_datetime
from zerotouch_plugin.config import AgentConfig
from zerotouch_plugin.device.host import (
    REQUIRED_MODULES,
    AgentStore,
    InstalledIdentity,
    PluginHost,
)
from zerotouch_plugin.errors import (
    ConfigError,
    Conflict,
    StorageError,
    UpstreamUnavailable,
    ZerotouchError,
)
from zerotouch_plugin.roles.bootstrap import NOTIFICATION, BootstrapState, PhaseChange
from zerotouch_plugin.roles.discovery import Candidate, Discovery, Search
from zerotouch_plugin.roles.discovery import Wait as DiscoveryWait
from zerotouch_plugin.roles.pledge import (
    Enrollment,
    Pledge,
    PledgeAction,
    PledgeConfig,
    RetryPolicy,
    Wait,
    enroll_status_request,
)
from zerotouch_plugin.roles.renewal import (
    RenewalAttempts,
    RenewalPolicy,
    Validity,
    expired,
    next_attempt,
)
from zerotouch_plugin.roles.states import PledgeEvent

__all__ = [
    "PENDING_KEY",
    "REGISTRAR_KEY",
    "RESTART_RPC",
    "STATE_KEY",
    "VOUCHER_KEY",
    "PledgeAgent",
    "pledge_config",
]

log = logging.getLogger(__name__)

# AgentStore keys: the event history, the voucher that authorised the identity, the
# enrollstatus still owed for an installed identity, and the registrar that renews it.
STATE_KEY = "bootstrap-state"
VOUCHER_KEY = "voucher"
PENDING_KEY = "pending-enrollstatus"
REGISTRAR_KEY = "domain-registrar"
RESTART_RPC = "zerotouch-bootstrap:restart-bootstrap"
_STEP_ATTEMPTS = 3  # tries of one step at one registrar before the next registrar

# Errors no retry can fix: the device's own identity or storage. Everything else
# (unreachable, refused, a voucher that failed a check) may differ at another registrar or
# later (the owner allows the serial, the MASA comes back), so the agent retries.
_PERMANENT: tuple[type[ZerotouchError], ...] = (ConfigError, StorageError)

Enrolled = Callable[[str, bool], None]  # (serial, already) -> None


def _utc_now() -> datetime:
    return datetime.now(UTC)


def factory_identity(host: PluginHost) -> SigningIdentity:
    """The IDevID as the host gives it: chain (leaf first) and Signer, checked to match."""
    chain = tuple(host.idevid_chain())
    if not chain or not all(isinstance(c, x509.Certificate) for c in chain):
        raise ConfigError(
            "the host gave no IDevID: idevid_chain must hold x509 certificates, leaf first"
        )
    # only intermediates go in the chain: the manufacturer's root is not sent
    intermediates = tuple(c for c in chain[1:] if c.subject != c.issuer)
    try:
        return SigningIdentity(chain[0], host.idevid_signer(), intermediates)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"the host's IDevID signer is unusable: {exc}") from exc


def pledge_config(host: PluginHost, config: AgentConfig) -> PledgeConfig:
    """What the pledge machine needs, from the host (identity, anchors) and the config."""
    identity = factory_identity(host)
    anchors = tuple(host.manufacturer_anchors())
    try:
        return PledgeConfig(
            idevid=identity,
            masa_anchors=anchors,
            retry=RetryPolicy(
                attempts=_STEP_ATTEMPTS,
                base_delay=config.bootstrap_retry_delay,
                max_delay=config.bootstrap_max_delay,
            ),
            nonceless_allowed=config.nonceless_allowed,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"the host's manufacturer trust anchors are unusable: {exc}") from exc


def _check_modules(host: PluginHost) -> None:
    missing = sorted(set(REQUIRED_MODULES) - set(host.yang_modules()))
    if missing:
        raise ConfigError(
            f"the host does not serve the YANG module(s) {', '.join(missing)} the pledge agent "
            "publishes its state, RPC and notification in (yang/zerotouch-bootstrap@*.yang)"
        )


def reset_requested(args: Mapping[str, Any]) -> bool:
    """Whether ``restart-bootstrap`` asked for ``factory-reset`` (qualified or not)."""
    return any(
        args.get(key) is True for key in ("factory-reset", "zerotouch-bootstrap:factory-reset")
    )


def read_key(store: AgentStore, key: str) -> bytes | None:
    """A value of the agent store; None (logged) when the store cannot be read."""
    try:
        return store.get(key)
    except ZerotouchError as exc:
        log.warning("cannot read %s from the agent store: %s", key, exc.one_line())
        return None


def publish_state(
    host: PluginHost,
    store: AgentStore,
    state: BootstrapState,
    change: PhaseChange | None,
    *more: PhaseChange | None,
) -> None:
    """Publish the bootstrap state, keep its history in the agent store, notify each change
    (several steps taken at once are published and saved once; each event is rendered
    once, when it happens)."""
    host.publish_state(state.to_yang())
    try:
        store.put(STATE_KEY, state.persisted_json())
    except ZerotouchError as exc:  # the state is still published; only its history is at risk
        log.error("cannot save the bootstrap state: %s", exc.one_line())
    for each in (change, *more):
        if each is not None:
            log.info("bootstrap phase %s -> %s", each.previous, each.phase)
            host.emit_event(NOTIFICATION, each.notification())


def restore_state(store: AgentStore, state: BootstrapState) -> None:
    """The history a previous run kept, if it is usable."""
    raw = read_key(store, STATE_KEY)
    if raw is None:
        return
    try:
        state.restore(json.loads(raw))
    except ValueError as exc:
        log.warning("the stored bootstrap state is unusable, starting a new history: %s", exc)


class PledgeAgent:
    """One device's agent. ``start`` it after the host's listeners are up; ``close`` it.
    Building it checks the host: its YANG modules and factory identity (ConfigError)."""

    def __init__(
        self,
        host: PluginHost,
        config: AgentConfig,
        *,
        on_enrolled: Enrolled | None = None,
        now: Callable[[], datetime] = _utc_now,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if not isinstance(config, AgentConfig):
            raise TypeError("config must be an AgentConfig")
        _check_modules(host)
        self.host = host
        self.config = config
        self.pledge = pledge_config(host, config)
        self.store = host.agent_store()
        self.state = BootstrapState(history_size=config.bootstrap_history)
        self._on_enrolled = on_enrolled
        self._now = now
        self._sleep = sleep
        self._random = random_bytes
        self._task: asyncio.Task[None] | None = None
        self._renewal: asyncio.Task[None] | None = None
        # one restart-bootstrap at a time: another one, while the first awaits the run it
        # stops, would start a run beside the one the first then starts, out of reach of
        # any later restart and of close()
        self._restarting = asyncio.Lock()
        self._serial = self.pledge.serial

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Publish the state; bootstrap unless the host already holds a domain identity."""
        self._restore()
        self.host.register_rpc(RESTART_RPC, self._restart_rpc)
        self._publish(self.state.agent_started(now=self._now()))
        installed = self.host.installed_identity()
        if installed is None:
            self._drop(PENDING_KEY)  # an install that never committed owes no report
            self._begin("the device holds no domain identity")
            return
        voucher = self._stored_voucher()
        change = self.state.already_enrolled(
            ldevid=installed.ldevid, anchors=installed.anchors, voucher=voucher, now=self._now()
        )
        self._publish(change)
        pending = self._pending()
        if pending is not None and voucher is None:
            log.warning("an enrollstatus is owed but the voucher is gone: it cannot be sent")
            self._drop(PENDING_KEY)
        elif pending is not None and voucher is not None:
            self._task = asyncio.create_task(
                self._report_pending(pending, installed.ldevid, voucher), name="pledge-agent"
            )
        self._keep_alive()
        if self._on_enrolled is not None:
            self._on_enrolled(self._serial, True)

    async def close(self) -> None:
        await self._cancel()
        await self._stop_renewal()

    async def wait_renewal(self) -> None:
        """Until the renewal loop ends (the LDevID expired, or it was stopped); for tests."""
        if self._renewal is not None:
            await asyncio.shield(self._renewal)

    async def wait(self) -> None:
        """Until the current run ends (enrolled or failed); for tests and tools."""
        if self._task is not None:
            await asyncio.shield(self._task)

    def _begin(self, detail: str) -> None:
        self._publish(self.state.run_started(now=self._now(), detail=detail))
        self._task = asyncio.create_task(self._run(), name="pledge-agent")

    async def _cancel(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- the run ----------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._rounds()
        except asyncio.CancelledError:
            raise
        except ZerotouchError as exc:
            log.error("bootstrap stopped: %s", exc.one_line())
            self._publish(self.state.failed(exc, now=self._now()))
        except Exception as exc:  # a bug must not leave the state claiming progress
            log.exception("bootstrap agent failed")
            error = ZerotouchError(f"internal error of the pledge agent: {exc!r}")
            self._publish(self.state.failed(error, now=self._now()))

    async def _rounds(self) -> None:
        """Discovery (``services/discovery/driver.py``) until a candidate enrolls the device
        or ``bootstrap_rounds`` cycles ran out."""
        from zerotouch_plugin.services.discovery.driver import discovery_machine, run_discovery

        machine = discovery_machine(self.config, random_bytes=self._random)
        gave_up = await run_discovery(
            machine,
            self.config,
            attempt=self._attempt,
            observer=_StateObserver(self),
            sleep=self._sleep,
            now=self._now,
        )
        if gave_up is None:
            self._publish(None)  # the discovery summary with the candidate that enrolled it
            return
        error = gave_up.error or UpstreamUnavailable(gave_up.reason)
        self._publish(self.state.failed(error, now=self._now(), note=gave_up.reason))

    async def _attempt(self, candidate: Candidate) -> ZerotouchError | None:
        """One run of the pledge machine through ``candidate``: None once enrolled, else why
        not. Permanent errors propagate; the others are recorded and the caller moves on."""
        uri = candidate.url
        self._publish(self.state.attempt(uri, now=self._now(), source=candidate.method))
        machine = Pledge(
            self.pledge, random_bytes=self._random, key_factory=self.host.generate_ldevid_key
        )
        seen = 0

        def observe(action: PledgeAction) -> None:
            nonlocal seen
            changes: list[PhaseChange | None] = []
            for event, state in machine.history[seen:]:
                if event is PledgeEvent.VOUCHER_VALID and machine.voucher is not None:
                    self.state.voucher_accepted(machine.voucher)
                changes.append(self.state.machine_step(event, state, now=self._now()))
            seen = len(machine.history)
            if isinstance(action, Wait):
                changes.append(self.state.waiting(action.seconds, action.reason, now=self._now()))
            if changes:
                self._publish(*changes)

        async def sleep(seconds: float) -> None:
            await self._sleep(seconds)
            self._publish(self.state.retrying(machine.state, now=self._now()))

        async def install(enrollment: Enrollment) -> Mapping[str, int]:
            return await self._install(enrollment, uri, machine.origin)

        from zerotouch_plugin.services.pledge_client import PledgeClient, drive

        try:
            async with PledgeClient(
                self.pledge, uri, timeout=self.config.bootstrap_timeout
            ) as client:
                enrollment = await drive(
                    machine, client, on_action=observe, sleep=sleep, install=install, now=self._now
                )
        except _PERMANENT:
            raise
        except ZerotouchError as exc:
            log.warning("bootstrap attempt at %s failed: %s", uri, exc.one_line())
            self._publish(self.state.attempt_failed(uri, exc, now=self._now()))
            return exc
        self._drop(PENDING_KEY)  # enrollstatus went out (or could not, RFC 8995 §5.9.4)
        self._enrolled(candidate, enrollment, machine)
        self._keep_alive()
        return None

    async def _install(
        self, enrollment: Enrollment, uri: str, origin: str | None
    ) -> Mapping[str, int]:
        """The install step (RFC 8995 §5.9.4): voucher and the report still owed kept in the
        store, then the host stores the identity (its commit point) and switches to it."""
        self.store.put(VOUCHER_KEY, enrollment.voucher_cms)
        self.store.put(REGISTRAR_KEY, (origin or uri).encode())
        pending = {"registrar": uri, "origin": origin}
        self.store.put(PENDING_KEY, json.dumps(pending).encode())
        await self.host.install_identity(enrollment.identity, enrollment.domain_anchors)
        return dict(self.host.management_ports())

    def _enrolled(self, candidate: Candidate, enrollment: Enrollment, machine: Pledge) -> None:
        uri = candidate.url
        note = None
        if machine.last_registrar_error is not None:
            note = f"status report answered: {machine.last_registrar_error}"
        change = self.state.enrolled(
            uri,
            ldevid=enrollment.ldevid,
            anchors=enrollment.domain_anchors,
            voucher=enrollment.voucher,
            now=self._now(),
            note=note,
        )
        self._publish(change)
        log.info(
            "enrolled %s through %s %s %s found by %s",
            enrollment.serial,
            candidate.role,
            uri,
            f"({candidate.source})" if candidate.source else "",
            candidate.method,
        )
        if self._on_enrolled is not None:
            self._on_enrolled(enrollment.serial, False)

    # -- the enrollstatus a restart interrupted ---------------------------------------------

    def _pending(self) -> dict[str, Any] | None:
        raw = self._read(PENDING_KEY)
        if raw is None:
            return None
        try:
            pending = json.loads(raw)
            if not isinstance(pending, dict) or not isinstance(pending.get("registrar"), str):
                raise ValueError("no registrar")
            if not isinstance(pending.get("origin"), str | None):
                raise ValueError("origin is not a string")
        except ValueError as exc:
            log.warning("the pending enrollstatus record is unusable, dropped: %s", exc)
            self._drop(PENDING_KEY)
            return None
        return pending

    async def _report_pending(
        self, pending: Mapping[str, Any], ldevid: x509.Certificate, voucher: Voucher
    ) -> None:
        """enrollstatus for the identity installed before the restart (RFC 8995 §5.9.4), to
        the registrar that issued it; telemetry only: the identity stands either way."""
        uri = pending["registrar"]
        request = enroll_status_request(
            ldevid,
            serial=self._serial,
            management=dict(self.host.management_ports()),
            pinned=voucher.pinned_domain_certificate(),
            origin=pending["origin"],
        )
        outcome: str
        from zerotouch_plugin.services.pledge_client import PledgeClient

        try:
            async with PledgeClient(
                self.pledge, uri, timeout=self.config.bootstrap_timeout
            ) as client:
                response = await client.send(request, now=self._now)
            outcome = f"{uri} answered {response.status}"
            ok = 200 <= response.status < 300
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure only means that no report went out
            outcome, ok = f"{uri}: {exc}", False
        self._drop(PENDING_KEY)
        event = "enroll-status-sent" if ok else "enroll-status-failed"
        (log.info if ok else log.warning)("enrollstatus after restart: %s", outcome)
        self._publish(self.state.record(event, now=self._now(), detail=outcome))

    # -- keeping the LDevID alive (RFC 7030 §4.2.2) -----------------------------------------

    def _keep_alive(self) -> None:
        if self.config.renewal and self._renewal is None:
            self._renewal = asyncio.create_task(self._renew_forever(), name="ldevid-renewal")

    async def _stop_renewal(self) -> None:
        task, self._renewal = self._renewal, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _rand(self) -> float:
        return int.from_bytes(self._random(2), "big") / 65536

    async def _renew_forever(self) -> None:
        """Renew the installed LDevID at ``renew_fraction`` of its validity, retrying
        failures on the backoff of ``roles/renewal.py`` until it expires."""
        policy = RenewalPolicy(fraction=self.config.renew_fraction)
        attempts: RenewalAttempts | None = None
        rushed: RenewalAttempts | None = None  # renewals that came back due at once
        while (installed := self.host.installed_identity()) is not None:
            validity = Validity.of(installed.ldevid)
            if expired(validity, self._now()):
                log.error("the LDevID expired before it could be renewed")
                detail = "enroll again with restart-bootstrap factory-reset true"
                self._publish(self.state.record("ldevid-expired", now=self._now(), detail=detail))
                return
            when = next_attempt(policy, validity, attempts, self._rand())
            log.info("LDevID renewal due at %s", format_datetime(when))
            delay = (when - self._now()).total_seconds()
            if delay > 0:
                await self._sleep(delay)
            try:
                renewed = await self._renew(installed)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a host's or a library's error too: the LDevID must live
                error = exc if isinstance(exc, ZerotouchError) else None
                if error is None:
                    log.exception("LDevID renewal failed")
                    error = ZerotouchError(f"internal error of the pledge agent: {exc!r}")
                asked = error.retry_after if isinstance(error, UpstreamUnavailable) else 0
                attempts = (attempts or RenewalAttempts()).failed(self._now(), asked)
                log.warning("LDevID renewal failed: %s", error.one_line())
                self._publish(
                    self.state.record("renewal-failed", now=self._now(), detail=error.one_line())
                )
                continue
            if next_attempt(policy, Validity.of(renewed)) > self._now():
                attempts = rushed = None
            else:
                # a lifetime too short or a clock ahead of the registrar's: back off rather
                # than renew again at once, and again
                log.warning("the renewed LDevID is due for renewal already: backing off")
                attempts = rushed = (rushed or RenewalAttempts()).failed(self._now())

    async def _renew(self, installed: InstalledIdentity) -> x509.Certificate:
        """One simplereenroll with a fresh key from the host, authenticated by the current
        LDevID; the new LDevID installed with the same trust anchors, and returned."""
        if installed.signer is None:
            raise ConfigError("the host gives no signer for the installed LDevID: no renewal")
        raw = self._read(REGISTRAR_KEY)
        registrar = raw.decode(errors="replace") if raw else None
        if not registrar:
            raise ConfigError("no registrar is recorded for the installed LDevID")
        current = tls_identity(
            SigningIdentity(installed.ldevid, installed.signer, installed.chain[1:])
        )
        kind = certs.key_kind_of(installed.ldevid.public_key())  # type: ignore[arg-type]
        try:
            key = self.host.generate_ldevid_key(
                cast(KeyKind, kind) if kind in KEY_KINDS else self.pledge.key_kind
            )
        except ValueError as exc:
            raise ConfigError(f"cannot generate the LDevID key: {exc}") from exc
        csr = make_csr(key, common_name=self._serial, serial=self._serial)
        from zerotouch_plugin.services.reenroll_client import reenroll

        chain = await reenroll(
            registrar,
            current=current,
            csr=csr,
            trust=installed.anchors,
            timeout=self.config.bootstrap_timeout,
            now=self._now(),
        )
        intermediates = tuple(c for c in chain[1:] if c.subject != c.issuer)
        await self.host.install_identity(
            SigningIdentity(chain[0], key, intermediates), installed.anchors
        )
        log.info("LDevID renewed at %s: serial %x", registrar, chain[0].serial_number)
        self._publish(self.state.renewed(chain[0], now=self._now()))
        return chain[0]

    # -- restart-bootstrap RPC --------------------------------------------------------------

    async def _restart_rpc(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """``restart-bootstrap``: a fresh run now; on an enrolled device only with
        factory-reset, which forgets the domain identity first. When the host cannot forget
        it, the error is answered and recorded and the device claims no reset. Requests from
        several sessions are served one after the other."""
        async with self._restarting:
            return await self._restart(reset_requested(args))

    async def _restart(self, reset: bool) -> dict[str, Any]:
        if self.host.installed_identity() is not None and not reset:
            raise Conflict(
                "the device is enrolled; restart-bootstrap with factory-reset true forgets the "
                "domain identity and bootstraps again"
            )
        await self._cancel()
        await self._stop_renewal()
        now = self._now()
        self._publish(
            self.state.record("restart-requested", now=now, detail=f"factory-reset {reset}")
        )
        if reset:
            try:
                await self.host.forget_identity()
                for key in (VOUCHER_KEY, PENDING_KEY, REGISTRAR_KEY):
                    self.store.delete(key)
            except Exception as exc:
                error = exc if isinstance(exc, ZerotouchError) else StorageError(str(exc))
                log.error("factory reset failed: %s", error.one_line())
                self._publish(
                    self.state.failed(error, now=self._now(), note="factory reset failed")
                )
                raise error from exc
            self._publish(self.state.forgotten(now=self._now()))
        self._begin("restart-bootstrap")
        return {"phase": str(self.state.phase)}

    # -- state publishing and persistence ---------------------------------------------------

    def _publish(self, change: PhaseChange | None, *more: PhaseChange | None) -> None:
        publish_state(self.host, self.store, self.state, change, *more)

    def _read(self, key: str) -> bytes | None:
        return read_key(self.store, key)

    def _drop(self, key: str) -> None:
        try:
            self.store.delete(key)
        except ZerotouchError as exc:
            log.warning("cannot remove %s from the agent store: %s", key, exc.one_line())

    def _restore(self) -> None:
        restore_state(self.store, self.state)

    def _stored_voucher(self) -> Voucher | None:
        """The voucher kept at install, for the summary and the pin of a pending report (it
        was validated then, RFC 8995 §5.6.1; here it is only parsed)."""
        raw = self._read(VOUCHER_KEY)
        if raw is None:
            return None
        try:
            return Voucher.from_json(cms.inspect(raw).content)
        except (ValueError, ZerotouchError) as exc:
            log.warning("the stored voucher is unreadable, no voucher summary: %s", exc)
            return None


class _StateObserver:
    """Discovery as the agent shows it: ``bootstrap/discovery`` and the events."""

    def __init__(self, agent: PledgeAgent) -> None:
        self.agent = agent

    def changed(self, machine: Discovery) -> None:
        self.agent.state.discovery_seen(
            methods=machine.config.methods,
            cycle=machine.cycle,
            searching=machine.searching,
            candidates=machine.candidates,
            enrolled_by=machine.enrolled_by,
        )

    def search_started(self, action: Search) -> None:
        agent = self.agent
        agent._publish(agent.state.search_started(action.method, action.timeout, now=agent._now()))

    def candidate_found(self, candidate: Candidate) -> None:
        agent = self.agent
        agent._publish(agent.state.candidate_found(candidate, now=agent._now()))

    def no_local_address(self, where: str) -> None:
        agent = self.agent
        agent._publish(agent.state.record("no-local-address", now=agent._now(), detail=where))

    def waiting(self, action: DiscoveryWait) -> None:
        agent = self.agent
        agent._publish(agent.state.waiting(action.seconds, action.reason, now=agent._now()))

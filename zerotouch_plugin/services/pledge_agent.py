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
enrollstatus (RFC 8995 §5.9.4). Every step is published as
``/zerotouch-bootstrap:bootstrap`` (``roles/bootstrap.py``), phase changes are notified,
and the event history is kept in the folder's ``bootstrap-state.json`` across restarts.

``restart-bootstrap`` starts a fresh run at once (also after ``failed``); on an enrolled
device it needs ``factory-reset true``, which forgets the domain identity first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from zerotouch_plugin._files import write_atomic
from zerotouch_plugin.artifacts import cms
from zerotouch_plugin.artifacts.voucher import Voucher
from zerotouch_plugin.config import DeviceConfig
from zerotouch_plugin.device.domain_files import VOUCHER_FILE
from zerotouch_plugin.device.host import PluginHost
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
)
from zerotouch_plugin.roles.states import PledgeEvent
from zerotouch_plugin.services.discovery.driver import discovery_machine, run_discovery
from zerotouch_plugin.services.pledge_client import PledgeClient, drive, load_pledge_config

__all__ = ["RESTART_RPC", "STATE_FILE", "PledgeAgent"]

log = logging.getLogger(__name__)

STATE_FILE = "bootstrap-state.json"
RESTART_RPC = "zerotouch-bootstrap:restart-bootstrap"
_STEP_ATTEMPTS = 3  # tries of one step at one registrar before the next registrar

# Errors no retry can fix: the device's own identity files or storage. Everything else
# (unreachable, refused, a voucher that failed a check) may differ at another registrar or
# later (the owner allows the serial, the MASA comes back), so the agent retries.
_PERMANENT: tuple[type[ZerotouchError], ...] = (ConfigError, StorageError)

Enrolled = Callable[[str, bool], None]  # (serial, already) -> None


def _utc_now() -> datetime:
    return datetime.now(UTC)


class PledgeAgent:
    """One device's agent. ``start`` it after the host's listeners are up; ``close`` it."""

    def __init__(
        self,
        host: PluginHost,
        folder: Path,
        config: DeviceConfig,
        *,
        on_enrolled: Enrolled | None = None,
        now: Callable[[], datetime] = _utc_now,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.host = host
        self.folder = folder
        self.config = config
        self.state = BootstrapState(history_size=config.bootstrap_history)
        self._on_enrolled = on_enrolled
        self._now = now
        self._sleep = sleep
        self._random = random_bytes
        self._task: asyncio.Task[None] | None = None
        self._serial = host.read_identity().serial_number

    @property
    def state_path(self) -> Path:
        return self.folder / STATE_FILE

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Publish the state; bootstrap unless the host already holds a domain identity."""
        self._restore()
        self.host.register_rpc(RESTART_RPC, self._restart_rpc)
        self._publish(self.state.agent_started(now=self._now()))
        installed = self.host.installed_identity()
        if installed is None:
            self._begin("the device holds no domain identity")
            return
        change = self.state.already_enrolled(
            ldevid=installed.ldevid,
            anchors=installed.anchors,
            voucher=self._stored_voucher(),
            now=self._now(),
        )
        self._publish(change)
        if self._on_enrolled is not None:
            self._on_enrolled(self._serial, True)

    async def close(self) -> None:
        await self._cancel()

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
        pledge = load_pledge_config(
            self.folder,
            retry=RetryPolicy(
                attempts=_STEP_ATTEMPTS,
                base_delay=self.config.bootstrap_retry_delay,
                max_delay=self.config.bootstrap_max_delay,
            ),
            nonceless_allowed=self.config.nonceless_allowed,
        )
        machine = discovery_machine(self.config, random_bytes=self._random)

        async def attempt(candidate: Candidate) -> ZerotouchError | None:
            return await self._attempt(pledge, candidate)

        gave_up = await run_discovery(
            machine,
            self.config,
            attempt=attempt,
            observer=_StateObserver(self),
            sleep=self._sleep,
            now=self._now,
        )
        if gave_up is None:
            self._publish(None)  # the discovery summary with the candidate that enrolled it
            return
        error = gave_up.error or UpstreamUnavailable(gave_up.reason)
        self._publish(self.state.failed(error, now=self._now(), note=gave_up.reason))

    async def _attempt(self, pledge: PledgeConfig, candidate: Candidate) -> ZerotouchError | None:
        """One run of the pledge machine through ``candidate``: None once enrolled, else why
        not. Permanent errors propagate; the others are recorded and the caller moves on."""
        uri = candidate.url
        self._publish(self.state.attempt(uri, now=self._now(), source=candidate.method))
        machine = Pledge(pledge, random_bytes=self._random)
        seen = 0

        def observe(action: PledgeAction) -> None:
            nonlocal seen
            for event, state in machine.history[seen:]:
                if event is PledgeEvent.VOUCHER_VALID and machine.voucher is not None:
                    self.state.voucher_accepted(machine.voucher)
                self._publish(self.state.machine_step(event, state, now=self._now()))
            seen = len(machine.history)
            if isinstance(action, Wait):
                self._publish(self.state.waiting(action.seconds, action.reason, now=self._now()))

        async def sleep(seconds: float) -> None:
            await self._sleep(seconds)
            self._publish(self.state.retrying(machine.state, now=self._now()))

        try:
            async with PledgeClient(pledge, uri, timeout=self.config.bootstrap_timeout) as client:
                enrollment = await drive(
                    machine, client, on_action=observe, sleep=sleep, install=self._install
                )
        except _PERMANENT:
            raise
        except ZerotouchError as exc:
            log.warning("bootstrap attempt at %s failed: %s", uri, exc.one_line())
            self._publish(self.state.attempt_failed(uri, exc, now=self._now()))
            return exc
        self._enrolled(candidate, enrollment, machine)
        return None

    async def _install(self, enrollment: Enrollment) -> Mapping[str, int]:
        """The install step (RFC 8995 §5.9.4): voucher kept for the state summaries, then the
        host stores the identity (domain CA last) and switches its listeners."""
        try:
            await asyncio.to_thread(
                write_atomic, self.folder / VOUCHER_FILE, enrollment.voucher_cms
            )
        except OSError as exc:
            raise StorageError(f"cannot store the voucher: {exc}") from exc
        await self.host.install_identity(
            enrollment.ldevid,
            enrollment.ldevid_key,
            enrollment.ldevid_chain,
            enrollment.domain_anchors,
        )
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

    # -- restart-bootstrap RPC --------------------------------------------------------------

    async def _restart_rpc(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """``restart-bootstrap``: a fresh run now; on an enrolled device only with
        factory-reset, which forgets the domain identity first."""
        reset = any(
            args.get(key) is True for key in ("factory-reset", "zerotouch-bootstrap:factory-reset")
        )
        if self.host.installed_identity() is not None and not reset:
            raise Conflict(
                "the device is enrolled; restart-bootstrap with factory-reset true forgets the "
                "domain identity and bootstraps again"
            )
        await self._cancel()
        now = self._now()
        self._publish(
            self.state.record("restart-requested", now=now, detail=f"factory-reset {reset}")
        )
        if reset:
            await self.host.forget_identity()
            (self.folder / VOUCHER_FILE).unlink(missing_ok=True)
            self._publish(self.state.forgotten(now=self._now()))
        self._begin("restart-bootstrap")
        return {"phase": str(self.state.phase)}

    # -- state publishing and persistence ---------------------------------------------------

    def _publish(self, change: PhaseChange | None) -> None:
        self.host.publish_state(self.state.to_yang())
        self._persist()
        if change is not None:
            log.info("bootstrap phase %s -> %s", change.previous, change.phase)
            self.host.emit_event(NOTIFICATION, change.notification())

    def _persist(self) -> None:
        data = json.dumps(self.state.persisted(), indent=1).encode()
        try:
            write_atomic(self.state_path, data, 0o600)
        except OSError as exc:  # the state is still published; only its history is at risk
            log.error("cannot save %s: %s", self.state_path, exc)

    def _restore(self) -> None:
        path = self.state_path
        if not path.exists():
            return
        try:
            self.state.restore(json.loads(path.read_bytes()))
        except (OSError, ValueError) as exc:
            log.warning("%s is unusable, starting a new event history: %s", path, exc)

    def _stored_voucher(self) -> Voucher | None:
        """The voucher kept at install, for the summary (it was validated then, RFC 8995
        §5.6.1; here it is only parsed)."""
        path = self.folder / VOUCHER_FILE
        try:
            return Voucher.from_json(cms.inspect(path.read_bytes()).content)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, ZerotouchError) as exc:
            log.warning("%s: unreadable, no voucher summary: %s", path, exc)
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

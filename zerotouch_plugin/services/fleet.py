"""A virtual fleet: many reference devices in one process, for sizing a deployment.

Each virtual device is a real ``DeviceServer`` over a folder of its own (its IDevID copied in
from the fleet's IDevID folder) with a NETCONF/TLS listener of its own on a free port, hosting
the real pledge agent. All of them share one compiled YANG schema, parsed once; the agents
keep their state in memory (a virtual device is not meant to survive a restart). A device is
*enrolled* when its agent holds a domain identity, and *configured* when the registrar's
day-0 hand-off has copied running to startup, the hand-off's last step (RFC 6241 §7.3): the
same NETCONF/TLS path ``zerotouch device run`` takes, over the device's new trust anchor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zerotouch_plugin.config import DeviceConfig
from zerotouch_plugin.device.datastore import Datastore
from zerotouch_plugin.device.host import MemoryAgentStore
from zerotouch_plugin.device.types import Tree
from zerotouch_plugin.errors import ConfigError, ZerotouchError
from zerotouch_plugin.services._gate import settle_heap
from zerotouch_plugin.services.device_server import (
    IDEVID_FILE,
    IDEVID_KEY_FILE,
    MASA_CA_FILE,
    DeviceServer,
    device_schema,
)
from zerotouch_plugin.services.pledge_agent import PledgeAgent

__all__ = ["FACTORY_FILES", "Fleet", "FleetSummary", "VirtualDevice", "find_idevids"]

log = logging.getLogger(__name__)

# What a fleet IDevID folder holds per device (``zerotouch vendor idevid`` writes them).
FACTORY_FILES = (IDEVID_FILE, IDEVID_KEY_FILE, MASA_CA_FILE)
_KEY_MODE = 0o600
_SHOWN_FAILURES = 20  # failed devices listed by name in the summary


def find_idevids(folder: Path, count: int) -> list[Path]:
    """The first ``count`` device folders of ``folder`` (by name) that hold every factory
    file; ConfigError when there are fewer."""
    if not folder.is_dir():
        raise ConfigError(f"IDevID folder {folder} does not exist")
    found = sorted(
        sub
        for sub in folder.iterdir()
        if sub.is_dir() and all((sub / name).is_file() for name in FACTORY_FILES)
    )
    if len(found) < count:
        raise ConfigError(
            f"{folder} holds {len(found)} device folder(s) with {', '.join(FACTORY_FILES)}; "
            f"{count} needed (issue more with --vendor)"
        )
    return found[:count]


@dataclass
class VirtualDevice:
    """One device of the fleet and what happened to it (times since the fleet began)."""

    serial: str
    server: DeviceServer
    agent: PledgeAgent = field(init=False)
    started_at: float | None = None
    enrolled_at: float | None = None
    configured_at: float | None = None
    already: bool = False
    failure: tuple[str, str] | None = None  # (reason, message)

    @property
    def port(self) -> int:
        return self.server.bound["netconf-tls"][1]


@dataclass(frozen=True)
class FleetSummary:
    """The outcome of a fleet run; ``to_json`` for ``--json``, ``lines`` for people."""

    count: int
    enrolled: int
    configured: int
    failed: dict[str, int]
    failures: list[dict[str, str]]
    setup_seconds: float
    enroll_seconds: float | None  # until the last device enrolled
    configure_seconds: float | None  # until the last device was configured
    enroll_latency: dict[str, float]  # one device's enrollment, from its start
    devices: dict[str, int] = field(default_factory=dict)  # serial -> NETCONF/TLS port

    @property
    def ok(self) -> bool:
        return self.enrolled == self.count and not self.failed

    def rate(self, done: int, seconds: float | None) -> float | None:
        return done / seconds if seconds else None

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "enrolled": self.enrolled,
            "configured": self.configured,
            "failed": self.failed,
            "failures": self.failures,
            "setup_seconds": round(self.setup_seconds, 3),
            "enroll_seconds": _rounded(self.enroll_seconds),
            "configure_seconds": _rounded(self.configure_seconds),
            "enroll_per_second": _rounded(self.rate(self.enrolled, self.enroll_seconds)),
            "configure_per_second": _rounded(self.rate(self.configured, self.configure_seconds)),
            "enroll_latency": {k: round(v, 3) for k, v in self.enroll_latency.items()},
            "devices": self.devices,
        }

    def lines(self) -> list[str]:
        out = [
            f"fleet of {self.count}: {self.enrolled} enrolled, {self.configured} configured, "
            f"{sum(self.failed.values())} failed (set-up {self.setup_seconds:.1f} s)"
        ]
        if self.enroll_seconds is not None:
            rate = self.rate(self.enrolled, self.enroll_seconds) or 0.0
            out.append(f"  all enrolled after {self.enroll_seconds:.1f} s ({rate:.1f}/s)")
        if self.configure_seconds is not None:
            rate = self.rate(self.configured, self.configure_seconds) or 0.0
            out.append(f"  all configured after {self.configure_seconds:.1f} s ({rate:.1f}/s)")
        if self.enroll_latency:
            lat = self.enroll_latency
            out.append(
                f"  one enrollment: p50 {lat['p50']:.2f} s, p95 {lat['p95']:.2f} s, "
                f"max {lat['max']:.2f} s"
            )
        for reason, n in sorted(self.failed.items()):
            out.append(f"  failed {reason}: {n}")
        out.extend(f"  {f['serial']}: {f['reason']}: {f['message']}" for f in self.failures)
        return out


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _latency(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "p50": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "max": ordered[-1],
    }


def _copy_factory_files(source: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in FACTORY_FILES:
        shutil.copyfile(source / name, folder / name)
    (folder / IDEVID_KEY_FILE).chmod(_KEY_MODE)


class Fleet:
    """``sources`` (IDevID folders) as virtual devices with their folders in ``workdir``.

    ``config`` is every device's configuration (its ``netconf_tls`` address, port 0 for a free
    one per device, and the agent's keys); ``concurrency`` devices bootstrap at once.
    """

    def __init__(
        self,
        sources: Sequence[Path],
        workdir: Path,
        config: DeviceConfig,
        *,
        concurrency: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not config.netconf_tls:
            raise ConfigError("a fleet device needs a NETCONF/TLS address for the hand-off")
        # NETCONF/SSH and RESTCONF load their servers with the first client, and a failure
        # there ends a device's run (DeviceServer.serve), which the fleet does not watch.
        extra = [
            name
            for name, on in (("NETCONF/SSH", config.netconf_ssh), ("RESTCONF", config.restconf))
            if on
        ]
        if extra:
            raise ConfigError(f"a fleet device serves NETCONF/TLS only, not {' or '.join(extra)}")
        if concurrency < 1:
            raise ConfigError("--concurrency must be at least 1")
        self.sources = list(sources)
        self.workdir = workdir
        self.config = config
        self.devices: list[VirtualDevice] = []
        self._slots = asyncio.Semaphore(concurrency)
        self._clock = clock
        self._began = clock()
        self._setup_seconds = 0.0
        self._settled = asyncio.Event()  # every device enrolled or failed
        self._configured = asyncio.Event()  # every enrolled device configured

    def elapsed(self) -> float:
        return self._clock() - self._began

    # -- set-up ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Build every device on one schema and open its listener; nothing bootstraps yet."""
        self._began = self._clock()
        schema = device_schema(self.workdir, self.config)
        agent_config = self.config.agent_config()
        for source in self.sources:
            folder = self.workdir / source.name
            await asyncio.to_thread(_copy_factory_files, source, folder)
            server = DeviceServer(
                folder, self.config, schema=schema, agent_store=MemoryAgentStore()
            )
            device = VirtualDevice(source.name, server)
            device.agent = PledgeAgent(server, agent_config, on_enrolled=self._enrolled(device))
            device.serial = device.agent.pledge.serial
            server.datastores.subscribe(self._watcher(device))
            self.devices.append(device)
            await server.start()
        # The schema and the devices are long-lived object graphs: keep the cyclic garbage
        # collector from walking them again and again.
        settle_heap()
        self._setup_seconds = self.elapsed()

    def _enrolled(self, device: VirtualDevice) -> Callable[[str, bool], None]:
        def enrolled(serial: str, already: bool) -> None:
            device.enrolled_at = self.elapsed()
            device.already = already

        return enrolled

    def _watcher(self, device: VirtualDevice) -> Callable[[Datastore, Tree], None]:
        def changed(ds: Datastore, tree: Tree) -> None:
            if ds is Datastore.STARTUP and tree and device.configured_at is None:
                device.configured_at = self.elapsed()
                self._check_configured()

        return changed

    def _check_configured(self) -> None:
        if self._settled.is_set() and all(
            d.configured_at is not None for d in self.devices if d.enrolled_at is not None
        ):
            self._configured.set()

    # -- the run ---------------------------------------------------------------------------

    async def run(self, *, timeout: float, handoff_wait: float) -> FleetSummary:
        """Bootstrap every device (``concurrency`` at a time) within ``timeout`` seconds, then
        wait up to ``handoff_wait`` seconds for the enrolled ones to be configured."""
        self._began = self._clock()
        runs = [asyncio.create_task(self._bootstrap(d)) for d in self.devices]
        _, pending = await asyncio.wait(runs, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for device in self.devices:
            if device.enrolled_at is None and device.failure is None:
                device.failure = ("timeout", f"not enrolled within {timeout:g} s")
        self._settled.set()
        self._check_configured()
        if handoff_wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._configured.wait(), handoff_wait)
        return self.summary()

    async def _bootstrap(self, device: VirtualDevice) -> None:
        async with self._slots:
            device.started_at = self.elapsed()
            try:
                await device.agent.start()
                await device.agent.wait()
            except ZerotouchError as exc:
                device.failure = (exc.reason, exc.one_line())
                return
            state = device.agent.state
            if device.enrolled_at is not None:
                return
            error = state.last_error
            device.failure = (
                (error.reason, error.message)
                if error is not None
                else ("failed", f"bootstrap ended in phase {state.phase}")
            )

    def progress(self) -> str:
        enrolled = sum(1 for d in self.devices if d.enrolled_at is not None)
        configured = sum(1 for d in self.devices if d.configured_at is not None)
        failed = sum(1 for d in self.devices if d.failure is not None)
        return (
            f"{self.elapsed():7.1f} s: enrolled {enrolled}/{len(self.devices)}, configured "
            f"{configured}, failed {failed}"
        )

    def summary(self) -> FleetSummary:
        enrolled = [d for d in self.devices if d.enrolled_at is not None]
        configured = [d for d in self.devices if d.configured_at is not None]
        failed = [d for d in self.devices if d.failure is not None]
        latencies = [
            d.enrolled_at - d.started_at
            for d in enrolled
            if d.enrolled_at is not None and d.started_at is not None and not d.already
        ]
        return FleetSummary(
            count=len(self.devices),
            enrolled=len(enrolled),
            configured=len(configured),
            failed=dict(Counter(d.failure[0] for d in failed if d.failure is not None)),
            failures=[
                {"serial": d.serial, "reason": d.failure[0], "message": d.failure[1]}
                for d in failed[:_SHOWN_FAILURES]
                if d.failure is not None
            ],
            setup_seconds=self._setup_seconds,
            enroll_seconds=max((d.enrolled_at or 0.0 for d in enrolled), default=None),
            configure_seconds=max((d.configured_at or 0.0 for d in configured), default=None),
            enroll_latency=_latency(latencies),
            devices={d.serial: d.port for d in self.devices if "netconf-tls" in d.server.bound},
        )

    async def close(self) -> None:
        for device in self.devices:
            await device.agent.close()
        await asyncio.gather(*(d.server.close() for d in self.devices), return_exceptions=True)

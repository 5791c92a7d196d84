"""Runs the sans-IO discovery machine (``roles/discovery.py``, RFC 8995 §4.1.1) with real
finders: each ``Search`` goes to the finder of its method (``FINDERS``), each ``Try`` to
the caller's attempt (the pledge machine through one candidate), each ``Wait`` sleeps.
The device agent and ``zerotouch pledge enroll`` share it; what they show of it goes
through an ``Observer``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from zerotouch_plugin.config import AgentConfig
from zerotouch_plugin.errors import ZerotouchError
from zerotouch_plugin.roles.discovery import (
    Candidate,
    Discovery,
    DiscoveryAction,
    DiscoveryConfig,
    GiveUp,
    Method,
    Search,
    Try,
    Wait,
)
from zerotouch_plugin.roles.pledge import RetryPolicy
from zerotouch_plugin.services.discovery import Finder
from zerotouch_plugin.services.discovery.links import links
from zerotouch_plugin.services.discovery.vendor import UrlFinder

__all__ = ["FINDERS", "Observer", "discovery_machine", "link_names", "run_discovery"]

log = logging.getLogger(__name__)

_ADDRESS_POLL = 0.25  # seconds between looks for a local address


class _OnLinks:
    """One method's finders on several links, searching at once."""

    def __init__(self, method: Method, finders: Sequence[Finder]) -> None:
        self.method = method
        self.finders = tuple(finders)

    async def find(self, *, timeout: float) -> Sequence[Candidate]:
        found = await asyncio.gather(*(f.find(timeout=timeout) for f in self.finders))
        return [candidate for batch in found for candidate in batch]


def _grasp(config: AgentConfig, interfaces: Sequence[str]) -> Finder:
    from zerotouch_plugin.services.discovery.grasp import GraspFinder

    return _OnLinks(Method.GRASP, [GraspFinder(name) for name in interfaces])


def _mdns(config: AgentConfig, interfaces: Sequence[str]) -> Finder:
    from zerotouch_plugin.services.discovery.mdns import MdnsFinder  # zeroconf: only if used

    return _OnLinks(Method.MDNS, [MdnsFinder(name) for name in interfaces])


def _dns_sd(config: AgentConfig, interfaces: Sequence[str]) -> Finder:
    from zerotouch_plugin.services.discovery.dnssd import DnsSdFinder  # dnspython: only if used

    return DnsSdFinder()


def _vendor(config: AgentConfig, interfaces: Sequence[str]) -> Finder:
    urls = (config.vendor_registrar,) if config.vendor_registrar else ()
    return UrlFinder(Method.VENDOR, urls)


# discovery method -> its finder, given the configuration and the addressed links
# (a table, so a new method is one entry). GRASP and mDNS search every link; unicast
# DNS-SD asks the servers of /etc/resolv.conf.
FINDERS: Mapping[Method, Callable[[AgentConfig, Sequence[str]], Finder]] = {
    Method.CONFIGURED: lambda config, _: UrlFinder(Method.CONFIGURED, config.registrars),
    Method.GRASP: _grasp,
    Method.MDNS: _mdns,
    Method.DNS_SD: _dns_sd,
    Method.VENDOR: _vendor,
}

# Methods that need a local address on a link first (RFC 8995 §4.1).
_ON_LINK = frozenset({Method.GRASP, Method.MDNS, Method.DNS_SD})


def link_names(interface: str | None) -> list[str]:
    """The links to search: ``interface``, else every up interface but loopback, each
    only once it has a usable local address (IPv6 link-local, or IPv4)."""
    return [link.name for link in links(interface) if link.addressed]


def discovery_machine(config: AgentConfig, *, random_bytes: Callable[[int], bytes]) -> Discovery:
    """The machine of ``config``'s methods; a failed candidate is set aside for
    ``bootstrap_retry_delay`` doubled per failure up to ``bootstrap_max_delay``; it gives up
    after ``bootstrap_rounds`` cycles (0: never)."""
    return Discovery(
        DiscoveryConfig(
            tuple(Method(name) for name in config.discovery_methods),
            timeout=config.discovery_timeout,
            timeouts={Method(m): t for m, t in config.discovery_timeouts.items()},
            backoff=RetryPolicy(
                base_delay=config.bootstrap_retry_delay, max_delay=config.bootstrap_max_delay
            ),
            cycles=config.bootstrap_rounds,
        ),
        random_bytes=random_bytes,
    )


class Observer(Protocol):
    """What a front end shows of a discovery run."""

    def changed(self, machine: Discovery) -> None: ...

    def search_started(self, action: Search) -> None: ...

    def candidate_found(self, candidate: Candidate) -> None: ...

    def no_local_address(self, where: str) -> None: ...

    def waiting(self, action: Wait) -> None: ...


Attempt = Callable[[Candidate], Awaitable[ZerotouchError | None]]


class _Run:
    def __init__(
        self,
        machine: Discovery,
        config: AgentConfig,
        attempt: Attempt,
        observer: Observer,
        sleep: Callable[[float], Awaitable[object]],
        now: Callable[[], Any],
    ) -> None:
        self.machine = machine
        self.config = config
        self.attempt = attempt
        self.observer = observer
        self.sleep = sleep
        self.now = now

    async def search(self, action: Search) -> DiscoveryAction:
        """One method searches for at most its timeout; a link method first needs a local
        address (RFC 8995 §4.1), waited for within the same timeout."""
        self.observer.search_started(action)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + action.timeout
        names = await self._addressed_links(deadline) if action.method in _ON_LINK else []
        found: Sequence[Candidate] = ()
        if names or action.method not in _ON_LINK:
            search = FINDERS[action.method](self.config, names)
            try:
                found = await search.find(timeout=max(0.0, deadline - loop.time()))
            except Exception:  # a finder must not raise; one that does must not stop the run
                log.exception("discovery: the %s search failed", action.method)
        known = {status.candidate for status in self.machine.candidates}
        self.machine.found(action.method, found)
        for status in self.machine.candidates:
            candidate = status.candidate
            if candidate in known:
                continue
            log.info(
                "discovery: %s %s at %s (%s)",
                candidate.method,
                candidate.role,
                candidate.where,
                candidate.source,
            )
            self.observer.changed(self.machine)
            self.observer.candidate_found(candidate)
        return self.machine.search_done(action.method, now=self.now())

    async def _addressed_links(self, deadline: float) -> list[str]:
        loop = asyncio.get_running_loop()
        interface = self.config.interface
        names = link_names(interface)
        if not names:
            where = f"interface {interface}" if interface else "any interface but loopback"
            log.warning("discovery: no local address on %s yet; waiting", where)
            self.observer.no_local_address(where)
        while not names and loop.time() < deadline:
            await self.sleep(min(_ADDRESS_POLL, max(0.0, deadline - loop.time())))
            names = link_names(interface)
        return names

    async def try_(self, action: Try) -> DiscoveryAction | None:
        error = await self.attempt(action.candidate)
        if error is None:
            self.machine.enrolled(action.candidate, now=self.now())
            return None
        return self.machine.candidate_failed(action.candidate, error, now=self.now())

    async def wait(self, action: Wait) -> DiscoveryAction:
        self.observer.waiting(action)
        await self.sleep(action.seconds)
        return self.machine.wait_over(now=self.now())


async def run_discovery(
    machine: Discovery,
    config: AgentConfig,
    *,
    attempt: Attempt,
    observer: Observer,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    now: Callable[[], Any],
) -> GiveUp | None:
    """The machine's actions one after another: None once a candidate enrolled the device
    (``machine.enrolled_by``), or the ``GiveUp`` after ``bootstrap_rounds`` cycles."""
    run = _Run(machine, config, attempt, observer, sleep, now)
    handlers: Mapping[type, Callable[[Any], Awaitable[DiscoveryAction | None]]] = {
        Search: run.search,
        Try: run.try_,
        Wait: run.wait,
    }
    action: DiscoveryAction | None = machine.start(now=now())
    while action is not None:
        observer.changed(machine)
        if isinstance(action, GiveUp):
            return action
        action = await handlers[type(action)](action)
    observer.changed(machine)
    return None

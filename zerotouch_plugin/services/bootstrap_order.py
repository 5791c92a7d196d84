"""BRSKI and SZTP in one configured order (``bootstrap_order``): each protocol's agent runs
its rounds in turn until one onboards the device; a cycle in which all failed is followed by
a pause, then the next cycle.

The agents are built afresh for every turn (an agent runs once), and the one that succeeded
stays running: the pledge agent renews its LDevID from there. A device that one protocol
already onboarded starts with that protocol, which finds its earlier outcome and stops
there, so that a restart never onboards the device again by the other one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from zerotouch_plugin.device.host import PluginHost
from zerotouch_plugin.roles.bootstrap import BootstrapPath, BootstrapState, Phase
from zerotouch_plugin.services.pledge_agent import read_key
from zerotouch_plugin.services.sztp_agent import COMPLETE_KEY

__all__ = ["BootstrapAgent", "OrderedBootstrap", "onboarded_by"]

log = logging.getLogger("zerotouch.bootstrap")


class BootstrapAgent(Protocol):
    """What the pledge agent (BRSKI) and the SZTP agent both offer."""

    state: BootstrapState

    async def start(self) -> None: ...

    async def wait(self) -> None: ...

    async def close(self) -> None: ...


AgentFactory = Callable[[], BootstrapAgent]


def onboarded_by(host: PluginHost) -> BootstrapPath | None:
    """The protocol that already onboarded the device: BRSKI when it holds a domain
    identity, SZTP when the SZTP agent recorded its completion; None for neither."""
    if host.installed_identity() is not None:
        return BootstrapPath.BRSKI
    if read_key(host.agent_store(), COMPLETE_KEY) is not None:
        return BootstrapPath.SZTP
    return None


class OrderedBootstrap:
    """Runs ``(name, factory)`` agents one after the other until one is enrolled."""

    def __init__(
        self,
        agents: Sequence[tuple[str, AgentFactory]],
        *,
        pause: float,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        onboarded: Callable[[], str | None] = lambda: None,
    ) -> None:
        if not agents:
            raise ValueError("bootstrap_order needs at least one protocol")
        self.agents = tuple(agents)
        self.pause = pause
        self._onboarded = onboarded
        self.current: BootstrapAgent | None = None
        self.succeeded: str | None = None
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bootstrap-order")

    async def wait(self) -> None:
        """Until a protocol onboarded the device; for tests and tools."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.current is not None:
            await self.current.close()
            self.current = None

    async def _run(self) -> None:
        done = self._onboarded()
        order = sorted(self.agents, key=lambda agent: agent[0] != done)  # stable: rest as is
        while True:
            for name, factory in order:
                agent = factory()
                self.current = agent
                await agent.start()
                await agent.wait()
                if agent.state.phase is Phase.ENROLLED:
                    self.succeeded = name
                    return
                log.info("bootstrap by %s did not succeed; trying the next protocol", name)
                self.current = None
                await agent.close()
            await self._sleep(self.pause)

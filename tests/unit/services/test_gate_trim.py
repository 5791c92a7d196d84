"""When the gate gives ended connections' memory back: once the listener has gone quiet."""

from __future__ import annotations

import asyncio

import pytest

from zerotouch_plugin.config import ConnectionLimits
from zerotouch_plugin.services import _gate

DELAY = 0.02


@pytest.fixture
def collections(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The loop time of each collection (the real one still runs)."""
    seen: list[float] = []
    real = _gate.return_freed_memory

    def counted() -> None:
        seen.append(asyncio.get_running_loop().time())
        real()

    monkeypatch.setattr(_gate, "_TRIM_DELAY", DELAY)
    monkeypatch.setattr(_gate, "return_freed_memory", counted)
    return seen


def gate_with(open_connections: int) -> _gate.ConnectionGate:
    gate = _gate.ConnectionGate("registrar", ConnectionLimits(max_connections=1000))
    for index in range(open_connections):
        assert gate.admit(f"10.0.0.{index % 200}")
    return gate


def end(gate: _gate.ConnectionGate, count: int) -> None:
    for index in range(count):
        gate.release(f"10.0.0.{index % 200}")


def test_a_flood_that_ended_is_collected_once(collections: list[float]) -> None:
    async def run() -> None:
        gate = gate_with(200)
        end(gate, 200)
        await asyncio.sleep(DELAY * 10)
        assert len(collections) == 1  # one collection for the whole burst of ended connections

    asyncio.run(run())


def test_a_busy_listener_waits_until_it_is_quiet(collections: list[float]) -> None:
    async def run() -> None:
        gate = gate_with(100)
        end(gate, _gate._TRIM_AFTER)  # enough ended, but 68 still open: a burst goes on
        await asyncio.sleep(DELAY * 10)
        assert collections == []
        end(gate, 100 - _gate._TRIM_AFTER - _gate._TRIM_QUIET)  # quiet now
        await asyncio.sleep(DELAY * 5)
        assert len(collections) == 1

    asyncio.run(run())


def test_a_listener_that_never_goes_quiet_still_collects(
    collections: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_gate, "_TRIM_LONGEST", DELAY * 4)

    async def run() -> None:
        gate = gate_with(100)
        end(gate, _gate._TRIM_AFTER)
        await asyncio.sleep(DELAY * 10)
        assert len(collections) == 1

    asyncio.run(run())

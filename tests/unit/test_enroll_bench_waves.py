"""benchmarks/enroll_bench.py's burst bookkeeping: latencies keyed by pledge index, the first
``concurrency`` pledges started together before any other, failures counted by reason, and
the first wave's figures told apart from the others'."""

from __future__ import annotations

import asyncio
import importlib.util
import queue
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "enroll_bench.py"


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("enroll_bench_under_test", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_burst_starts_the_first_wave_together_and_keys_latencies_by_pledge(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[int] = []
    running = 0
    most = 0

    async def enroll(folder: Path, url: str, **_kwargs: object) -> None:
        nonlocal running, most
        index = int(folder.name)
        started.append(index)
        running += 1
        most = max(most, running)
        try:
            await asyncio.sleep(0.005 * (1 + index % 3))
            if index == 5:
                raise RuntimeError("refused")
        finally:
            running -= 1

    monkeypatch.setattr(bench, "enroll", enroll)
    folders = [Path(str(index)) for index in range(10)]
    _, latencies, failures, cpus = asyncio.run(bench.burst(folders, ["https://r"], 3))
    assert started[:3] == [0, 1, 2] and sorted(started) == list(range(10))
    assert most == 3
    assert set(latencies) == set(range(10)) - {5}
    assert failures == {"RuntimeError: refused": 1}
    assert all(latency >= 0.005 for latency in latencies.values())
    assert len(cpus) == 1 and cpus[0] >= 0


@pytest.mark.parametrize(("concurrency", "processes"), [(5, 2), (7, 3), (4, 4), (6, 1)])
def test_pledges_shared_among_processes_start_the_same_first_wave(
    bench: ModuleType, concurrency: int, processes: int
) -> None:
    folders = [Path(str(index)) for index in range(20)]
    shares = bench._shares(folders, concurrency, processes)
    assert len(shares) == processes
    assert sorted(index for share, _ in shares for index, _folder in share) == list(range(20))
    assert sum(limit for _, limit in shares) == concurrency
    # each process's gate lets its first ``limit`` pledges in at once: together, pledges
    # 0 .. concurrency-1, the first wave the report tells apart
    first = {index for share, limit in shares for index, _folder in share[:limit]}
    assert first == set(range(concurrency))


def test_waves_tell_the_first_concurrency_pledges_from_the_others(bench: ModuleType) -> None:
    latencies = {0: 1.0, 1: 3.0, 2: 0.5, 3: 0.25, 4: 0.75}
    assert bench.waves(latencies, 2) == (2000.0, 3000.0, 750.0)
    assert bench.waves({3: 0.25}, 2) == (None, None, 250.0)  # every first-wave pledge failed
    assert bench.waves({0: 1.0}, 2) == (1000.0, 1000.0, None)  # no pledge after the first wave


def test_a_pledge_process_that_ended_without_its_result_fails_the_burst(
    bench: ModuleType,
) -> None:
    class Ended:
        exitcode = 1

    class Running:
        exitcode = None

    results: queue.Queue[object] = queue.Queue()
    results.put(({0: 0.5}, {}, 0.01))  # the first process reported, the second crashed
    with pytest.raises(RuntimeError, match="exit code 1"):
        bench._collect(results, [Running(), Ended()])
    results.put(({1: 0.5}, {}, 0.01))
    assert bench._collect(results, [Running()]) == [({1: 0.5}, {}, 0.01)]


def test_compare_db_alternates_the_set_ups_and_checks_the_median_ratio(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--compare-db: SQLite with one registrar and PostgreSQL with at least two, the first
    of each pair alternating; --check fails on a median ratio below 1."""
    runs: list[tuple[str | None, int]] = []
    rates = {None: 100.0, "postgresql://x": 90.0}

    def run_once(args: object) -> object:
        db, registrars = args.db, args.registrars  # type: ignore[attr-defined]
        runs.append((db, registrars))
        return type("R", (), {"enrollments_per_s": rates[db], "failures": {}})()

    monkeypatch.setattr(bench, "run_once", run_once)
    argv = ["enroll_bench.py", "--compare-db", "postgresql://x", "--pairs", "3", "--check"]
    monkeypatch.setattr(sys, "argv", argv)
    assert bench.main() == 1
    sqlite, pg = (None, 1), ("postgresql://x", 2)
    assert runs == [sqlite, pg, pg, sqlite, sqlite, pg]
    out = capsys.readouterr()
    assert "median of 3 pairs: 0.90" in out.out
    assert "PostgreSQL 0.90 times SQLite" in out.err
    rates["postgresql://x"] = 100.0
    assert bench.main() == 0

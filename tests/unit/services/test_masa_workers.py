"""The MASA's request work (verify, decide, sign, commit) on SQLite runs on one thread of its
own: SQLite takes one write transaction per file at a time, so more threads would only wait on
the lock and the GIL (services/masa_app.py). Real TLS on 127.0.0.1, a real SQLite file."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from tests.support.masa_process import post, write_vendor_folder
from tests.support.masa_world import World
from zerotouch_plugin.services import masa_app

REQUESTS = 6


@pytest.fixture
def world() -> World:
    return World(now=datetime.now(UTC))


@pytest.fixture
async def masa(world: World, tmp_path: Path) -> AsyncIterator[tuple[masa_app.MasaContext, str]]:
    folder = write_vendor_folder(world, tmp_path / "V")
    ctx = masa_app.load_context(folder, masa_app.load_config_for(folder))
    runner, port = await masa_app.start_masa(ctx, "127.0.0.1", 0)
    try:
        yield ctx, f"https://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        ctx.close()


async def test_concurrent_voucher_requests_run_on_one_thread_on_sqlite(
    world: World, masa: tuple[masa_app.MasaContext, str]
) -> None:
    ctx, url = masa
    threads: set[int] = set()

    def on_begin(_conn: Any) -> None:
        threads.add(threading.get_ident())

    bodies = []
    for index in range(REQUESTS):
        serial = f"WORKER-{index}"
        nonce = f"bm9uY2Utbm9uY2Ut{index:04d}"
        pvr = world.pvr(serial=serial, nonce=nonce)
        bodies.append(world.rvr(pvr, serial=serial, nonce=nonce))
    event.listen(ctx.repo.db.engine, "begin", on_begin)
    try:
        answers = await asyncio.gather(*(post(url, body, trust=world.vendor_ca) for body in bodies))
    finally:
        event.remove(ctx.repo.db.engine, "begin", on_begin)
    assert [status for status, _, _ in answers] == [200] * REQUESTS
    assert len(threads) == 1
    assert threading.get_ident() not in threads  # off the event loop
    assert {len(ctx.repo.vouchers(f"WORKER-{i}")) for i in range(REQUESTS)} == {1}

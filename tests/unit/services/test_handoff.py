"""The day-0 hand-off worker against its own bugs: a real worker on a real SQLite database,
with a failing function put in at the one-attempt step (``_push``) or the queue read.

A bug must not leave the hand-off leased and retried forever uncounted, nor stop the worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.unit.store.registrar.support import NOW, enrolled, open_repo, set_config
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.config import RegistrarConfig
from zerotouch_plugin.services.handoff import HandoffWorker
from zerotouch_plugin.store.registrar import HandoffJob, HandoffRow, RegistrarRepository

CONFIG = RegistrarConfig(
    handoff_attempts=2, handoff_backoff=0.05, handoff_max_backoff=0.05, handoff_poll=0.05
)


class BuggyPush(HandoffWorker):
    """Every attempt fails with an exception that is not a ZerotouchError: a bug."""

    async def _push(self, job: HandoffJob) -> None:
        raise KeyError("no-such-key")


class GoodPush(HandoffWorker):
    """Every attempt succeeds (the device side is not what these tests are about)."""

    async def _push(self, job: HandoffJob) -> None:
        return None


class BrokenOnce(RegistrarRepository):
    """The real repository whose first look at the queue fails with a bug."""

    failed = False

    def due_handoffs(self, now: datetime, limit: int = 64) -> tuple[list[str], datetime | None]:
        if not self.failed:
            self.failed = True
            raise AttributeError("'NoneType' object has no attribute 'serial'")
        return super().due_handoffs(now, limit)


def queued(tmp_path: Path, repo_class: type[RegistrarRepository]) -> RegistrarRepository:
    db, _ = open_repo(f"sqlite:///{tmp_path / 'registrar.db'}")
    repo = repo_class(db)
    enrolled(repo, "SN1")
    set_config(repo, None, "default")
    repo.queue_handoff("SN1", state="pending", host="127.0.0.1", port=830, error=None, now=NOW)
    return repo


def start(worker_class: type[HandoffWorker], repo: RegistrarRepository) -> HandoffWorker:
    now = datetime.now(UTC) - timedelta(minutes=1)
    ca = certs.make_ca("Domain CA", now=now)
    worker = worker_class(
        repo,
        domain_ca=ca,
        identity=certs.issue_client(ca, "zerotouch-registrar", now=now),
        config=CONFIG,
    )
    worker.start()
    return worker


async def settled(repo: RegistrarRepository, state: str, timeout: float = 10) -> HandoffRow:
    deadline = time.monotonic() + timeout
    while True:
        row = await asyncio.to_thread(repo.handoff, "SN1")
        if row.state == state:
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"hand-off not {state} within {timeout} s: {row}")
        await asyncio.sleep(0.02)


async def test_a_bug_in_an_attempt_is_a_counted_failed_attempt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo = queued(tmp_path, RegistrarRepository)
    worker = start(BuggyPush, repo)
    try:
        with caplog.at_level(logging.ERROR, "zerotouch_plugin.services.handoff"):
            row = await settled(repo, "failed")
    finally:
        await worker.close()
    assert row.attempts == 2  # each attempt counted, up to handoff_attempts
    assert row.error == "attempt 2/2: internal-error: KeyError in the registrar (see its log)"
    tracebacks = [r for r in caplog.records if r.exc_info and "internal error" in r.message]
    assert tracebacks and "no-such-key" in str(tracebacks[0].exc_info[1])  # type: ignore[index]


async def test_the_worker_loop_survives_a_bug_and_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo = queued(tmp_path, BrokenOnce)
    worker = start(GoodPush, repo)
    try:
        with caplog.at_level(logging.ERROR, "zerotouch_plugin.services.handoff"):
            row = await settled(repo, "applied")
    finally:
        await worker.close()
    assert row.attempts == 1 and row.error is None
    assert any(r.exc_info and "internal error in the worker" in r.message for r in caplog.records)

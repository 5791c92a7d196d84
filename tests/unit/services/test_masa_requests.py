"""The MASA's voucher and audit-log handlers (services/masa_app.py) on a real SQLite file:
how many transactions each request takes, and that a refusal writes nothing."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from tests.support.masa_process import write_vendor_folder
from tests.support.masa_world import NONCE, World, der
from zerotouch_plugin.errors import DigestMismatch, PolicyRefused, SignatureInvalid
from zerotouch_plugin.roles.masa import MasaRules, domain_id
from zerotouch_plugin.services import masa_app
from zerotouch_plugin.store.db import Database


@pytest.fixture
def world() -> World:
    return World(now=datetime.now(UTC))


@pytest.fixture
def ctx(world: World, tmp_path: Path) -> Iterator[masa_app.MasaContext]:
    folder = write_vendor_folder(world, tmp_path / "V")
    context = masa_app.load_context(folder, masa_app.load_config_for(folder))
    yield context
    context.close()


@contextmanager
def transactions(ctx: masa_app.MasaContext) -> Iterator[list[int]]:
    """Counts the transactions begun on the MASA's database inside the block."""
    begun: list[int] = []

    def on_begin(_conn: Any) -> None:
        begun.append(1)

    event.listen(ctx.repo.db.engine, "begin", on_begin)
    try:
        yield begun
    finally:
        event.remove(ctx.repo.db.engine, "begin", on_begin)


def test_a_voucher_is_verified_decided_and_stored_in_one_transaction(
    world: World, ctx: masa_app.MasaContext
) -> None:
    with transactions(ctx) as begun:
        issued, pinned = masa_app.issue_voucher(ctx, world.good_rvr(), None, world.now)
    assert len(begun) == 1
    assert (issued.serial, issued.nonce) == (world.serial, NONCE)
    assert pinned == der(world.domain().ca.cert)


def test_a_refused_voucher_request_leaves_no_device_behind(
    world: World, ctx: masa_app.MasaContext
) -> None:
    tampered = world.good_rvr().replace(b'"proximity"', b'"proximitx"', 1)
    with pytest.raises((DigestMismatch, SignatureInvalid)):
        masa_app.issue_voucher(ctx, tampered, None, world.now)
    with ctx.repo.db.read() as s:
        assert s.connection().execute(text("SELECT count(*) FROM masa_devices")).scalar() == 0


def test_the_audit_log_is_answered_from_one_transaction(
    world: World, ctx: masa_app.MasaContext
) -> None:
    body = world.good_rvr()
    masa_app.issue_voucher(ctx, body, None, world.now)
    with transactions(ctx) as begun:
        log = masa_app.audit_log_for(ctx, body, world.domain().registrar.cert, world.now)
    assert len(begun) == 1
    assert [event["nonce"] for event in log["events"]] == [NONCE]  # type: ignore[attr-defined]


def test_a_claim_read_under_the_lock_decides_a_claims_policy(
    world: World, ctx: masa_app.MasaContext
) -> None:
    """The claim comes with the locked device state: without it the device is refused, with
    it the voucher says its ownership was verified (RFC 8366 §5.3)."""
    claims = dataclasses.replace(ctx, rules=MasaRules(policy="claims"))
    with pytest.raises(PolicyRefused, match="not claimed"):
        masa_app.issue_voucher(claims, world.good_rvr(), None, world.now)
    ca = world.domain().ca.cert
    claims.repo.claim(world.serial, domain_id=domain_id(ca), domain_cert=der(ca), now=world.now)
    issued, _ = masa_app.issue_voucher(claims, world.good_rvr(), None, world.now)
    assert issued.assertion == "verified"


def test_a_masa_on_sqlite_does_not_import_the_postgresql_dialect() -> None:
    """40 ms of every start-up: the dialect is imported when a MASA opens PostgreSQL."""
    code = (
        "import sys, zerotouch_plugin.cli.masa, zerotouch_plugin.services.masa_app\n"
        "print('sqlalchemy.dialects.postgresql' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_a_voucher_and_its_audit_log_take_no_orm_session(
    world: World, ctx: masa_app.MasaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both requests run their statements on a plain connection (Database.write/snapshot):
    the ORM session's bookkeeping was a fifth of the MASA's time per enrollment."""

    def no_session() -> None:
        raise AssertionError("an ORM session on the request path")

    monkeypatch.setattr(Database, "session", no_session)
    monkeypatch.setattr(Database, "read", no_session)
    body = world.good_rvr()
    masa_app.issue_voucher(ctx, body, None, world.now)
    log = masa_app.audit_log_for(ctx, body, world.domain().registrar.cert, world.now)
    assert len(log["events"]) == 1  # type: ignore[arg-type]
    assert ctx.repo.domain_certs() == [der(world.domain().ca.cert)]

"""Datastores: validation before commit, atomic startup persistence, locks (device/datastore.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from zerotouch_plugin.device.datastore import STARTUP_FILE, Datastore, Datastores, write_atomically
from zerotouch_plugin.device.edit import apply_edit
from zerotouch_plugin.device.schema import DeviceSchema
from zerotouch_plugin.errors import (
    InUse,
    LockDenied,
    LockNotHeld,
    SchemaError,
    StorageError,
    UnsupportedOperation,
)

CONFIG = {
    "ietf-system:system": {"hostname": "dev1"},
    "ietf-interfaces:interfaces": {
        "interface": [{"name": "eth0", "type": "iana-if-type:ethernetCsmacd"}]
    },
}


async def test_commit_running_and_copy_to_startup_survives_restart(
    schema: DeviceSchema, tmp_path: Path
) -> None:
    ds = Datastores(schema, tmp_path)
    assert ds.get(Datastore.RUNNING) == {}
    await ds.commit(Datastore.RUNNING, CONFIG, session_id=1)
    assert not (tmp_path / STARTUP_FILE).exists()  # running alone is not persisted
    await ds.copy(Datastore.RUNNING, Datastore.STARTUP, session_id=1)
    assert json.loads((tmp_path / STARTUP_FILE).read_text()) == CONFIG
    again = Datastores(schema, tmp_path)
    assert again.get(Datastore.RUNNING) == CONFIG
    assert again.get(Datastore.STARTUP) == CONFIG


@pytest.mark.parametrize(
    ("bad", "path"),
    [
        ({"ietf-system:system": {"hostname": "-" * 300}}, "/ietf-system:system/hostname"),
        (
            {"ietf-interfaces:interfaces": {"interface": [{"name": "eth0"}]}},
            '/ietf-interfaces:interfaces/interface[name="eth0"]',
        ),
        (
            {
                "ietf-interfaces:interfaces": {
                    "interface": [{"name": "e", "type": "iana-if-type:nope"}]
                }
            },
            '/ietf-interfaces:interfaces/interface[name="e"]/type',
        ),
        (
            {"ietf-system:system": {"clock": {"timezone-utc-offset": 5000}}},
            "/ietf-system:system/clock/timezone-utc-offset",
        ),
    ],
)
async def test_invalid_commit_leaves_startup_byte_identical(
    schema: DeviceSchema, tmp_path: Path, bad: dict[str, object], path: str
) -> None:
    ds = Datastores(schema, tmp_path)
    await ds.commit(Datastore.STARTUP, CONFIG, session_id=1)
    before = (tmp_path / STARTUP_FILE).read_bytes()
    with pytest.raises(SchemaError) as err:
        await ds.commit(Datastore.STARTUP, bad, session_id=1)
    assert err.value.path == path
    assert (tmp_path / STARTUP_FILE).read_bytes() == before
    assert ds.get(Datastore.STARTUP) == CONFIG


async def test_modify_validates_and_test_only_does_not_commit(
    schema: DeviceSchema, tmp_path: Path
) -> None:
    ds = Datastores(schema, tmp_path)
    await ds.commit(Datastore.RUNNING, CONFIG, session_id=1)
    edit = {"ietf-system:system": {"location": "lab"}}
    new = await ds.modify(
        Datastore.RUNNING, lambda t: apply_edit(schema, t, edit), session_id=1, test_only=True
    )
    assert new["ietf-system:system"]["location"] == "lab"
    assert "location" not in ds.get(Datastore.RUNNING)["ietf-system:system"]
    version = ds.version(Datastore.RUNNING)
    with pytest.raises(SchemaError):
        await ds.modify(
            Datastore.RUNNING,
            lambda t: apply_edit(schema, t, {"ietf-system:system": {"hostname": "a..b"}}),
            session_id=1,
        )
    assert ds.version(Datastore.RUNNING) == version
    assert ds.get(Datastore.RUNNING) == CONFIG


async def test_locks_across_sessions(schema: DeviceSchema, tmp_path: Path) -> None:
    ds = Datastores(schema, tmp_path)
    ds.lock(Datastore.RUNNING, 1)
    with pytest.raises(LockDenied) as err:
        ds.lock(Datastore.RUNNING, 2)
    assert err.value.holder == 1
    with pytest.raises(InUse):
        await ds.commit(Datastore.RUNNING, CONFIG, session_id=2)
    await ds.commit(Datastore.RUNNING, CONFIG, session_id=1)
    with pytest.raises(LockNotHeld):
        ds.unlock(Datastore.RUNNING, 2)
    ds.release_session(1)
    assert ds.lock_holder(Datastore.RUNNING) is None
    await ds.commit(Datastore.RUNNING, {}, session_id=2)
    with pytest.raises(UnsupportedOperation):
        await ds.delete(Datastore.RUNNING, session_id=2)


async def test_operational_merges_published_state(schema: DeviceSchema, tmp_path: Path) -> None:
    ds = Datastores(schema, tmp_path)
    await ds.commit(Datastore.RUNNING, CONFIG, session_id=1)
    ds.publish_state(
        "ifs",
        {"ietf-interfaces:interfaces": {"interface": [{"name": "eth0", "oper-status": "up"}]}},
    )
    op = ds.get(Datastore.OPERATIONAL)
    assert op["ietf-interfaces:interfaces"]["interface"][0] == {
        "name": "eth0",
        "type": "iana-if-type:ethernetCsmacd",
        "oper-status": "up",
    }
    assert op["ietf-yang-library:yang-library"]["content-id"] == schema.content_id
    seen: list[Datastore] = []
    ds.subscribe(lambda d, _t: seen.append(d))
    await ds.commit(Datastore.RUNNING, {}, session_id=1)
    assert seen == [Datastore.RUNNING]


def test_memo_rebuilds_only_after_change(schema: DeviceSchema, tmp_path: Path) -> None:
    ds = Datastores(schema, tmp_path)
    calls: list[int] = []
    build = lambda tree: calls.append(1) or len(tree)  # noqa: E731
    ds.memo(Datastore.RUNNING, "k", build)
    ds.memo(Datastore.RUNNING, "k", build)
    assert calls == [1]
    ds.publish_state("x", {})  # operational changes, running does not
    ds.memo(Datastore.RUNNING, "k", build)
    assert calls == [1]
    for i in range(1000):  # client-chosen keys never grow the cache without bound
        ds.memo(Datastore.RUNNING, f"filter-{i}", build)
    assert len(ds._memo) <= 256


async def test_memo_rebuilds_after_commit(schema: DeviceSchema, tmp_path: Path) -> None:
    ds = Datastores(schema, tmp_path)
    assert ds.memo(Datastore.RUNNING, "k", len) == 0
    await ds.commit(Datastore.RUNNING, CONFIG, session_id=1)
    assert ds.memo(Datastore.RUNNING, "k", len) == 2


def test_atomic_write_leaves_no_temporary_and_stale_ones_are_cleaned(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    write_atomically(target, b"one")
    write_atomically(target, b"two")
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


def test_crash_mid_write_keeps_old_startup(schema: DeviceSchema, tmp_path: Path) -> None:
    (tmp_path / STARTUP_FILE).write_text(json.dumps(CONFIG))
    torn = tmp_path / f".{STARTUP_FILE}.tmp-{os.getpid() + 1}"
    torn.write_bytes(b'{"ietf-system:system": {"hostn')  # a writer killed before rename
    ds = Datastores(schema, tmp_path)
    assert ds.get(Datastore.STARTUP) == CONFIG
    assert not torn.exists()


def test_corrupt_or_invalid_startup_fails_closed(schema: DeviceSchema, tmp_path: Path) -> None:
    (tmp_path / STARTUP_FILE).write_text("{not json")
    with pytest.raises(StorageError, match="unreadable"):
        Datastores(schema, tmp_path)
    (tmp_path / STARTUP_FILE).write_text(json.dumps({"ietf-system:system": {"hostname": 7}}))
    with pytest.raises(StorageError, match="invalid"):
        Datastores(schema, tmp_path)

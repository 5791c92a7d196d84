"""Datastores: validation before commit, atomic startup persistence, locks (device/datastore.py)."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from zerotouch_plugin._files import stage
from zerotouch_plugin.device.datastore import STARTUP_FILE, Datastore, Datastores, write_atomically
from zerotouch_plugin.device.edit import apply_edit
from zerotouch_plugin.device.schema import DeviceSchema
from zerotouch_plugin.errors import (
    InUse,
    LockDenied,
    LockNotHeld,
    PayloadTooLarge,
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


def test_memo_is_bounded_by_the_size_of_its_replies(schema: DeviceSchema, tmp_path: Path) -> None:
    """Replies to 40 filters of 1 MiB each: the memo keeps the newest 16 MiB of them (a
    device with a large datastore would otherwise hold 256 large replies); a reply larger
    than the whole memo is built each time."""
    ds = Datastores(schema, tmp_path)
    mib = 1024 * 1024
    built: list[str] = []

    def reply(key: str, size: int) -> str:
        def build(_tree: object) -> str:
            built.append(key)
            return key[0] * size

        return ds.memo(Datastore.RUNNING, key, build)

    for i in range(40):
        reply(f"f{i}", mib)
    held = sum(len(v[1]) for v in ds._memo.values())
    assert 15 * mib <= held <= 16 * mib
    built.clear()
    reply("f39", mib)  # the newest are kept
    reply("f0", mib)  # the oldest were evicted
    assert built == ["f0"]
    for _ in range(2):
        reply("huge", 17 * mib)
    assert built == ["f0", "huge", "huge"]
    assert sum(len(v[1]) for v in ds._memo.values()) <= 16 * mib


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
    assert target.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


def test_crash_mid_write_keeps_old_startup(schema: DeviceSchema, tmp_path: Path) -> None:
    (tmp_path / STARTUP_FILE).write_text(json.dumps(CONFIG))
    torn = tmp_path / f".{STARTUP_FILE}.k3x9q2.tmp"
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


def _ifaces(count: int, start: int = 0) -> dict[str, object]:
    entries = [
        {"name": f"eth{i}", "type": "iana-if-type:ethernetCsmacd"}
        for i in range(start, start + count)
    ]
    return {"ietf-interfaces:interfaces": {"interface": entries}}


async def test_edits_run_off_the_event_loop(schema: DeviceSchema, tmp_path: Path) -> None:
    """Issue 11 item 2: the edit and its validation run in a thread, so the loop serves
    others meanwhile (here: the change waits for the loop to answer; on the loop it would
    wait for ever)."""
    ds = Datastores(schema, tmp_path)
    await ds.commit(Datastore.RUNNING, CONFIG, session_id=1)
    answered = threading.Event()

    def change(tree: dict[str, object]) -> dict[str, object]:
        assert answered.wait(10), "the event loop did not run during the edit"
        return apply_edit(schema, tree, {"ietf-system:system": {"location": "lab"}})

    edit = asyncio.create_task(ds.modify(Datastore.RUNNING, change, session_id=1))
    await asyncio.sleep(0.05)
    assert ds.view(Datastore.RUNNING) == CONFIG  # reads are served, from the old content
    answered.set()
    new = await edit
    assert new["ietf-system:system"]["location"] == "lab"
    assert ds.view(Datastore.RUNNING) is new


async def test_a_lock_taken_during_an_edit_wins(schema: DeviceSchema, tmp_path: Path) -> None:
    """RFC 6241 §7.5: the lock granted while another session's edit was being validated is
    honoured; that edit fails with in-use and changes nothing."""
    ds = Datastores(schema, tmp_path)
    await ds.commit(Datastore.RUNNING, CONFIG, session_id=1)
    go = threading.Event()

    def change(tree: dict[str, object]) -> dict[str, object]:
        go.wait(10)
        return apply_edit(schema, tree, {"ietf-system:system": {"location": "lab"}})

    edit = asyncio.create_task(ds.modify(Datastore.RUNNING, change, session_id=2))
    await asyncio.sleep(0.05)
    ds.lock(Datastore.RUNNING, 1)
    go.set()
    with pytest.raises(InUse):
        await edit
    assert ds.get(Datastore.RUNNING) == CONFIG


async def test_writes_over_the_budget_are_refused(schema: DeviceSchema, tmp_path: Path) -> None:
    """The budget counts the entries a write has validated: new or changed ones."""
    ds = Datastores(schema, tmp_path, edit_budget=100)
    await ds.commit(Datastore.RUNNING, _ifaces(100), session_id=1)
    with pytest.raises(PayloadTooLarge, match="101 list entries"):
        await ds.commit(Datastore.RUNNING, _ifaces(101), session_id=1)
    with pytest.raises(PayloadTooLarge):
        await ds.validate(_ifaces(101))
    for start in (100, 200):  # in steps within the budget, the datastore grows past it
        await ds.modify(
            Datastore.RUNNING, lambda t, s=start: apply_edit(schema, t, _ifaces(100, s)),
            session_id=1,
        )  # fmt: skip
    assert len(ds.view(Datastore.RUNNING)["ietf-interfaces:interfaces"]["interface"]) == 300


async def test_copy_shares_the_valid_source(schema: DeviceSchema, tmp_path: Path) -> None:
    """copy-config of running to startup takes no second validation: a datastore is always
    valid and never mutated, so startup holds the very same tree, and persists it."""
    ds = Datastores(schema, tmp_path, edit_budget=10)
    await ds.commit(Datastore.RUNNING, _ifaces(10), session_id=1)
    await ds.modify(
        Datastore.RUNNING, lambda t: apply_edit(schema, t, _ifaces(10, 10)), session_id=1
    )
    await ds.copy(Datastore.RUNNING, Datastore.STARTUP, session_id=1)  # 20 entries
    assert ds.view(Datastore.STARTUP) is ds.view(Datastore.RUNNING)
    assert json.loads((tmp_path / STARTUP_FILE).read_text()) == ds.view(Datastore.RUNNING)
    with pytest.raises(UnsupportedOperation):
        await ds.copy(Datastore.OPERATIONAL, Datastore.STARTUP, session_id=1)


async def test_a_failed_startup_write_changes_nothing(
    schema: DeviceSchema, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = Datastores(schema, tmp_path)

    def fail(_files: object) -> list[str]:
        raise OSError("disk full")

    monkeypatch.setattr("zerotouch_plugin.device.datastore.stage", fail)
    version = ds.version(Datastore.STARTUP)
    with pytest.raises(StorageError, match="disk full"):
        await ds.commit(Datastore.STARTUP, CONFIG, session_id=1)
    assert ds.view(Datastore.STARTUP) == {}
    assert ds.version(Datastore.STARTUP) == version


async def test_a_lock_taken_while_startup_is_staged_refuses_the_whole_write(
    schema: DeviceSchema, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 8040 §1.4: running and startup change in one commit; a NETCONF lock taken before
    its end (here: while startup.json is written) refuses both, and no temporary is left."""
    (tmp_path / STARTUP_FILE).write_text(json.dumps(CONFIG))
    ds = Datastores(schema, tmp_path)
    real_stage = stage

    def stage_then_lock(files: list[tuple[Path, bytes, int]]) -> list[str]:
        ds.lock(Datastore.STARTUP, 7)  # the loop waits for this thread: no race
        return real_stage(files)

    monkeypatch.setattr("zerotouch_plugin.device.datastore.stage", stage_then_lock)
    with pytest.raises(InUse, match="startup is locked by session 7"):
        await ds.modify(
            Datastore.RUNNING,
            lambda t: apply_edit(schema, t, {"ietf-system:system": {"location": "lab"}}),
            session_id=1,
            also=(Datastore.STARTUP,),
        )
    assert ds.get(Datastore.RUNNING) == CONFIG
    assert ds.get(Datastore.STARTUP) == CONFIG
    assert json.loads((tmp_path / STARTUP_FILE).read_text()) == CONFIG
    assert sorted(p.name for p in tmp_path.iterdir()) == [STARTUP_FILE]

"""Onboarding on the reference device (RFC 8572 §5.6): conveyed configuration merged into or
replacing running over the real datastores, validated before anything changes, then in
startup; the boot image recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zerotouch_plugin.artifacts.sztp import BootImage, ConfigurationHandling
from zerotouch_plugin.device.datastore import Datastore, Datastores
from zerotouch_plugin.device.schema import DeviceSchema, load_device_schema
from zerotouch_plugin.errors import InvalidInput, LockDenied, SchemaError
from zerotouch_plugin.services.sztp_agent import IMAGE_RECORD, DatastoreOnboarder, discard_leftovers

SYSTEM = "ietf-system:system"


@pytest.fixture(scope="module")
def schema() -> DeviceSchema:
    return load_device_schema()


@pytest.fixture
async def onboarder(schema: DeviceSchema, tmp_path: Path) -> DatastoreOnboarder:
    stores = Datastores(schema, tmp_path)
    first = {SYSTEM: {"hostname": "old", "contact": "ops"}}
    await stores.commit(Datastore.RUNNING, first, session_id=1)
    return DatastoreOnboarder(stores, tmp_path)


def _running(onboarder: DatastoreOnboarder) -> dict[str, object]:
    return dict(onboarder.datastores.get(Datastore.RUNNING))


async def test_merge_keeps_what_it_does_not_name(onboarder: DatastoreOnboarder) -> None:
    config = json.dumps({SYSTEM: {"hostname": "new"}}).encode()
    await onboarder.apply_configuration(config, ConfigurationHandling.MERGE)
    assert _running(onboarder)[SYSTEM] == {"hostname": "new", "contact": "ops"}
    startup = json.loads((onboarder.folder / "startup.json").read_text())
    assert startup[SYSTEM] == {"hostname": "new", "contact": "ops"}


async def test_replace_drops_what_it_does_not_name(onboarder: DatastoreOnboarder) -> None:
    xml = b'<system xmlns="urn:ietf:params:xml:ns:yang:ietf-system"><hostname>x</hostname></system>'
    await onboarder.apply_configuration(xml, ConfigurationHandling.REPLACE)
    assert _running(onboarder)[SYSTEM] == {"hostname": "x"}


async def test_a_locked_startup_refuses_the_configuration_whole(
    onboarder: DatastoreOnboarder,
) -> None:
    """Running changed first and the copy to a locked startup failed after it: the device
    then ran a configuration that a restart would lose."""
    before = _running(onboarder)
    onboarder.datastores.lock(Datastore.STARTUP, session_id=7)
    with pytest.raises(LockDenied):
        await onboarder.apply_configuration(
            json.dumps({SYSTEM: {"hostname": "new"}}).encode(), ConfigurationHandling.MERGE
        )
    assert _running(onboarder) == before
    assert not (onboarder.folder / "startup.json").exists()


@pytest.mark.parametrize(
    ("config", "error"),
    [
        (json.dumps({SYSTEM: {"no-such-leaf": 1}}).encode(), SchemaError),
        (b"{not json", InvalidInput),
        (b"[1, 2]", InvalidInput),
        (b'<!DOCTYPE x [<!ENTITY e "e">]><system/>', InvalidInput),
    ],
)
async def test_invalid_configuration_changes_nothing(
    onboarder: DatastoreOnboarder, config: bytes, error: type[Exception]
) -> None:
    before = _running(onboarder)
    with pytest.raises(error):
        await onboarder.apply_configuration(config, ConfigurationHandling.REPLACE)
    assert _running(onboarder) == before
    assert not (onboarder.folder / "startup.json").exists()


async def test_boot_image_is_recorded_and_the_download_removed(
    onboarder: DatastoreOnboarder,
) -> None:
    image = onboarder.folder / "boot-image.bin"
    image.write_bytes(b"os")
    await onboarder.install_image(image, BootImage(os_name="OS", os_version="2"), b"\x01" * 32)
    record = json.loads((onboarder.folder / IMAGE_RECORD).read_text())
    assert (record["os-version"], record["sha-256"], record["size"]) == ("2", "01" * 32, 2)
    assert not image.exists()


def test_leftovers_of_a_killed_run_are_discarded(tmp_path: Path) -> None:
    for name in (".sztp-script-abc", ".boot-image.bin.xyz", "boot-image.bin", "startup.json"):
        (tmp_path / name).write_bytes(b"x")
    removed = discard_leftovers(tmp_path)
    assert sorted(removed) == [".boot-image.bin.xyz", ".sztp-script-abc", "boot-image.bin"]
    assert [p.name for p in tmp_path.iterdir()] == ["startup.json"]

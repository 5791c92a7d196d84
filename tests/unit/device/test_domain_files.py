"""The domain identity files with domain-ca.pem as the commit point: written last, removed
first, and an incomplete set discarded at start (a device killed mid-install)."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.config import DeviceConfig
from zerotouch_plugin.device import domain_files
from zerotouch_plugin.device.agent_store import FileAgentStore
from zerotouch_plugin.device.domain_files import (
    CA_FILE,
    CERT_FILE,
    KEY_FILE,
    VOUCHER_FILE,
    discard_incomplete,
    forget_domain,
    write_domain,
)
from zerotouch_plugin.services.device_server import DeviceServer

NOW = datetime(2026, 11, 26, tzinfo=UTC)
CA = certs.make_ca("domain", now=NOW)
LEAF = certs.issue_client(CA, "SN-1", now=NOW)
ALL = (CA_FILE, CERT_FILE, KEY_FILE, VOUCHER_FILE)


def write(folder: Path) -> None:
    write_domain(folder, key=LEAF.key, chain=[LEAF.cert], anchors=[CA.cert], voucher_cms=b"v")


def test_write_then_forget(tmp_path: Path) -> None:
    write(tmp_path)
    assert all((tmp_path / name).exists() for name in ALL)
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    assert discard_incomplete(tmp_path) == []  # a complete set stays
    assert sorted(forget_domain(tmp_path)) == sorted(ALL)
    assert not any((tmp_path / name).exists() for name in ALL)


@pytest.mark.parametrize(
    "leftover",
    [
        (KEY_FILE,),
        (KEY_FILE, CERT_FILE, VOUCHER_FILE),  # killed just before the commit point
        (CA_FILE, VOUCHER_FILE),  # a commit point without key and certificate
    ],
)
def test_incomplete_sets_are_discarded(tmp_path: Path, leftover: tuple[str, ...]) -> None:
    write(tmp_path)
    for name in ALL:
        if name not in leftover:
            (tmp_path / name).unlink()
    (tmp_path / f".{KEY_FILE}.abc.tmp").write_text("half")  # an interrupted atomic write
    assert sorted(discard_incomplete(tmp_path)) == sorted(leftover)
    assert [p.name for p in tmp_path.iterdir()] == []


def test_rewrite_removes_the_old_commit_point_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path)

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(domain_files.os, "replace", crash)  # before the first part's rename
    with pytest.raises(OSError):
        write(tmp_path)
    assert not (tmp_path / CA_FILE).exists()  # the mixed set does not look complete
    assert discard_incomplete(tmp_path)


def test_a_crash_while_the_new_files_are_written_keeps_the_old_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path)
    before = {name: (tmp_path / name).read_bytes() for name in ALL}
    fsyncs = 0
    real_fsync = os.fsync

    def crash_on_the_third(fd: int) -> None:
        nonlocal fsyncs
        fsyncs += 1
        if fsyncs == 3:
            raise OSError("power cut")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", crash_on_the_third)
    other = certs.issue_client(CA, "SN-2", now=NOW)
    with pytest.raises(OSError):
        write_domain(tmp_path, key=other.key, chain=[other.cert], anchors=[CA.cert])
    assert {name: (tmp_path / name).read_bytes() for name in ALL} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(ALL)  # no temporary left
    assert discard_incomplete(tmp_path) == []


@pytest.mark.parametrize(("existing", "bound"), [(False, 6), (True, 7)])
def test_an_install_fsyncs_each_file_once_and_the_folder_at_most_three_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: bool, bound: int
) -> None:
    """Four files, the folder after the old commit point went (only if there was one), after
    the parts and after the commit point: not a file and a folder fsync per file."""
    if existing:
        write(tmp_path)
    synced: list[int] = []
    real_fsync = os.fsync

    def counting(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting)
    write(tmp_path)
    assert len(synced) == bound
    assert discard_incomplete(tmp_path) == []
    assert (tmp_path / CERT_FILE).read_bytes() == certs.certs_pem([LEAF.cert])


def test_an_install_without_a_voucher_keeps_the_one_the_agent_stored(tmp_path: Path) -> None:
    """The pledge agent stores the voucher (as voucher.cms) before the host installs the
    identity without one, and a renewal installs without one too: both keep it, for the
    enrollstatus owed after a restart (RFC 8995 §5.9.4)."""
    store = FileAgentStore(tmp_path)
    store.put("voucher", b"the new voucher")
    write_domain(tmp_path, key=LEAF.key, chain=[LEAF.cert], anchors=[CA.cert])
    renewed = certs.issue_client(CA, "SN-1", now=NOW)
    write_domain(tmp_path, key=renewed.key, chain=[renewed.cert], anchors=[CA.cert])
    assert store.get("voucher") == b"the new voucher"
    assert discard_incomplete(tmp_path) == []
    assert sorted(forget_domain(tmp_path)) == sorted(ALL)  # a factory reset removes it


def test_device_starts_on_leftovers_of_an_interrupted_install(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path)
    (tmp_path / CA_FILE).unlink()
    device = DeviceServer(tmp_path, DeviceConfig())
    assert not device.has_domain_identity
    assert device.installed_identity() is None
    assert not (tmp_path / KEY_FILE).exists()
    assert "discarded an incomplete domain identity" in caplog.text


def test_device_reads_a_complete_identity(tmp_path: Path) -> None:
    write(tmp_path)
    installed = DeviceServer(tmp_path, DeviceConfig()).installed_identity()
    assert installed is not None
    assert installed.ldevid == LEAF.cert and installed.anchors == (CA.cert,)

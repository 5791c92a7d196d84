"""The agent's key-value store: in memory, and on files in the reference device's folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from zerotouch_plugin.device.agent_store import STATE_FILE, FileAgentStore, agent_files
from zerotouch_plugin.device.domain_files import VOUCHER_FILE
from zerotouch_plugin.device.host import AgentStore, MemoryAgentStore
from zerotouch_plugin.errors import StorageError


def stores(folder: Path) -> list[AgentStore]:
    return [MemoryAgentStore(), FileAgentStore(folder)]


@pytest.mark.parametrize("which", [0, 1])
def test_put_get_delete(tmp_path: Path, which: int) -> None:
    store = stores(tmp_path)[which]
    assert store.get("voucher") is None
    store.put("voucher", b"one")
    store.put("voucher", b"two")
    assert store.get("voucher") == b"two"
    store.delete("voucher")
    store.delete("voucher")  # absent: no error
    assert store.get("voucher") is None


@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("key", ["", "Upper", "../escape", "a/b", "x" * 65, "-lead"])
def test_keys_are_plain_names(tmp_path: Path, which: int, key: str) -> None:
    store = stores(tmp_path)[which]
    with pytest.raises(ValueError, match="store key"):
        store.put(key, b"v")
    with pytest.raises(ValueError, match="store key"):
        store.get(key)
    assert list(tmp_path.iterdir()) == []


def test_files_keep_their_reference_names_and_mode(tmp_path: Path) -> None:
    store = FileAgentStore(tmp_path)
    store.put("voucher", b"cms")
    store.put("bootstrap-state", b"{}")
    store.put("pending-enrollstatus", b"{}")
    assert (tmp_path / VOUCHER_FILE).read_bytes() == b"cms"
    assert (tmp_path / STATE_FILE).read_bytes() == b"{}"
    assert (tmp_path / "agent-pending-enrollstatus.dat").is_file()
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in tmp_path.iterdir())
    assert sorted(agent_files(tmp_path)) == sorted(
        [VOUCHER_FILE, STATE_FILE, "agent-pending-enrollstatus.dat"]
    )
    (tmp_path / "startup.json").write_text("{}")
    assert "startup.json" not in agent_files(tmp_path)


def test_a_put_that_fails_leaves_no_partial_file(tmp_path: Path) -> None:
    store = FileAgentStore(tmp_path)
    (tmp_path / VOUCHER_FILE).mkdir()
    (tmp_path / VOUCHER_FILE / "in-the-way").write_text("x")
    with pytest.raises(StorageError, match="cannot write"):
        store.put("voucher", b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [VOUCHER_FILE]
    with pytest.raises(StorageError, match="cannot read"):
        store.get("voucher")


def test_a_missing_folder_is_a_storage_error(tmp_path: Path) -> None:
    store = FileAgentStore(tmp_path / "gone")
    assert store.get("voucher") is None
    with pytest.raises(StorageError):
        store.put("voucher", b"v")


def test_an_oversized_value_is_refused_both_ways(tmp_path: Path) -> None:
    store = FileAgentStore(tmp_path)
    with pytest.raises(StorageError, match="more than"):
        store.put("voucher", bytes((1 << 20) + 1))
    (tmp_path / STATE_FILE).write_bytes(bytes((1 << 20) + 1))
    with pytest.raises(StorageError, match="larger than"):
        store.get("bootstrap-state")

"""The reference device's AgentStore (device/host.py): one file per key in the device folder.

Each put is an atomic replace (``_files.write_atomic``: temporary file, fsync, rename, folder
fsync), so a crash leaves the old value or the new one. The voucher and the event history
keep the names they had before the store existed (``voucher.cms``, which the domain files
also remove on factory reset, and ``bootstrap-state.json``); any other key is
``agent-KEY.dat``.
"""

from __future__ import annotations

import os
from pathlib import Path

from zerotouch_plugin._files import write_atomic
from zerotouch_plugin.device.domain_files import VOUCHER_FILE
from zerotouch_plugin.device.host import check_store_key
from zerotouch_plugin.errors import StorageError

__all__ = ["STATE_FILE", "FileAgentStore", "agent_files"]

STATE_FILE = "bootstrap-state.json"
_NAMED = {"voucher": VOUCHER_FILE, "bootstrap-state": STATE_FILE}
_PREFIX, _SUFFIX = "agent-", ".dat"
_MAX_VALUE = 1 << 20  # the agent keeps a few KiB per key; refuse to read a runaway file


def _file_name(key: str) -> str:
    return _NAMED.get(check_store_key(key)) or f"{_PREFIX}{key}{_SUFFIX}"


def agent_files(folder: Path) -> list[str]:
    """The agent's files present in ``folder`` (for a factory reset of the folder)."""
    names = [name for name in _NAMED.values() if (folder / name).exists()]
    return names + sorted(p.name for p in folder.glob(f"{_PREFIX}*{_SUFFIX}"))


class FileAgentStore:
    """Keys as files in ``folder`` (mode 0600: the history names registrars and errors)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, key: str) -> Path:
        return self.folder / _file_name(key)

    def get(self, key: str) -> bytes | None:
        path = self.path(key)
        try:
            with path.open("rb") as handle:
                data = handle.read(_MAX_VALUE + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc}") from exc
        if len(data) > _MAX_VALUE:
            raise StorageError(f"{path} is larger than {_MAX_VALUE} bytes")
        return data

    def put(self, key: str, value: bytes) -> None:
        if not isinstance(value, bytes):
            raise TypeError("store values are bytes")
        if len(value) > _MAX_VALUE:
            raise StorageError(f"{key}: {len(value)} bytes is more than the store keeps")
        path = self.path(key)
        try:
            write_atomic(path, value, 0o600)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc}") from exc

    def delete(self, key: str) -> None:
        path = self.path(key)
        try:
            if not path.exists():
                return
            path.unlink()
            folder = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(folder)  # the removal survives a crash
            finally:
                os.close(folder)
        except OSError as exc:
            raise StorageError(f"cannot remove {path}: {exc}") from exc

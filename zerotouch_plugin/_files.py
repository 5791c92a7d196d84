"""Atomic file replacement, for every layer that keeps state on disk (keys, certificates,
vouchers, the startup datastore, the pledge's state)."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

__all__ = ["stage", "sync_folder", "write_atomic"]


def sync_folder(folder: Path) -> None:
    """fsync a folder: the names created, renamed or removed in it survive a crash."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_all(fds: Sequence[int]) -> None:
    """fsync every file at once, the first in this thread and each other in its own: a
    journaling filesystem (ext4, XFS) commits fsyncs that wait together in one journal
    commit, where one after the other each waits for its own. Any failure is raised, after
    every fsync has ended (the caller closes the files)."""
    failures: list[OSError] = []

    def sync(fd: int) -> None:
        try:
            os.fsync(fd)
        except OSError as exc:
            failures.append(exc)

    others = [threading.Thread(target=sync, args=(fd,)) for fd in fds[1:]]
    try:
        for thread in others:
            thread.start()
        if fds:
            sync(fds[0])
    finally:
        for thread in others:
            if thread.ident is not None:
                thread.join()
    if failures:
        raise failures[0]


def stage(files: Sequence[tuple[Path, bytes, int]]) -> list[Path]:
    """Write each ``(path, data, mode)`` to a temporary file beside ``path`` (mkstemp: mode
    0600 from the start, then ``mode``) and fsync them all at once (``_fsync_all``); the
    temporary paths, in order, for the caller to rename. On an error none is left behind."""
    staged: list[Path] = []
    handles: list[int] = []
    try:
        for path, data, mode in files:
            fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            handles.append(fd)
            staged.append(Path(tmp_name))
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        _fsync_all(handles)
    except BaseException:
        for tmp in staged:
            tmp.unlink(missing_ok=True)
        raise
    finally:
        for fd in handles:
            os.close(fd)
    return staged


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write via a temporary file in the same folder (``stage``), renamed over ``path``, then
    the folder fsynced: readers never see a partial file and a crash leaves the old file or
    the new one."""
    path = Path(path)
    [tmp] = stage([(path, data, mode)])
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync_folder(path.parent)

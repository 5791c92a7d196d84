"""Atomic file replacement, for every layer that keeps state on disk (keys, certificates,
vouchers, the startup datastore, the pledge's state)."""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

__all__ = ["discard", "stage", "sync_folder", "write_atomic"]

# Threads kept for the fsyncs ``_fsync_all`` runs beside its caller's: made as needed (an
# install of four files uses three) and kept, since making a thread per fsync cost more CPU
# than the fsync itself (about 0.2 ms each).
_FSYNC_WORKERS = 16
_fsync_pool: ThreadPoolExecutor | None = None
_fsync_pool_lock = threading.Lock()
# How a temporary file is opened: created here and now (never an existing file or a link).
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_TEMP_ATTEMPTS = 100  # names tried before giving up (each has 48 random bits)


def sync_folder(folder: Path) -> None:
    """fsync a folder: the names created, renamed or removed in it survive a crash."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pool() -> ThreadPoolExecutor:
    global _fsync_pool
    with _fsync_pool_lock:
        if _fsync_pool is None:
            _fsync_pool = ThreadPoolExecutor(_FSYNC_WORKERS, thread_name_prefix="zt-fsync")
        return _fsync_pool


def _forget_pool() -> None:
    """A forked child has none of its parent's threads: it makes its own pool."""
    global _fsync_pool, _fsync_pool_lock
    _fsync_pool, _fsync_pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def _start_fsync(fd: int) -> Future[None]:
    """fsync ``fd`` in a thread of the pool; here and now when the interpreter is shutting
    down (the pool takes no more work then)."""
    try:
        return _pool().submit(os.fsync, fd)
    except RuntimeError:
        done: Future[None] = Future()
        try:
            os.fsync(fd)
        except OSError as exc:
            done.set_exception(exc)
        else:
            done.set_result(None)
        return done


def _fsync_all(fds: Sequence[int]) -> None:
    """fsync every file at once, the first in this thread and each other in a thread of the
    pool: a journaling filesystem (ext4, XFS) commits fsyncs that wait together in one
    journal commit, where one after the other each waits for its own. Any failure is raised,
    after every fsync has ended (the caller closes the files)."""
    others = [_start_fsync(fd) for fd in fds[1:]]
    failures: list[BaseException] = []
    try:
        if fds:
            os.fsync(fds[0])
    except OSError as exc:
        failures.append(exc)
    finally:
        for other in others:
            failure = other.exception()  # waits for it
            if failure is not None:
                failures.append(failure)
    if failures:
        raise failures[0]


def _create_beside(path: Path) -> tuple[int, str]:
    """A new empty file ``.NAME.RANDOM.tmp`` beside ``path``, mode 0600, open for writing;
    its descriptor and name."""
    prefix = os.path.join(os.fspath(path.parent), f".{path.name}.")
    for _ in range(_TEMP_ATTEMPTS):
        name = f"{prefix}{secrets.token_hex(6)}.tmp"
        try:
            return os.open(name, _TEMP_FLAGS, 0o600), name
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def stage(files: Sequence[tuple[Path, bytes, int]]) -> list[str]:
    """Write each ``(path, data, mode)`` to a temporary file beside ``path`` (mode 0600 from
    the start, then ``mode``) and fsync them all at once (``_fsync_all``); the temporary
    names, in order, for the caller to rename. On an error none is left behind."""
    staged: list[str] = []
    handles: list[int] = []
    try:
        for path, data, mode in files:
            fd, tmp_name = _create_beside(path)
            handles.append(fd)
            staged.append(tmp_name)
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        _fsync_all(handles)
    except BaseException:
        discard(staged)
        raise
    finally:
        for fd in handles:
            os.close(fd)
    return staged


def discard(names: Sequence[str]) -> None:
    """Remove the temporary files ``stage`` made that were not renamed."""
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write via a temporary file in the same folder (``stage``), renamed over ``path``, then
    the folder fsynced: readers never see a partial file and a crash leaves the old file or
    the new one."""
    path = Path(path)
    staged = stage([(path, data, mode)])
    try:
        os.replace(staged[0], path)
    except BaseException:
        discard(staged)
        raise
    sync_folder(path.parent)

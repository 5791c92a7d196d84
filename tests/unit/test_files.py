"""Staged, fsynced file writes (``_files``): the fsyncs of one install run together on kept
threads, not on threads made per write; a forked child and a shutting-down interpreter still
write durably; temporary files are named as ``discard_incomplete`` expects."""

from __future__ import annotations

import os
import re
import signal
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.calls import recorded
from zerotouch_plugin import _files
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.device.domain_files import discard_incomplete, write_domain

NOW = datetime(2026, 11, 26, tzinfo=UTC)
CA = certs.make_ca("files", now=NOW)
LEAF = certs.issue_client(CA, "SN-F1", now=NOW)


def _install(folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    write_domain(folder, key=LEAF.key, chain=[LEAF.cert], anchors=[CA.cert], voucher_cms=b"v")


def test_installs_fsync_together_on_kept_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each install fsyncs its four files at once, on more than one thread; twenty installs
    start no more threads than the pool holds (a thread per fsync would be sixty)."""
    _install(tmp_path / "warm")
    started: list[str] = []
    real_start = threading.Thread.start

    def counting_start(thread: threading.Thread) -> None:
        started.append(thread.name)
        real_start(thread)

    synced_on: list[int] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            synced_on.append(threading.get_ident())
        real_fsync(fd)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    monkeypatch.setattr(os, "fsync", recording_fsync)
    for index in range(20):
        _install(tmp_path / f"d{index}")
    assert len(started) <= _files._FSYNC_WORKERS
    assert len(synced_on) == 20 * 4
    assert all(len(set(synced_on[i : i + 4])) > 1 for i in range(0, len(synced_on), 4))


def test_a_forked_child_writes_with_its_own_threads(tmp_path: Path) -> None:
    """The pool's threads stay in the parent: a child of fork makes its own (a child that
    handed its fsyncs to the parent's threads would wait for ever)."""
    _install(tmp_path / "parent")  # the parent's pool has threads now
    pid = os.fork()
    if pid == 0:  # the child: end within 20 s whatever happens
        signal.alarm(20)
        try:
            _install(tmp_path / "child")
        finally:
            os._exit(0 if discard_incomplete(tmp_path / "child") == [] else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert (tmp_path / "child" / "domain-ca.pem").exists()


def test_fsyncs_are_made_here_once_the_pool_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At interpreter shutdown the pool takes no work: the fsyncs still happen, in the
    writing thread."""
    stopped = ThreadPoolExecutor(1)
    stopped.shutdown()
    monkeypatch.setattr(_files, "_pool", lambda: stopped)
    synced = recorded(monkeypatch, os, "fsync")
    _install(tmp_path)
    assert len(synced) == 6  # four files, the folder twice
    assert discard_incomplete(tmp_path) == []


def test_a_failed_fsync_is_raised_after_the_others_and_nothing_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync
    ended: list[int] = []

    def failing_on_the_pool(fd: int) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise OSError(5, "I/O error")
        real_fsync(fd)
        ended.append(fd)

    monkeypatch.setattr(os, "fsync", failing_on_the_pool)
    with pytest.raises(OSError, match="I/O error"):
        _install(tmp_path)
    assert len(ended) == 1  # the writing thread's own fsync ended too
    assert list(tmp_path.iterdir()) == []


def test_temporary_files_sit_beside_their_target_as_discard_incomplete_expects(
    tmp_path: Path,
) -> None:
    old = os.umask(0o077)
    try:
        staged = _files.stage([(tmp_path / "ldevid.pem", b"cert", 0o644)])
    finally:
        os.umask(old)
    [name] = staged
    assert os.path.dirname(name) == str(tmp_path)
    assert re.fullmatch(r"\.ldevid\.pem\.[0-9a-f]{12}\.tmp", os.path.basename(name))
    assert stat.S_IMODE(os.stat(name).st_mode) == 0o644  # the mode asked, whatever the umask
    assert Path(name).read_bytes() == b"cert"
    (tmp_path / "ldevid.pem").write_bytes(b"old")
    assert discard_incomplete(tmp_path) == ["ldevid.pem"]
    assert list(tmp_path.iterdir()) == []

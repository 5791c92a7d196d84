"""Run ``zerotouch`` commands and servers as real subprocesses for end-to-end tests.

A server is started with its CLI (``... serve --listen 127.0.0.1:0``), is ready once it prints
``listening <role> <url>`` on stdout, logs to a file (so a chatty server never blocks on a
full pipe), and is always terminated: use ``server(...)`` as a context manager or call
``stop()``.
"""

from __future__ import annotations

import asyncio
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ServerProcess",
    "free_port",
    "run_cli",
    "run_cli_async",
    "server",
    "start_cli",
    "start_server",
]

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _command(args: Sequence[str | os.PathLike[str]], prefix: Sequence[str] = ()) -> list[str]:
    """``prefix`` runs the command through another, e.g. a netns host's ``ip netns exec``."""
    return [*prefix, sys.executable, "-m", "zerotouch_plugin", *map(str, args)]


def run_cli(
    *args: str | os.PathLike[str],
    check: bool = True,
    timeout: float = 120,
    prefix: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """``zerotouch ARGS`` to completion; with ``check`` a non-zero exit fails with its stderr."""
    result = subprocess.run(
        _command(args, prefix),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"zerotouch {' '.join(map(str, args))} exited {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for servers restarted in place)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A running ``zerotouch ... serve``; ``url`` is what its ``listening`` line announced."""

    role: str
    args: list[str]
    proc: subprocess.Popen[str]
    log_path: Path
    url: str = ""
    _log: object = field(default=None, repr=False)

    @property
    def stderr(self) -> str:
        """Everything the server logged so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


def start_server(
    role: str,
    *args: str | os.PathLike[str],
    ready_timeout: float = 30,
    prefix: Sequence[str] = (),
) -> ServerProcess:
    """Start ``zerotouch ARGS`` and wait for ``listening <role> <url>`` on its stdout."""
    handle, name = tempfile.mkstemp(prefix=f"zt-{role}-", suffix=".log")
    log_file = os.fdopen(handle, "w")
    proc = subprocess.Popen(
        _command(args, prefix),
        stdout=subprocess.PIPE,
        stderr=log_file,
        text=True,
        env=_env(),
    )
    log_file.close()
    server = ServerProcess(role, list(map(str, args)), proc, Path(name))
    prefix = f"listening {role} "
    deadline = time.monotonic() + ready_timeout
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                server.stop()
                raise AssertionError(
                    f"{role} did not report listening within {ready_timeout}s:\n{server.stderr}"
                )
            line = proc.stdout.readline()
            if not line:
                server.stop()
                raise AssertionError(
                    f"{role} exited with {proc.returncode} before listening:\n{server.stderr}"
                )
            if line.startswith(prefix):
                server.url = line[len(prefix) :].strip()
                return server


@contextmanager
def server(role: str, *args: str | os.PathLike[str]) -> Iterator[ServerProcess]:
    """``start_server`` that is always stopped (and its log kept in the failure message)."""
    process = start_server(role, *args)
    try:
        yield process
    finally:
        process.stop()
        process.log_path.unlink(missing_ok=True)


async def run_cli_async(
    *args: str | os.PathLike[str], timeout: float = 120
) -> tuple[int, str, str]:
    """``zerotouch ARGS`` without blocking the event loop (for servers the test itself runs):
    exit status, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        *_command(args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return int(proc.returncode or 0), out.decode(), err.decode()


def start_cli(*args: str | os.PathLike[str]) -> subprocess.Popen[str]:
    """``zerotouch ARGS`` in the background (stdout and stderr piped); the caller waits."""
    return subprocess.Popen(
        _command(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )

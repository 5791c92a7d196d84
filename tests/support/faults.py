"""Fault injection for the end-to-end fault tests: a TCP relay that fires a fault when a
connection reaches it, a watcher that fires one when a condition becomes true, and SIGKILL.

TLS hides the HTTP request line, so a step is recognised by what the relay can see (the n-th
connection a service opens to another) or by what a service has written (a database row);
either way the fault fires at that moment, deterministically, from the test's own threads.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PrivatePostgres", "Relay", "Watcher", "kill9", "private_postgres"]

# What the relay does with an accepted connection once the fault hook has run.
FORWARD = "forward"
DROP = "drop"

_POLL_SECONDS = 0.02


def kill9(proc: subprocess.Popen[str]) -> None:
    """SIGKILL: the process gets no chance to flush, commit or answer anything."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(10)


@dataclass
class Relay:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``target``; ``on_connect(n)`` runs for the
    n-th accepted connection (1-based) before anything is forwarded and returns FORWARD or
    DROP (the connection is closed unanswered); ``on_chunk(n, k)`` runs once the k-th
    piece the client sent on it has been passed on (to fault the server mid-exchange), and
    ``on_reply(n, k)`` before the k-th piece of the server's answer is, returning FORWARD
    or DROP (both ends are cut: the answer is lost on the way).
    Runs in its own thread and event loop; the hooks run in a worker thread."""

    port: int
    target: int
    on_connect: Callable[[int], str] = lambda _n: FORWARD
    # (connection, chunk): after the chunk-th piece the client sent has been forwarded
    on_chunk: Callable[[int, int], None] = lambda _n, _chunk: None
    # (connection, chunk): before the chunk-th piece of the server's answer is forwarded
    on_reply: Callable[[int, int], str] = lambda _n, _chunk: FORWARD
    connections: int = 0
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _stopped: asyncio.Event | None = field(default=None, repr=False)

    def __enter__(self) -> Relay:
        ready = threading.Event()
        errors: list[BaseException] = []

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stopped = asyncio.Event()
            try:
                server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
            except OSError as exc:
                errors.append(exc)
                ready.set()
                return
            ready.set()
            async with server:
                await self._stopped.wait()

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        loop = asyncio.get_running_loop()
        verdict = await loop.run_in_executor(None, self.on_connect, self.connections)
        if verdict == DROP:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        n = self.connections

        async def sent(chunk: int) -> str:
            await loop.run_in_executor(None, self.on_chunk, n, chunk)
            return FORWARD

        async def replying(chunk: int) -> str:
            verdict = await loop.run_in_executor(None, self.on_reply, n, chunk)
            if verdict == DROP:
                up_writer.transport.abort()
            return verdict

        await asyncio.gather(
            _pipe(reader, up_writer, after=sent), _pipe(up_reader, writer, before=replying)
        )


async def _forward(_chunk: int) -> str:
    return FORWARD


async def _pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    before: Callable[[int], Awaitable[str]] = _forward,
    after: Callable[[int], Awaitable[str]] = _forward,
) -> None:
    chunks = 0
    try:
        while data := await reader.read(65536):
            chunks += 1
            if await before(chunks) == DROP:
                return
            writer.write(data)
            await writer.drain()
            await after(chunks)
    except OSError:
        pass
    finally:
        writer.transport.abort()


@dataclass
class Watcher:
    """Polls ``condition`` every 20 ms from a thread; the first time it holds, runs
    ``action`` once. ``fired`` says whether it did (a test asserts it, so a fault that never
    happened cannot pass for one that was survived)."""

    condition: Callable[[], bool]
    action: Callable[[], None]
    timeout: float = 60.0
    fired: bool = False
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def __enter__(self) -> Watcher:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def wait(self, timeout: float = 30.0) -> bool:
        """Until the action has run (or the watch ended); whether it fired."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.fired

    def _run(self) -> None:
        deadline = time.monotonic() + self.timeout
        while not self._stop.is_set() and time.monotonic() < deadline:
            if self.condition():
                self.fired = True
                self.action()
                return
            time.sleep(_POLL_SECONDS)


def _postgres_bin(name: str) -> str:
    """A PostgreSQL server program (Debian keeps them out of PATH, per major version)."""
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: p.parts[-3])
    assert found, f"no PostgreSQL {name} under /usr/lib/postgresql; run scripts/setup-system.sh"
    return str(found[-1])


@dataclass
class PrivatePostgres:
    """A PostgreSQL server of the test's own (run as the ``postgres`` user on 127.0.0.1), so
    restarting it disturbs nobody else's tests."""

    data: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://zerotouch@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", _postgres_bin("pg_ctl"), "-D", str(self.data),
             "-l", str(self.data / "server.log"), "-w", *args],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        self._ctl("-o", options, "start")

    def crash(self) -> None:
        """``pg_ctl stop -m immediate``: every backend is killed, no checkpoint (a crash)."""
        self._ctl("-m", "immediate", "stop")

    def restart_after_crash(self) -> None:
        self.crash()
        self.start()


@contextmanager
def private_postgres(port: int) -> Iterator[PrivatePostgres]:
    """A fresh cluster (trust authentication for the role ``zerotouch``), started; stopped
    and removed on exit."""
    data = Path(tempfile.mkdtemp(prefix="zt-pg-"))
    shutil.chown(data, "postgres", "postgres")
    subprocess.run(
        ["runuser", "-u", "postgres", "--", _postgres_bin("initdb"), "-D", str(data),
         "-U", "zerotouch", "-A", "trust", "--no-sync"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    server = PrivatePostgres(data, port)
    try:
        server.start()
        yield server
    finally:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", _postgres_bin("pg_ctl"), "-D", str(data),
             "-m", "immediate", "-w", "stop"],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        shutil.rmtree(data, ignore_errors=True)

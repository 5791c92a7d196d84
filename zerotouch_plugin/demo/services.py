"""The ``zerotouch`` processes the demo runs: one-shot commands and long-running services.

Every process runs in the work folder (so paths in logs and printed commands are short),
writes its stdout and stderr to ``logs/`` (never a pipe: a service kept with ``--keep``
outlives the demo), and services leave ``run/NAME.pid`` so that ``zerotouch demo --stop``
finds them later. Services get their own session, so a Ctrl-C in the terminal reaches only
the demo, which stops them in order; unless kept, they also get SIGTERM from the kernel if
the demo dies without cleaning up (Linux ``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from zerotouch_plugin.errors import LocalError

__all__ = ["Service", "Services", "StepFailed", "free_port", "stop_kept"]

LOGS = "logs"
RUN = "run"
COMMANDS_LOG = "logs/commands.log"
POLL = 0.02  # seconds between looks at a service's stdout file
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
TAIL_LINES = 12
_PR_SET_PDEATHSIG = 1


class StepFailed(LocalError):
    """A demo step did not hold; ``logs`` are the files that tell why."""

    reason = "demo-step-failed"

    def __init__(self, message: str, *, logs: Sequence[Path] = ()) -> None:
        super().__init__(message)
        self.logs = tuple(logs)


def tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    """The last lines of a log file (empty when it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    return text.splitlines()[-lines:]


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` free a moment ago: the MASA URL goes into the IDevIDs before the
    MASA runs (RFC 8995 §2.3.2), so its port is chosen first."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _command(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "zerotouch_plugin", *args]


# Looked up once here: the child between fork and exec only calls it (no dlopen there, as
# other threads of the demo may hold the loader's lock at fork time).
_PRCTL = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the demo process ends (Linux only)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Service:
    """A long-running ``zerotouch`` process (MASA, registrar, device)."""

    name: str
    args: tuple[str, ...]
    popen: subprocess.Popen[bytes]
    out: Path
    log: Path
    pid_file: Path

    def lines(self) -> list[str]:
        """What the service printed on stdout so far."""
        try:
            return self.out.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def check_alive(self) -> None:
        status = self.popen.poll()
        if status is not None:
            how = f"signal {-status}" if status < 0 else f"status {status}"
            raise StepFailed(f"{self.name} exited unexpectedly ({how})", logs=[self.log])

    async def wait_line(
        self, match: Callable[[str], bool], what: str, deadline: float, others: Services
    ) -> str:
        """The first stdout line ``match`` accepts; fails when this (or another) service
        dies or ``deadline`` (monotonic) passes first."""
        while True:
            for line in self.lines():
                if match(line):
                    return line
            self.check_alive()
            others.check_alive()
            if time.monotonic() > deadline:
                raise StepFailed(f"{self.name}: no {what!r} line in time", logs=[self.log])
            await asyncio.sleep(POLL)


@dataclass
class Services:
    """Everything the demo started in ``folder``; ``stop`` ends it all."""

    folder: Path
    keep: bool = False
    running: list[Service] = field(default_factory=list)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _record(self, args: Sequence[str]) -> None:
        with (self.folder / COMMANDS_LOG).open("a") as log:
            log.write(f"zerotouch {shlex.join(args)}\n")

    async def run(self, *args: str, timeout: float = 60) -> str:
        """``zerotouch ARGS`` to completion (stdout returned); a failure is a StepFailed."""
        (self.folder / LOGS).mkdir(exist_ok=True)
        self._record(args)
        proc = await asyncio.create_subprocess_exec(
            *_command(args),
            cwd=self.folder,
            env=self._env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except (TimeoutError, asyncio.CancelledError):
            proc.kill()
            await asyncio.shield(proc.wait())
            raise
        if proc.returncode != 0:
            message = err.decode(errors="replace").strip().splitlines() or ["(no output)"]
            raise StepFailed(
                f"zerotouch {shlex.join(args)} exited {proc.returncode}: {message[-1]}"
            )
        return out.decode(errors="replace")

    def start(self, name: str, *args: str, prefix: Sequence[str] = ()) -> Service:
        """Start ``zerotouch ARGS`` in the background as service ``name``; ``prefix`` runs
        it elsewhere (``ip netns exec NS``, which execs the command: the pid stays)."""
        for folder in (LOGS, RUN):
            (self.folder / folder).mkdir(exist_ok=True)
        self._record(args)
        out, log = self.folder / LOGS / f"{name}.out", self.folder / LOGS / f"{name}.log"
        with out.open("wb") as stdout, log.open("wb") as stderr:
            popen = subprocess.Popen(
                [*prefix, *_command(args)],
                cwd=self.folder,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
                preexec_fn=None if self.keep else _die_with_parent,
            )
        pid_file = self.folder / RUN / f"{name}.pid"
        pid_file.write_text(f"{popen.pid}\n")
        service = Service(name, tuple(args), popen, out, log, pid_file)
        self.running.append(service)
        return service

    async def serve(
        self, name: str, listener: str, *args: str, deadline: float
    ) -> tuple[Service, str]:
        """Start service ``name`` (``zerotouch ARGS``); it and the address it printed in its
        ``listening LISTENER ADDRESS`` line, once there (before ``deadline``, monotonic)."""
        service = self.start(name, *args)
        prefix = f"listening {listener} "
        line = await service.wait_line(
            lambda text: text.startswith(prefix), prefix.strip(), deadline, self
        )
        return service, line.split()[-1]

    def check_alive(self) -> None:
        """Fail as soon as any service has died."""
        for service in self.running:
            service.check_alive()

    def stop(self) -> dict[str, int]:
        """SIGTERM every service, SIGKILL those still alive after a grace period; the exit
        status of each one that was still running.

        Synchronous on purpose: it runs in ``finally`` after a Ctrl-C cancelled the flow.
        """
        live = [s for s in self.running if s.popen.poll() is None]
        for service in live:
            with contextlib.suppress(ProcessLookupError):
                service.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        statuses = {}
        for service in live:
            try:
                statuses[service.name] = service.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                service.popen.kill()
                statuses[service.name] = service.popen.wait()
        for service in self.running:
            service.pid_file.unlink(missing_ok=True)
        self.running.clear()
        return statuses


def _ours(pid: int, folder: Path) -> bool:
    """Is ``pid`` still a ``zerotouch`` process working in ``folder`` (not a reused pid)?"""
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return cwd == folder.resolve() and b"zerotouch_plugin" in cmdline


def _read_pid(pid_file: Path) -> int | None:
    """The pid a pid file names; None for an unreadable or damaged one (it is dropped)."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 else None


def stop_kept(folder: Path) -> list[str]:
    """Stop the services a ``--keep`` run left in ``folder`` (``run/*.pid``); their names."""
    stopped = []
    pids: dict[str, int] = {}
    for pid_file in sorted((folder / RUN).glob("*.pid")):
        pid = _read_pid(pid_file)
        if pid is not None and _ours(pid, folder):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            pids[pid_file.stem] = pid
        pid_file.unlink()
    deadline = time.monotonic() + STOP_GRACE
    for name, pid in pids.items():
        while _ours(pid, folder) and time.monotonic() < deadline:
            time.sleep(POLL)
        if _ours(pid, folder):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stopped.append(name)
    return stopped

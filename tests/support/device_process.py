"""Run ``zerotouch device run`` as a real process and learn the ports it bound.

The device prints one ``listening <name> <host>:<port>`` line per listener; ``start_device``
waits for all the listeners it asked for; ``wait_for`` reads later stdout lines (such as the
agent's ``enrolled SERIAL``). The process logs to a file and is always stopped by the
``device`` context manager.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DeviceProcess", "device", "start_device", "write_device_config"]

REPO = Path(__file__).resolve().parents[2]


@dataclass
class DeviceProcess:
    proc: subprocess.Popen[str]
    log_path: Path
    ports: dict[str, int] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)  # stdout lines read so far
    _pending: bytes = b""

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _read(self, deadline: float, done: Callable[[], bool]) -> None:
        """Read stdout lines into ``lines`` until ``done()`` or the deadline (AssertionError)."""
        assert self.proc.stdout is not None
        fd_out = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd_out, selectors.EVENT_READ)
            while not done():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise AssertionError(f"device: timed out; stdout {self.lines}:\n{self.log}")
                chunk = os.read(fd_out, 4096)  # raw reads: a buffered readline could hide lines
                if not chunk:
                    self.proc.wait(10)
                    raise AssertionError(f"device exited {self.proc.returncode}:\n{self.log}")
                self._pending += chunk
                *lines, self._pending = self._pending.split(b"\n")
                for line in lines:
                    text = line.decode()
                    self.lines.append(text)
                    words = text.split()
                    if len(words) == 3 and words[0] == "listening":
                        self.ports[words[1]] = int(words[2].rpartition(":")[2])

    def wait_for(self, prefix: str, timeout: float = 60, *, nth: int = 1) -> str:
        """The ``nth`` stdout line starting with ``prefix``, waiting up to ``timeout`` s."""

        def matching() -> list[str]:
            return [line for line in self.lines if line.startswith(prefix)]

        self._read(time.monotonic() + timeout, lambda: len(matching()) >= nth)
        return matching()[nth - 1]

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as in a power cut."""
        self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM (a clean shutdown), SIGKILL only if it hangs; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return int(self.proc.returncode)


def write_device_config(folder: Path, text: str) -> Path:
    path = folder / "device.toml"
    path.write_text(text)
    return path


def start_device(
    folder: Path,
    listeners: dict[str, str],
    *,
    ready_timeout: float = 60,
    extra: Sequence[str] = (),
    wait: Sequence[str] | None = None,
    verbose: bool = False,
    prefix: Sequence[str] = (),
) -> DeviceProcess:
    """``listeners``: option name (``netconf-ssh``, ``netconf-tls``, ``restconf``) ->
    HOST:PORT; ``extra``: more arguments of ``device run``; ``wait``: the listeners to wait
    for (default: all; RESTCONF only listens once the device holds a domain identity);
    ``verbose``: log at INFO (NETCONF sessions opened and closed); ``prefix``: what runs it
    elsewhere (``ip netns exec NS``)."""
    args = [*prefix, sys.executable, "-m", "zerotouch_plugin", *(["-v"] if verbose else [])]
    args += ["device", "run", "--dir", str(folder)]
    for name, address in listeners.items():
        args += [f"--{name}", address]
    args += list(extra)
    expected = set(listeners if wait is None else wait)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    fd, name = tempfile.mkstemp(prefix="zt-device-", suffix=".log")
    with os.fdopen(fd, "w") as log_file:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log_file, text=True, env=env)
    process = DeviceProcess(proc, Path(name))
    try:
        process._read(time.monotonic() + ready_timeout, lambda: expected <= set(process.ports))
    except AssertionError:
        process.stop()
        raise
    return process


@contextmanager
def device(folder: Path, listeners: dict[str, str]) -> Iterator[DeviceProcess]:
    process = start_device(folder, listeners)
    try:
        yield process
    finally:
        status = process.stop()
        log = process.log
        process.log_path.unlink(missing_ok=True)
        assert status == 0, f"device exited {status}:\n{log}"

"""Run ``zerotouch device run`` as a real process and learn the ports it bound.

The device prints one ``listening <name> <host>:<port>`` line per listener; ``start_device``
waits for all the listeners it asked for. The process logs to a file and is always stopped
by the ``device`` context manager.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

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
    folder: Path, listeners: dict[str, str], *, ready_timeout: float = 60
) -> DeviceProcess:
    """``listeners``: option name (``netconf-ssh``, ``netconf-tls``, ``restconf``) -> HOST:PORT."""
    args = [sys.executable, "-m", "zerotouch_plugin", "device", "run", "--dir", str(folder)]
    for name, address in listeners.items():
        args += [f"--{name}", address]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    fd, name = tempfile.mkstemp(prefix="zt-device-", suffix=".log")
    with os.fdopen(fd, "w") as log_file:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log_file, text=True, env=env)
    process = DeviceProcess(proc, Path(name))
    deadline = time.monotonic() + ready_timeout
    assert proc.stdout is not None
    fd_out = proc.stdout.fileno()
    pending = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd_out, selectors.EVENT_READ)
        while set(process.ports) != set(listeners):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                process.stop()
                raise AssertionError(f"device did not start in {ready_timeout}s:\n{process.log}")
            chunk = os.read(fd_out, 4096)  # raw reads: a buffered readline could hide lines
            if not chunk:
                process.stop()
                raise AssertionError(f"device exited {proc.returncode}:\n{process.log}")
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                words = line.decode().split()
                if len(words) == 3 and words[0] == "listening":
                    process.ports[words[1]] = int(words[2].rpartition(":")[2])
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

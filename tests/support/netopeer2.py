"""netopeer2-server on sysrepo for tests: one private sysrepo repository per server.

The stack is built by ``scripts/netopeer2-stack.sh`` (``make netopeer2``) into a cached prefix.
Each ``Netopeer2`` gets its own ``SYSREPO_REPOSITORY_PATH`` and ``SYSREPO_SHM_PREFIX`` (both
removed at the end, with ``/dev/shm/<prefix>*``), netopeer2's modules installed into that
repository, and an SSH listener on 127.0.0.1 with a fresh client key in place of the default
listener on 0.0.0.0:830, before the server first starts. The server runs in the foreground.
"""

from __future__ import annotations

import getpass
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.support.processes import REPO, ServerProcess, free_port, run_cli, start_server

__all__ = ["Netopeer2", "netopeer2_server", "stack_prefix"]

T = TypeVar("T")

STACK_SCRIPT = REPO / "scripts" / "netopeer2-stack.sh"
SHM = Path("/dev/shm")


def stack_prefix() -> Path:
    """The built prefix; skips with the reason when it is not built (fails in CI)."""
    result = subprocess.run(
        ["bash", str(STACK_SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    if result.returncode == 0:
        return Path(result.stdout.strip().splitlines()[-1])
    message = (
        f"netopeer2 stack not built ({result.stderr.strip()}): run `make netopeer2` "
        "(scripts/netopeer2-stack.sh)"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _use_environment(env: dict[str, str]) -> None:
    os.environ.update(env)


def _call(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in the child; any failure comes back as an AssertionError with
    the child's traceback (some exceptions, e.g. ncclient's RPCError, do not pickle)."""
    try:
        return function(*args)
    except BaseException as exc:
        raise AssertionError(f"in the child process: {exc!r}\n{traceback.format_exc()}") from None


def _ssh_listener(port: int, user: str, public_key: str) -> str:
    """ietf-netconf-server configuration: one SSH endpoint on 127.0.0.1:``port`` that
    accepts ``user`` with ``public_key`` (OpenSSH base64), host key ``genkey``."""
    return f"""<netconf-server xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-server">
  <listen><endpoints><endpoint>
    <name>test-ssh</name>
    <ssh>
      <tcp-server-parameters>
        <local-address>127.0.0.1</local-address>
        <local-port>{port}</local-port>
      </tcp-server-parameters>
      <ssh-server-parameters>
        <server-identity><host-key>
          <name>default-key</name>
          <public-key><central-keystore-reference>genkey</central-keystore-reference></public-key>
        </host-key></server-identity>
        <client-authentication><users><user>
          <name>{user}</name>
          <public-keys><inline-definition><public-key>
            <name>test-client</name>
            <public-key-format xmlns:ct="urn:ietf:params:xml:ns:yang:ietf-crypto-types"
              >ct:ssh-public-key-format</public-key-format>
            <public-key>{public_key}</public-key>
          </public-key></inline-definition></public-keys>
        </user></users></client-authentication>
      </ssh-server-parameters>
    </ssh>
  </endpoint></endpoints></listen>
</netconf-server>
"""


@dataclass
class Netopeer2:
    """One netopeer2-server with a private sysrepo repository under ``root``."""

    prefix: Path
    root: Path
    shm_prefix: str = field(default_factory=lambda: f"zt{os.getpid()}x{secrets.token_hex(3)}")
    ssh_port: int = field(default_factory=free_port)
    user: str = field(default_factory=getpass.getuser)
    process: subprocess.Popen[bytes] | None = None

    @property
    def repository(self) -> Path:
        return self.root / "repository"

    @property
    def ssh_key(self) -> Path:
        """The SSH client key (OpenSSH PEM) that ``user`` logs in with."""
        return self.root / "client-key"

    @property
    def log_path(self) -> Path:
        return self.root / "netopeer2-server.log"

    @property
    def env(self) -> dict[str, str]:
        """Environment of every process that uses this server's sysrepo repository."""
        env = dict(os.environ)
        env["SYSREPO_REPOSITORY_PATH"] = str(self.repository)
        env["SYSREPO_SHM_PREFIX"] = self.shm_prefix
        env["PATH"] = os.pathsep.join([str(self.prefix / "bin"), env.get("PATH", "")])
        return env

    def run(self, *argv: str, stdin: str | None = None) -> str:
        """A stack tool (``sysrepocfg``, ``sysrepoctl``) on this repository; its stdout."""
        result = subprocess.run(
            [str(self.prefix / "bin" / argv[0]), *argv[1:]],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr}")
        return result.stdout

    def isolated(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in a new Python process that uses this server's repository.

        libsysrepo keeps one repository and shared-memory prefix per process (read from the
        environment at first use), so a test process that talks to several servers does it
        from children; exceptions (failed asserts) come back to the caller."""
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            1, mp_context=context, initializer=_use_environment, initargs=(self.sysrepo_env,)
        ) as pool:
            return pool.submit(_call, function, *args).result()

    @property
    def sysrepo_env(self) -> dict[str, str]:
        """The variables that point a sysrepo client at this server's repository."""
        return {k: v for k, v in self.env.items() if k.startswith("SYSREPO_")}

    def plugin(self, *args: str | os.PathLike[str]) -> ServerProcess:
        """``zerotouch netopeer2-plugin ARGS`` on this server's repository, once it reports
        ``listening netopeer2-plugin``."""
        with mock.patch.dict(os.environ, self.sysrepo_env):
            return start_server("netopeer2-plugin", "-v", "netopeer2-plugin", *args)

    def cli(self, *args: str | os.PathLike[str]) -> str:
        """``zerotouch ARGS`` to completion on this server's repository; its stdout."""
        with mock.patch.dict(os.environ, self.sysrepo_env):
            return run_cli(*args).stdout

    def prepare(self) -> None:
        """netopeer2's modules and host key in a new repository, and the loopback listener
        (replacing the one netopeer2's setup would add on 0.0.0.0:830); iana-if-type too."""
        self.repository.mkdir(parents=True)
        scripts = self.prefix / "share" / "netopeer2" / "scripts"
        modules = self.prefix / "share" / "yang" / "modules"
        env = self.env | {
            "NP2_MODULE_DIR": str(modules / "netopeer2"),
            "LN2_MODULE_DIR": str(modules / "libnetconf2"),
            "NP2_MODULE_PERMS": "600",
            "SYSREPOCTL_EXECUTABLE": str(self.prefix / "bin" / "sysrepoctl"),
            "SYSREPOCFG_EXECUTABLE": str(self.prefix / "bin" / "sysrepocfg"),
        }
        for script in ("setup.sh", "merge_hostkey.sh"):
            result = subprocess.run(
                ["bash", str(scripts / script)],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
                check=False,
            )
            if result.returncode != 0:
                raise AssertionError(f"netopeer2 {script} failed:\n{result.stdout}{result.stderr}")
        # interface types for ietf-interfaces (netopeer2 installs the module without them)
        self.run("sysrepoctl", "-i", str(modules / "sysrepo" / "iana-if-type@2014-05-08.yang"))
        key = ed25519.Ed25519PrivateKey.generate()
        self.ssh_key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            )
        )
        self.ssh_key.chmod(0o600)
        public = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        listener = _ssh_listener(self.ssh_port, self.user, public.split()[1].decode())
        self.run("sysrepocfg", "--import", "-d", "startup", "-f", "xml", "-m",
                 "ietf-netconf-server", stdin=listener)  # fmt: skip
        self.run("sysrepocfg", "-C", "startup", "-d", "running", "-m", "ietf-netconf-server")

    def start(self, timeout: float = 30) -> None:
        """Start netopeer2-server in the foreground; returns once the SSH port accepts."""
        server_dir = self.root / "server"
        server_dir.mkdir(exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.prefix / "sbin" / "netopeer2-server"), "-d", "-v1",
                 "-p", str(self.root / "netopeer2-server.pid"), "-f", str(server_dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"netopeer2-server exited {self.process.returncode}:\n{self.log}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.ssh_port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError(f"netopeer2-server not listening within {timeout}s:\n{self.log}")

    @property
    def log(self) -> str:
        """What the server logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit status (None if never started)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        return self.process.returncode

    def restart(self) -> None:
        """Stop the server and drop sysrepo's shared memory, so that running is loaded
        from startup again (what a reboot of the device does), then start it."""
        self.stop()
        self._remove_shm()
        self.start()

    def _remove_shm(self) -> None:
        for path in SHM.glob(f"{self.shm_prefix}*"):
            path.unlink(missing_ok=True)

    def remove(self) -> None:
        """Stop the server and delete the repository and this server's shared memory."""
        self.stop()
        self._remove_shm()
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def netopeer2_server(start: bool = True) -> Iterator[Netopeer2]:
    """A prepared (and, with ``start``, running) ``Netopeer2``, removed afterwards."""
    server = Netopeer2(stack_prefix(), Path(tempfile.mkdtemp(prefix="zt-netopeer2-")))
    try:
        server.prepare()
        if start:
            server.start()
        yield server
    finally:
        server.remove()

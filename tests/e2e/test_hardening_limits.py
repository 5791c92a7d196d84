"""Connection caps and TLS / HTTP deadlines of every listener, against real processes.

The registrar (whose HTTPS code the MASA shares: ``services/_limits.py``) and a device
(RESTCONF and NETCONF/TLS) run with small ``[limits]``; raw sockets play the attackers:
connections that never finish a ClientHello, more connections than a source may hold, a
header sent a byte a second, a chunked body without end. Each attack is cut, logged, its
memory returned, and a legitimate client (curl, a TLS client with its certificate) is served
afterwards.
"""

from __future__ import annotations

import select
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.device_pki import DevicePki, make_device_pki
from tests.support.device_process import DeviceProcess, device, write_device_config
from tests.support.processes import ServerProcess, run_cli, server
from zerotouch_plugin.config import ConnectionLimits, DeviceConfig, RegistrarConfig, load_config
from zerotouch_plugin.errors import ConfigError
from zerotouch_plugin.services.certfiles import write_certs, write_key

HANDSHAKE = 3  # seconds: the handshake and header deadlines of the test configurations
BODY = 3
PER_IP = 150
GLOBAL = 250
LIMITS = f"""
[limits]
max_connections = {GLOBAL}
max_connections_per_ip = {PER_IP}
handshake_timeout = {HANDSHAKE}
header_timeout = {HANDSHAKE}
body_timeout = {BODY}
"""
# The first bytes of a TLS record carrying a ClientHello, and never the rest of it.
HALF_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
CUT_WITHIN = HANDSHAKE + 12  # generous: a loaded 2-core machine
# Memory a held, unfinished handshake may cost (asyncio's TLS buffer is 256 KiB) and what
# may stay behind once they are cut (malloc keeps some).
PER_HANDSHAKE_BYTES = 512 * 1024
KEPT_AFTER_BYTES = 24 * 1024 * 1024


def rss(pid: int) -> int:
    """Resident memory of a process, bytes (``VmRSS`` of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def connect(port: int, source: str = "127.0.0.1", payload: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    if payload:
        sock.sendall(payload)
    return sock


def hold(port: int, count: int, source: str) -> list[socket.socket]:
    """``count`` connections from ``source``, every other one sending half a ClientHello."""
    return [connect(port, source, HALF_HELLO if i % 2 else b"") for i in range(count)]


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], remaining)[0]:
            return False
        try:
            if not sock.recv(4096):
                return True
        except ConnectionResetError:
            return True
    return False


def still_open(sock: socket.socket) -> bool:
    """Not closed by the server (nothing to read, no EOF) at this moment."""
    return not select.select([sock], [], [], 0)[0]


def close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


def settle_rss(pid: int, below: int, seconds: float = 10) -> int:
    """The process's RSS once under ``below`` (or after ``seconds``): freeing takes a moment."""
    deadline = time.monotonic() + seconds
    while (now := rss(pid)) >= below and time.monotonic() < deadline:
        time.sleep(0.2)
    return now


def check_caps_and_handshake_cut(port: int, pid: int, log: Callable[[], str], service: str) -> None:
    """(a) + (b): the per-source cap refuses at once, another source still gets in until the
    global cap; unfinished handshakes are cut at the deadline; memory is bounded and returns."""
    baseline = rss(pid)
    first = hold(port, PER_IP, "127.0.0.1")
    second: list[socket.socket] = []
    try:
        over_ip = connect(port, "127.0.0.1", HALF_HELLO)
        assert closed_within(over_ip, HANDSHAKE - 1), "connection over the per-IP cap was held"
        assert all(still_open(s) for s in first), "held connections were cut before the deadline"
        second = hold(port, GLOBAL - PER_IP, "127.0.0.2")  # another source gets in
        over_all = connect(port, "127.0.0.3")
        assert closed_within(over_all, HANDSHAKE - 1), "connection over the global cap was held"
        assert all(still_open(s) for s in second), "the second source was refused"
        held = rss(pid)
        assert held - baseline < GLOBAL * PER_HANDSHAKE_BYTES, (held, baseline)
        assert all(closed_within(s, CUT_WITHIN) for s in first + second)
        after = settle_rss(pid, baseline + KEPT_AFTER_BYTES)
        assert after < baseline + KEPT_AFTER_BYTES, (baseline, held, after)
        print(f"{service}: RSS {baseline >> 20} MiB, {held >> 20} MiB held, {after >> 20} after")
    finally:
        close_all(first + second)
    text = log()
    assert f"{service}: refusing connections" in text
    assert "(max_connections_per_ip)" in text  # the global refusal is in the same burst


def slow_header_is_cut(port: int, context: ssl.SSLContext) -> bool:
    """(c) slowloris: a header byte a second; whether it is cut before its end."""
    header = b"GET /x HTTP/1.1\r\nHost: a\r\n" + b"X-Slow: " + b"y" * 60
    with context.wrap_socket(connect(port), server_hostname="127.0.0.1") as tls:
        tls.settimeout(1)
        deadline = time.monotonic() + CUT_WITHIN
        for byte in header:
            if time.monotonic() > deadline:
                return False
            try:
                tls.sendall(bytes([byte]))
                if tls.recv(4096) == b"":
                    return True
            except TimeoutError:
                continue
            except (ConnectionError, ssl.SSLError):
                return True
    return False


def endless_body_is_cut(port: int, context: ssl.SSLContext, path: str, *, slow: bool) -> bytes:
    """(d) a chunked body without end (fast: past the body limit; slow: a chunk a second).
    What the server answered before closing; raises AssertionError if it never did."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = b"1\r\n \r\n" if slow else b"1000\r\n" + b" " * 4096 + b"\r\n"
    answer = b""
    with context.wrap_socket(connect(port), server_hostname="127.0.0.1") as tls:
        tls.settimeout(1)  # a read may find only TLS 1.3 session tickets
        tls.sendall(head)
        deadline = time.monotonic() + CUT_WITHIN + (10 if not slow else 0)  # + lingering
        while time.monotonic() < deadline:
            try:
                tls.sendall(chunk)
                if select.select([tls], [], [], 1 if slow else 0)[0] or tls.pending():
                    data = tls.recv(65536)
                    if not data:
                        return answer
                    answer += data
            except TimeoutError:
                continue
            except (ConnectionError, ssl.SSLError):
                return answer
    raise AssertionError(f"endless body not cut within {CUT_WITHIN} s; answer {answer!r}")


# -- the registrar (the MASA serves through the same GatedTlsSite and middleware) -----------


@dataclass
class Registrar:
    process: ServerProcess
    root: Path

    @property
    def port(self) -> int:
        return int(self.process.url.rpartition(":")[2])

    def curl(self) -> int:
        """A legitimate client: curl with the admin certificate; the HTTP status."""
        a = self.root / "A"
        done = subprocess.run(
            [
                "curl", "-sS", "--noproxy", "*", "--max-time", "30",
                "--cacert", str(self.root / "R" / "ca.pem"),
                "--cert", str(a / "cert.pem"), "--key", str(a / "key.pem"),
                "-o", "/dev/null", "-w", "%{http_code}",
                f"{self.process.url}/.well-known/est/cacerts",
            ],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        return int(done.stdout or 0)

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.root / "R" / "ca.pem")
        ctx.load_cert_chain(self.root / "A" / "cert.pem", self.root / "A" / "key.pem")
        return ctx


@pytest.fixture(scope="module")
def registrar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registrar]:
    root = tmp_path_factory.mktemp("limits")
    run_cli("vendor", "init", "--dir", root / "V", "--masa-url", "https://127.0.0.1:9")
    run_cli(
        "registrar", "init", "--dir", root / "R",
        "--manufacturer-ca", root / "V" / "ca.pem", "--masa-trust", root / "V" / "ca.pem",
    )  # fmt: skip
    run_cli(
        "registrar", "issue-client-cert", "--dir", root / "R",
        "--name", "ops", "--out", root / "A", "--admin",
    )  # fmt: skip
    config = root / "R" / "registrar.toml"
    config.write_text(config.read_text() + LIMITS)
    with server("registrar", "registrar", "serve", "--dir", root / "R", "--listen",
                "127.0.0.1:0") as process:  # fmt: skip
        yield Registrar(process, root)


def test_registrar_caps_and_unfinished_handshakes(registrar: Registrar) -> None:
    check_caps_and_handshake_cut(
        registrar.port, registrar.process.proc.pid, lambda: registrar.process.stderr, "registrar"
    )
    assert "registrar: refused 127.0.0.1:" in registrar.process.stderr  # the handshake cut
    assert registrar.curl() == 200


def test_registrar_slowloris_is_cut(registrar: Registrar) -> None:
    assert slow_header_is_cut(registrar.port, registrar.context())
    assert "no complete request header within" in registrar.process.stderr
    assert registrar.curl() == 200


def test_registrar_endless_chunked_bodies_are_cut(registrar: Registrar) -> None:
    path = "/.well-known/brski/voucher_status"
    answer = endless_body_is_cut(registrar.port, registrar.context(), path, slow=False)
    assert answer.startswith(b"HTTP/1.1 413 "), (answer, registrar.process.stderr[-2000:])
    endless_body_is_cut(registrar.port, registrar.context(), path, slow=True)
    log = registrar.process.stderr
    assert "body over the limit" in log and "body not received within" in log
    assert registrar.curl() == 200


# -- the device: RESTCONF and NETCONF/TLS ---------------------------------------------------


@dataclass
class Device:
    process: DeviceProcess
    pki: DevicePki
    files: dict[str, Path]

    def context(self) -> ssl.SSLContext:
        return self.pki.client_context()

    def restconf_curl(self) -> int:
        done = subprocess.run(
            [
                "curl", "-sS", "--noproxy", "*", "--max-time", "30",
                "--cacert", str(self.files["ca"]),
                "--cert", str(self.files["cert"]), "--key", str(self.files["key"]),
                "-o", "/dev/null", "-w", "%{http_code}",
                f"https://127.0.0.1:{self.process.ports['restconf']}"
                "/restconf/yang-library-version",
            ],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        return int(done.stdout or 0)

    def netconf_hello(self) -> bytes:
        """A legitimate NETCONF/TLS client: the server's hello."""
        port = self.process.ports["netconf-tls"]
        with self.context().wrap_socket(connect(port), server_hostname="127.0.0.1") as tls:
            data = b""
            while b"]]>]]>" not in data:
                chunk = tls.recv(65536)
                assert chunk, data
                data += chunk
            return data


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Device]:
    folder = tmp_path_factory.mktemp("limits-device")
    pki = make_device_pki()
    files = pki.write(folder / "pki")
    write_certs(folder / "ldevid.pem", [pki.server.cert, *pki.server.chain])
    write_key(folder / "ldevid.key", pki.server.key)
    write_certs(folder / "domain-ca.pem", [pki.ca.cert])
    write_device_config(folder, LIMITS)
    listeners = {"netconf-tls": "127.0.0.1:0", "restconf": "127.0.0.1:0"}
    with device(folder, listeners) as process:
        yield Device(process, pki, files)


@pytest.mark.parametrize("listener", ["restconf", "netconf-tls"])
def test_device_caps_and_unfinished_handshakes(dev: Device, listener: str) -> None:
    port = dev.process.ports[listener]
    check_caps_and_handshake_cut(port, dev.process.proc.pid, lambda: dev.process.log, listener)
    assert f"{listener}: refused 127.0.0.1:" in dev.process.log
    assert dev.restconf_curl() == 200
    assert b"<hello" in dev.netconf_hello()


def test_restconf_slowloris_and_endless_bodies_are_cut(dev: Device) -> None:
    port = dev.process.ports["restconf"]
    assert slow_header_is_cut(port, dev.context())
    answer = endless_body_is_cut(port, dev.context(), "/restconf/data", slow=False)
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    endless_body_is_cut(port, dev.context(), "/restconf/data", slow=True)
    log = dev.process.log
    assert "no complete request header within" in log
    assert "body over the limit" in log and "body not received within" in log
    assert dev.restconf_curl() == 200


# -- configuration ----------------------------------------------------------------------------


def test_limits_are_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "registrar.toml"
    path.write_text("[limits]\nmax-connections-per-ip = 5\nhandshake_timeout = 2.5\n")
    limits = load_config(RegistrarConfig, path, {}).limits
    assert (limits.max_connections_per_ip, limits.handshake_timeout) == (5, 2.5)
    assert limits.max_connections == ConnectionLimits().max_connections
    for bad in ("max_connections = 0", "body_timeout = -1", "header_timeout = true", "x = 1"):
        path.write_text(f"[limits]\n{bad}\n")
        with pytest.raises(ConfigError, match="limits"):
            load_config(DeviceConfig, path, {})

"""Abuse benchmark: what a flood of unfinished TLS handshakes gets from each listener.

Starts, in a temporary folder on 127.0.0.1 and with the default connection caps (and a
handshake deadline of 120 s, so the flood is built before it is cut), a real MASA, a real
registrar and a real device (RESTCONF and NETCONF/TLS). For each listener it opens
connections that never send a ClientHello, 100 more than the per-source cap from each of
several loopback sources (the whole 127/8 is loopback on Linux), and reports:

* ``held_per_source``, ``held_at_cap``: connections admitted before refusals start (per
  source address, and in all once the global cap is reached);
* ``rss_base_mib``, ``rss_at_cap_mib``, ``rss_after_mib``: the server's resident memory before,
  at the cap, and a few seconds after the flood was dropped;
* ``legit_s_idle``, ``legit_s_loaded``: seconds a legitimate client (TLS with its certificate,
  one request or the NETCONF hello, from another source) takes unloaded and while the flood
  holds 90% of the global cap; the MASA's legitimate client is a registrar fetching the audit
  log of a device it got a voucher for (RFC 8995 §5.8).

    .venv/bin/python benchmarks/abuse_bench.py [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _masa_request import registrar_request  # noqa: E402

from zerotouch_plugin.artifacts import certs  # noqa: E402
from zerotouch_plugin.artifacts.cms import MEDIA_TYPE_VOUCHER_CMS  # noqa: E402
from zerotouch_plugin.config import ConnectionLimits  # noqa: E402
from zerotouch_plugin.services import certfiles  # noqa: E402
from zerotouch_plugin.services._tls import client_context  # noqa: E402
from zerotouch_plugin.services.masa_app import AUDIT_PATH, VOUCHER_PATH  # noqa: E402

# The default caps; a handshake deadline long enough to build the whole flood before it cuts.
LIMITS = ConnectionLimits(handshake_timeout=120)
CONFIG = f"""
[limits]
max_connections = {LIMITS.max_connections}
max_connections_per_ip = {LIMITS.max_connections_per_ip}
handshake_timeout = {LIMITS.handshake_timeout}
"""
YANG_LIBRARY = "/restconf/yang-library-version"
SOURCES = LIMITS.max_connections // LIMITS.max_connections_per_ip + 1  # one past the cap


@dataclass
class Result:
    service: str
    held_per_source: int
    held_at_cap: int
    rss_base_mib: int
    rss_at_cap_mib: int
    rss_after_mib: int
    legit_s_idle: float
    legit_s_loaded: float


def rss_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def zt(*args: str | Path) -> None:
    cmd = [sys.executable, "-m", "zerotouch_plugin", *map(str, args)]
    subprocess.run(cmd, check=True, capture_output=True, env=_env())


@contextmanager
def serve(args: list[str | Path], wanted: int, log: Path) -> Iterator[tuple[int, dict[str, int]]]:
    """Run ``zerotouch ARGS`` until it printed ``wanted`` ``listening NAME ADDRESS`` lines:
    (pid, name -> port)."""
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "zerotouch_plugin", *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=_env(),
        )
    try:
        assert proc.stdout is not None
        ports: dict[str, int] = {}
        pending = b""
        deadline = time.monotonic() + 60
        while len(ports) < wanted:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([proc.stdout], [], [], remaining)[0]:
                raise RuntimeError(f"{args[0]} did not start: {log.read_text()}")
            chunk = os.read(proc.stdout.fileno(), 4096)  # raw: a buffered read hides lines
            if not chunk:
                raise RuntimeError(f"{args[0]} exited: {log.read_text()}")
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                words = line.decode().split()
                if len(words) == 3 and words[0] == "listening":
                    ports[words[1]] = int(words[2].rpartition(":")[2])
        yield proc.pid, ports
    finally:
        proc.terminate()
        proc.wait(10)


def _connect(port: int, source: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))


def _open(sock: socket.socket) -> bool:
    """Not closed by the server (a peek that would block); select() stops at fd 1023."""
    sock.setblocking(False)  # a peek in timeout mode would wait for data
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except ConnectionError:
        return False


def flood(port: int, sources: range) -> list[list[socket.socket]]:
    """Per source 127.0.0.N: 100 connections more than the per-source cap, no ClientHello."""
    count = LIMITS.max_connections_per_ip + 100
    return [[_connect(port, f"127.0.0.{n}") for _ in range(count)] for n in sources]


def legit_time(client: Callable[[str], None]) -> float:
    started = time.perf_counter()
    client("127.0.1.1")
    return round(time.perf_counter() - started, 4)


def measure(service: str, port: int, pid: int, client: Callable[[str], None]) -> Result:
    base = rss_mib(pid)
    idle = legit_time(client)
    loaded_socks = flood(port, range(1, SOURCES - 1))  # 90% of the global cap: others still get in
    time.sleep(0.5)
    loaded = legit_time(client)
    more = flood(port, range(SOURCES - 1, SOURCES + 1))  # now past the global cap
    time.sleep(2)  # the server accepts the last of them
    every = loaded_socks + more
    per_source = sum(_open(s) for s in every[0])
    held = sum(_open(s) for group in every for s in group)
    at_cap = rss_mib(pid)
    for group in every:
        for sock in group:
            sock.close()
    time.sleep(3)
    return Result(service, per_source, held, base, at_cap, rss_mib(pid), idle, loaded)


def https_client(
    port: int, ctx: ssl.SSLContext, path: str, body: bytes | None = None
) -> Callable[[str], None]:
    """One request answered 200: a GET, or with ``body`` a POST of a voucher-request."""

    def run(source: str) -> None:
        head = f"{'POST' if body else 'GET'} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        if body:
            head += f"Content-Type: {MEDIA_TYPE_VOUCHER_CMS}\r\nContent-Length: {len(body)}\r\n"
        with ctx.wrap_socket(_connect(port, source), server_hostname="127.0.0.1") as tls:
            tls.sendall(head.encode() + b"\r\n" + (body or b""))
            assert tls.recv(64).startswith(b"HTTP/1.1 200"), path

    return run


def netconf_client(port: int, ctx: ssl.SSLContext) -> Callable[[str], None]:
    def run(source: str) -> None:
        with ctx.wrap_socket(_connect(port, source), server_hostname="127.0.0.1") as tls:
            data = b""
            while b"]]>]]>" not in data:
                chunk = tls.recv(65536)
                assert chunk, "no NETCONF hello"
                data += chunk

    return run


def masa(root: Path) -> list[Result]:
    """The MASA, once it vouched a device to domain "alpha"; the legitimate client is alpha's
    registrar asking for that device's audit log."""
    folder = root / "M"
    zt("vendor", "init", "--dir", folder, "--masa-url", "https://127.0.0.1:9")
    (folder / "masa.toml").write_text(CONFIG)
    registrar, rvr = registrar_request(folder, now=datetime.now(UTC))
    ctx = client_context(registrar, trust=certs.load_certs((folder / "ca.pem").read_bytes()))
    args: list[str | Path] = ["masa", "serve", "--dir", folder, "--listen", "127.0.0.1:0"]
    with serve(args, 1, root / "masa.log") as (pid, ports):
        port = ports["masa"]
        https_client(port, ctx, VOUCHER_PATH, rvr)("127.0.1.1")
        audit = https_client(port, ctx, AUDIT_PATH, rvr)
        audit("127.0.1.1")  # the first lookup warms the database connection
        return [measure("masa", port, pid, audit)]


def registrar(root: Path) -> list[Result]:
    zt("vendor", "init", "--dir", root / "V", "--masa-url", "https://127.0.0.1:9")
    zt("registrar", "init", "--dir", root / "R", "--manufacturer-ca", root / "V" / "ca.pem")
    zt("registrar", "issue-client-cert", "--dir", root / "R", "--name", "ops", "--out",
       root / "A", "--admin")  # fmt: skip
    config = root / "R" / "registrar.toml"
    config.write_text(config.read_text() + CONFIG)
    ctx = ssl.create_default_context(cafile=root / "R" / "ca.pem")
    ctx.load_cert_chain(root / "A" / "cert.pem", root / "A" / "key.pem")
    args: list[str | Path] = ["registrar", "serve", "--dir", root / "R", "--listen", "127.0.0.1:0"]
    with serve(args, 1, root / "registrar.log") as (pid, ports):
        port = ports["registrar"]
        client = https_client(port, ctx, "/.well-known/est/cacerts")
        return [measure("registrar", port, pid, client)]


def device(root: Path) -> list[Result]:
    now = datetime.now(UTC) - timedelta(minutes=5)
    ca = certs.make_ca("Domain CA", now=now)
    server = certs.issue_tls_server(ca, "device", hosts=["127.0.0.1"], now=now)
    client = certs.issue_client(ca, "operator", now=now)
    folder = root / "P"
    folder.mkdir()
    certfiles.write_certs(folder / "ldevid.pem", [server.cert, *server.chain])
    certfiles.write_key(folder / "ldevid.key", server.key)
    certfiles.write_certs(folder / "domain-ca.pem", [ca.cert])
    (folder / "device.toml").write_text(CONFIG)
    certfiles.write_certs(root / "client.pem", [client.cert])
    certfiles.write_key(root / "client.key", client.key)
    ctx = ssl.create_default_context(cafile=folder / "domain-ca.pem")
    ctx.load_cert_chain(root / "client.pem", root / "client.key")
    args: list[str | Path] = ["device", "run", "--dir", folder, "--restconf", "127.0.0.1:0",
                              "--netconf-tls", "127.0.0.1:0"]  # fmt: skip
    with serve(args, 2, root / "device.log") as (pid, ports):
        restconf = ports["restconf"]
        return [
            measure("restconf", restconf, pid, https_client(restconf, ctx, YANG_LIBRARY)),
            measure(
                "netconf-tls", ports["netconf-tls"], pid, netconf_client(ports["netconf-tls"], ctx)
            ),
        ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    need = SOURCES * (LIMITS.max_connections_per_ip + 100) + 100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    with tempfile.TemporaryDirectory(prefix="zt-abuse-") as tmp:
        root = Path(tmp)
        results = masa(root) + registrar(root) + device(root)
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=1))
    else:
        for r in results:
            print(
                f"{r.service:12} held {r.held_per_source}/source, {r.held_at_cap} at the cap; "
                f"RSS {r.rss_base_mib} -> {r.rss_at_cap_mib} -> {r.rss_after_mib} MiB "
                f"(x{r.rss_at_cap_mib / r.rss_base_mib:.2f} at the cap, "
                f"x{r.rss_after_mib / r.rss_base_mib:.2f} after); legitimate client "
                f"{r.legit_s_idle:.3f} s idle, {r.legit_s_loaded:.3f} s loaded "
                f"(x{r.legit_s_loaded / r.legit_s_idle:.2f})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

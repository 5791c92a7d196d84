"""NETCONF and RESTCONF benchmark: zerotouch's device server against Debian's netconfd.

Starts, in temporary folders on 127.0.0.1:

* netconfd (yuma123, a C NETCONF server) with its own state files, reached through an OpenSSH
  sshd started with its own sshd_config, host key and authorized key, whose ``netconf``
  subsystem is yuma's ``netconf-subsystem``;
* ``zerotouch device run`` (a real process) with NETCONF over SSH and TLS and RESTCONF.

Both hold the same configuration (ietf-system and ietf-interfaces). The same lean client
drives both: an asyncio NETCONF client written here on asyncssh (and on ``ssl`` for TLS) that
keeps one RPC outstanding, speaks base:1.1 chunked framing after the hello, and checks each
reply's message-id and the absence of ``rpc-error`` without parsing the XML; ncclient is not
used because its 0.1 s reply polling hides the servers' latency. It measures session setup
(connect to hello exchanged), get-config and edit-config round trips (median, p99, calls/s on
one session), and RESTCONF GET/PATCH requests/s, and prints the ratios zerotouch/netconfd.
Then it holds ``--held`` NETCONF/TLS sessions open at once on the device (each answers a
get-config while all are open) and reports the device process's RSS idle (before any
session) and with them held. Everything it started is stopped at the end.

    .venv/bin/python benchmarks/netconf_bench.py [--seconds 3] [--sessions 20] [--held 500]
        [--json] [--check]

Targets, so that the device is no slower than a C server: get-config calls/s over SSH >=
netconfd's, session setup faster than netconfd's; and the device holds ``--held`` sessions
with an idle RSS of at most 60 MiB; ``--check`` exits 1 when one is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncssh
from cryptography.hazmat.primitives.serialization import Encoding

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.services import certfiles

HOST = "127.0.0.1"
BASE_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
SYSTEM_NS = "urn:ietf:params:xml:ns:yang:ietf-system"
IF_NS = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
IANA_IF_NS = "urn:ietf:params:xml:ns:yang:iana-if-type"
BASE_11 = "urn:ietf:params:netconf:base:1.1"
EOM = b"]]>]]>"
INTERFACES = 16
CLIENT_SETTINGS = (
    f"lean asyncio NETCONF client (benchmarks/netconf_bench.py) on asyncssh "
    f"{asyncssh.__version__}: one RPC outstanding, base:1.1 chunked framing, replies checked "
    "for message-id and rpc-error without XML parsing, SSH compression off, Ed25519 user key; "
    f"RESTCONF: aiohttp {aiohttp.__version__} on one keep-alive TLS connection"
)
NETCONFD_BINARIES = ("/usr/sbin/netconfd", "/usr/sbin/netconf-subsystem", "/usr/sbin/sshd")


# -- statistics ---------------------------------------------------------------------------


@dataclass
class Stats:
    """Latencies (seconds) of one measured operation and the wall time they took."""

    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.latencies)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return {
            "count": len(ordered),
            "median_ms": statistics.median(ordered) * 1000,
            "p99_ms": p99 * 1000,
            "per_s": len(ordered) / self.elapsed if self.elapsed else 0.0,
        }


async def timed_loop(call: Callable[[int], Awaitable[object]], seconds: float) -> Stats:
    """Run ``call(i)`` back to back for about ``seconds`` after a short warm-up."""
    for i in range(20):
        await call(i)
    stats = Stats()
    start = time.perf_counter()
    deadline = start + seconds
    i = 0
    while True:
        t0 = time.perf_counter()
        await call(i)
        t1 = time.perf_counter()
        stats.latencies.append(t1 - t0)
        i += 1
        if t1 >= deadline:
            stats.elapsed = t1 - start
            return stats


# -- the lean NETCONF client --------------------------------------------------------------


class NetconfError(Exception):
    """The server answered with rpc-error or broke the protocol."""


class NetconfClient:
    """A minimal NETCONF client over any byte stream (RFC 6241, RFC 6242 framing)."""

    def __init__(
        self,
        send: Callable[[bytes], None],
        recv: Callable[[], Awaitable[bytes]],
        close: Callable[[], Awaitable[None]],
    ) -> None:
        self._send = send
        self._recv = recv
        self._close = close
        self._buf = b""
        self._chunked = False
        self._next_id = 1
        self.server_hello = b""

    async def _fill(self) -> None:
        data = await self._recv()
        if not data:
            raise NetconfError("the server closed the session")
        self._buf += data

    async def _message(self) -> bytes:
        if not self._chunked:
            while (end := self._buf.find(EOM)) < 0:
                await self._fill()
            msg, self._buf = self._buf[:end], self._buf[end + len(EOM) :]
            return msg
        parts: list[bytes] = []
        while True:
            while len(self._buf) < 4:
                await self._fill()
            if self._buf.startswith(b"\n##\n"):
                self._buf = self._buf[4:]
                return b"".join(parts)
            if not self._buf.startswith(b"\n#"):
                raise NetconfError(f"bad chunk header {self._buf[:16]!r}")
            while (nl := self._buf.find(b"\n", 2)) < 0:
                await self._fill()
            size = int(self._buf[2:nl])
            while len(self._buf) < nl + 1 + size:
                await self._fill()
            parts.append(self._buf[nl + 1 : nl + 1 + size])
            self._buf = self._buf[nl + 1 + size :]

    def _write(self, msg: bytes) -> None:
        if self._chunked:
            self._send(b"\n#%d\n%s\n##\n" % (len(msg), msg))
        else:
            self._send(msg + EOM)

    async def hello(self) -> None:
        """Exchange hellos; chunked framing when both sides speak base:1.1 (RFC 6242 §4.1).

        The client's hello goes out first, without waiting for the server's (both are sent
        at once, RFC 6241 §8.1): netconfd 2.13 drops an RPC that arrives in the same read as
        the client's hello, which a client answering the server hello at once can trigger.
        """
        self._write(
            b'<?xml version="1.0" encoding="UTF-8"?>'
            b'<hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><capabilities>'
            b"<capability>urn:ietf:params:netconf:base:1.0</capability>"
            b"<capability>urn:ietf:params:netconf:base:1.1</capability>"
            b"</capabilities></hello>"
        )
        self.server_hello = await self._message()
        self._chunked = BASE_11.encode() in self.server_hello

    async def call(self, operation: bytes) -> bytes:
        """Send one RPC and return its reply (NetconfError on rpc-error)."""
        mid = str(self._next_id).encode()
        self._next_id += 1
        self._write(
            b'<?xml version="1.0" encoding="UTF-8"?>\n<rpc message-id="'
            + mid
            + b'" xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">'
            + operation
            + b"</rpc>"
        )
        reply = await self._message()
        if b'message-id="' + mid + b'"' not in reply[:400]:
            raise NetconfError(f"reply to another message: {reply[:200]!r}")
        if b"rpc-error>" in reply:
            raise NetconfError(reply.decode(errors="replace")[:600])
        return reply

    async def close(self) -> None:
        with contextlib.suppress(NetconfError, ConnectionError, OSError, asyncssh.Error):
            await asyncio.wait_for(self.call(b"<close-session/>"), 5)
        await self._close()


async def connect_ssh(port: int, user: str, key: asyncssh.SSHKey) -> NetconfClient:
    conn = await asyncssh.connect(
        HOST,
        port,
        username=user,
        client_keys=[key],
        known_hosts=None,
        compression_algs=["none"],
        agent_path=None,
        config=[],
    )
    writer, reader, _ = await conn.open_session(subsystem="netconf", encoding=None)

    async def close() -> None:
        conn.close()
        await conn.wait_closed()

    client = NetconfClient(writer.write, lambda: reader.read(1 << 20), close)
    await client.hello()
    return client


async def connect_tls(port: int, context: ssl.SSLContext) -> NetconfClient:
    reader, writer = await asyncio.open_connection(HOST, port, ssl=context)

    async def close() -> None:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()

    client = NetconfClient(writer.write, lambda: reader.read(1 << 20), close)
    await client.hello()
    return client


GET_CONFIG = b"<get-config><source><running/></source></get-config>"


def edit_config(i: int) -> bytes:
    return (
        b"<edit-config><target><running/></target><config>"
        b'<system xmlns="urn:ietf:params:xml:ns:yang:ietf-system">'
        b"<hostname>bench-%d</hostname></system></config></edit-config>" % (i % 2)
    )


# -- the configuration both servers hold -----------------------------------------------------


def config_json() -> dict[str, Any]:
    return {
        "ietf-system:system": {
            "hostname": "bench-0",
            "contact": "noc@example.net",
            "location": "rack 7",
        },
        "ietf-interfaces:interfaces": {
            "interface": [
                {
                    "name": f"eth{i}",
                    "description": f"port {i}",
                    "type": "iana-if-type:ethernetCsmacd",
                    "enabled": i % 3 != 0,
                }
                for i in range(INTERFACES)
            ]
        },
    }


def config_xml() -> str:
    system = config_json()["ietf-system:system"]
    ifs = "".join(
        f"<interface><name>{i['name']}</name><description>{i['description']}</description>"
        f'<type xmlns:ianaift="{IANA_IF_NS}">ianaift:ethernetCsmacd</type>'
        f"<enabled>{str(i['enabled']).lower()}</enabled></interface>"
        for i in config_json()["ietf-interfaces:interfaces"]["interface"]
    )
    return (
        f'<config xmlns="{BASE_NS}">'
        f'<system xmlns="{SYSTEM_NS}"><hostname>{system["hostname"]}</hostname>'
        f"<contact>{system['contact']}</contact><location>{system['location']}</location>"
        f'</system><interfaces xmlns="{IF_NS}">{ifs}</interfaces></config>\n'
    )


# -- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


async def wait_for(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) == 0


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 5 s: only the processes this benchmark started."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class Started:
    """The processes this benchmark started, and what to tidy after them."""

    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    tidy: list[Callable[[], None]] = field(default_factory=list)

    def add(self, proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        self.processes.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.processes):
            stop(proc)
        for action in self.tidy:
            action()


def keep_yuma_home_clean(box: Started) -> None:
    """netconfd 2.13 writes ``~/.yuma/startup-cfg-txid.txt`` in the account's home directory
    whatever HOME or --home say; remove it afterwards unless it was there before."""
    folder = Path(pwd.getpwuid(os.getuid()).pw_dir) / ".yuma"
    txid = folder / "startup-cfg-txid.txt"
    had_folder, had_txid = folder.exists(), txid.exists()

    def tidy() -> None:
        if not had_txid:
            txid.unlink(missing_ok=True)
        if not had_folder:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty

    box.tidy.append(tidy)


@contextlib.contextmanager
def started() -> Iterator[Started]:
    box = Started()
    try:
        yield box
    finally:
        box.stop_all()


async def start_netconfd(box: Started, work: Path, user: str, user_key: asyncssh.SSHKey) -> int:
    """netconfd behind its own sshd; returns the SSH port."""
    for binary in NETCONFD_BINARIES:
        if not os.access(binary, os.X_OK):
            raise RuntimeError(f"{binary} missing: run scripts/setup-system.sh")
    port = free_port()
    keep_yuma_home_clean(box)
    sock = work / "ncxserver.sock"
    (work / "startup-cfg.xml").write_text(config_xml())
    env = {**os.environ, "HOME": str(work)}  # yuma keeps ~/.yuma state: keep it here
    box.add(
        subprocess.Popen(
            [
                "/usr/sbin/netconfd",
                "--module=ietf-system",
                "--module=ietf-interfaces",
                "--module=iana-if-type",
                "--target=running",
                "--with-startup=true",
                f"--startup={work / 'startup-cfg.xml'}",
                "--access-control=off",
                f"--ncxserver-sockname={sock}",
                f"--port={port}",
                "--log-level=warn",
                f"--log={work / 'netconfd.log'}",
                f"--home={work}",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    await wait_for(sock.exists, "netconfd's socket")
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    host_key.write_private_key(work / "ssh_host_ed25519_key")
    (work / "ssh_host_ed25519_key").chmod(0o600)
    (work / "authorized_keys").write_text(user_key.export_public_key().decode())
    (work / "authorized_keys").chmod(0o600)
    (work / "sshd_config").write_text(
        f"Port {port}\nListenAddress {HOST}\n"
        f"HostKey {work / 'ssh_host_ed25519_key'}\nPidFile {work / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {work / 'authorized_keys'}\nAllowUsers {user}\n"
        "PubkeyAuthentication yes\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUsePAM no\n"
        "StrictModes no\nCompression no\nMaxStartups 100\nMaxSessions 100\nLogLevel ERROR\n"
        "UseDNS no\n"
        f"Subsystem netconf /usr/sbin/netconf-subsystem --ncxserver-sockname={port}@{sock}\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    box.add(
        subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-e", "-f", str(work / "sshd_config")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(work / "sshd.log").open("wb"),
        )
    )
    await wait_for(lambda: port_open(port), "sshd")
    return port


@dataclass
class ZerotouchDevice:
    ports: dict[str, int]
    tls_client: ssl.SSLContext
    pid: int


async def start_zerotouch(
    box: Started, work: Path, user: str, user_key: asyncssh.SSHKey, max_sessions: int
) -> ZerotouchDevice:
    """``zerotouch device run`` on free loopback ports, with a domain identity for TLS."""
    now = datetime.now(UTC) - timedelta(minutes=5)
    ca = certs.make_ca("Bench Domain CA", now=now)
    server = certs.issue_tls_server(ca, "bench-device", hosts=[HOST], now=now)
    client = certs.issue_client(ca, "bench", now=now)
    device = work / "device"
    device.mkdir()
    # every session of the run comes from 127.0.0.1: the per-address cap must let them in
    limits = (
        f"\n[netconf_limits]\nmax_sessions = {max_sessions}\n"
        f"\n[limits]\nmax_connections_per_ip = {max_sessions}\n"
    )
    certfiles.write_certs(device / "ldevid.pem", [server.cert, *server.chain])
    certfiles.write_key(device / "ldevid.key", server.key)
    certfiles.write_certs(device / "domain-ca.pem", [ca.cert])
    (device / "startup.json").write_text(json.dumps(config_json()))
    public = user_key.export_public_key().decode().strip()
    (device / "device.toml").write_text(
        f'[[users]]\nname = "{user}"\nauthorized_keys = [{json.dumps(public)}]\n{limits}'
    )
    log = (work / "zerotouch.log").open("wb")
    proc = box.add(
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "zerotouch_plugin",
                "device",
                "run",
                "--dir",
                str(device),
                "--netconf-ssh",
                f"{HOST}:0",
                "--netconf-tls",
                f"{HOST}:0",
                "--restconf",
                f"{HOST}:0",
            ],
            cwd=Path(__file__).resolve().parents[1],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    )
    ports = await asyncio.wait_for(asyncio.to_thread(_read_ports, proc, 3), 60)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=ca.cert.public_bytes(Encoding.PEM).decode())
    cert_file, key_file = work / "client.pem", work / "client.key"
    certfiles.write_certs(cert_file, [client.cert])
    certfiles.write_key(key_file, client.key)
    ctx.load_cert_chain(cert_file, key_file)
    return ZerotouchDevice(ports, ctx, proc.pid)


_LISTENING = re.compile(r"^listening (\S+) \[?([^\]\s]+)\]?:(\d+)$")


def _read_ports(proc: subprocess.Popen[bytes], count: int) -> dict[str, int]:
    """``listening NAME HOST:PORT`` lines that ``zerotouch device run`` prints."""
    ports: dict[str, int] = {}
    assert proc.stdout is not None
    while len(ports) < count:
        line = proc.stdout.readline().decode().strip()
        if not line:
            raise RuntimeError("zerotouch device run exited early; see zerotouch.log")
        match = _LISTENING.match(line)
        if match:
            ports[match.group(1)] = int(match.group(3))
    return ports


# -- measurements -------------------------------------------------------------------------------


async def measure_setup(connect: Callable[[], Awaitable[NetconfClient]], sessions: int) -> Stats:
    """Connect (TCP, SSH or TLS, authentication, hello) ``sessions`` times, one at a time."""
    stats = Stats()
    start = time.perf_counter()
    for _ in range(sessions):
        t0 = time.perf_counter()
        client = await connect()
        stats.latencies.append(time.perf_counter() - t0)
        await client.close()
    stats.elapsed = time.perf_counter() - start
    return stats


async def measure_netconf(
    connect: Callable[[], Awaitable[NetconfClient]], sessions: int, seconds: float
) -> dict[str, Any]:
    setup = await measure_setup(connect, sessions)
    client = await connect()
    try:
        reply_bytes = len(await client.call(GET_CONFIG))
        get = await timed_loop(lambda _i: client.call(GET_CONFIG), seconds)
        edit = await timed_loop(lambda i: client.call(edit_config(i)), seconds)
    finally:
        await client.close()
    return {
        "session_setup": setup.summary(),
        "get_config": get.summary(),
        "edit_config": edit.summary(),
        "get_config_reply_bytes": reply_bytes,
    }


async def measure_restconf(port: int, context: ssl.SSLContext, seconds: float) -> dict[str, Any]:
    base = f"https://{HOST}:{port}/restconf/data/ietf-system:system"
    headers = {"Accept": "application/yang-data+json"}
    connector = aiohttp.TCPConnector(ssl=context, limit=1)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:

        async def get(_i: int) -> None:
            async with http.get(base) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"RESTCONF GET answered {resp.status}")

        async def patch(i: int) -> None:
            body = json.dumps({"ietf-system:system": {"hostname": f"rc-{i % 2}"}})
            ctype = {"Content-Type": "application/yang-data+json"}
            async with http.patch(base, data=body, headers=ctype) as resp:
                await resp.read()
                if resp.status != 204:
                    raise RuntimeError(f"RESTCONF PATCH answered {resp.status}")

        return {
            "get": (await timed_loop(get, seconds)).summary(),
            "patch": (await timed_loop(patch, seconds)).summary(),
        }


@contextlib.asynccontextmanager
async def workdir() -> AsyncIterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="zt-netconf-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def rss_mib(pid: int) -> float:
    """Resident set size of process ``pid`` (``VmRSS`` in /proc), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def measure_held(zt: ZerotouchDevice, held: int) -> dict[str, Any]:
    """Open ``held`` TLS sessions (50 handshakes at a time), hold them all, and have each
    answer a get-config while every one is open; the device's RSS before and while held."""
    port = zt.ports["netconf-tls"]
    idle = rss_mib(zt.pid)
    clients: list[NetconfClient] = []
    gate = asyncio.Semaphore(50)

    async def one() -> None:
        async with gate:
            clients.append(await connect_tls(port, zt.tls_client))

    start = time.perf_counter()
    try:
        await asyncio.gather(*(one() for _ in range(held)))
        opened = time.perf_counter() - start
        replies = await asyncio.gather(*(c.call(GET_CONFIG) for c in clients))
        answered = sum(1 for reply in replies if b"<data" in reply)
        holding = rss_mib(zt.pid)
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return {
        "sessions": len(clients),
        "answered": answered,
        "open_seconds": opened,
        "rss_before_mib": idle,
        "rss_held_mib": holding,
        "rss_per_session_kib": (holding - idle) * 1024 / max(len(clients), 1),
    }


async def run(seconds: float, sessions: int, held: int) -> dict[str, Any]:
    task = asyncio.current_task()
    if task is not None:  # SIGTERM stops the servers too (through the finally blocks)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    user = getpass.getuser()
    user_key = asyncssh.generate_private_key("ssh-ed25519")
    results: dict[str, Any] = {"client": CLIENT_SETTINGS, "seconds_per_phase": seconds}
    async with workdir() as work:
        with started() as box:
            (work / "netconfd").mkdir()
            progress("starting netconfd behind its own sshd")
            nc_port = await start_netconfd(box, work / "netconfd", user, user_key)
            progress("starting zerotouch device run")
            zt = await start_zerotouch(box, work, user, user_key, max(held, 64) + 16)
            await asyncio.sleep(1.0)  # settled: the idle RSS is measured before any session
            idle_rss = rss_mib(zt.pid)
            progress(f"measuring netconfd over SSH (port {nc_port})")
            results["netconfd_ssh"] = await measure_netconf(
                lambda: connect_ssh(nc_port, user, user_key), sessions, seconds
            )
            progress(f"measuring zerotouch over SSH (port {zt.ports['netconf-ssh']})")
            results["zerotouch_ssh"] = await measure_netconf(
                lambda: connect_ssh(zt.ports["netconf-ssh"], user, user_key), sessions, seconds
            )
            progress(f"measuring zerotouch over TLS (port {zt.ports['netconf-tls']})")
            results["zerotouch_tls"] = await measure_netconf(
                lambda: connect_tls(zt.ports["netconf-tls"], zt.tls_client), sessions, seconds
            )
            progress(f"measuring zerotouch RESTCONF (port {zt.ports['restconf']})")
            results["zerotouch_restconf"] = await measure_restconf(
                zt.ports["restconf"], zt.tls_client, seconds
            )
            if held:
                progress(f"holding {held} zerotouch NETCONF/TLS sessions")
                results["zerotouch_held"] = {
                    **await measure_held(zt, held),
                    "rss_idle_mib": idle_rss,
                }
            progress("stopping the servers")
    results["ratios"] = ratios(results)
    return results


def ratios(r: dict[str, Any]) -> dict[str, float]:
    """zerotouch / netconfd: > 1 is better for rates, < 1 is better for times."""
    nc, zt = r["netconfd_ssh"], r["zerotouch_ssh"]
    return {
        "get_config_per_s": zt["get_config"]["per_s"] / nc["get_config"]["per_s"],
        "edit_config_per_s": zt["edit_config"]["per_s"] / nc["edit_config"]["per_s"],
        "get_config_median": zt["get_config"]["median_ms"] / nc["get_config"]["median_ms"],
        "session_setup_median": zt["session_setup"]["median_ms"] / nc["session_setup"]["median_ms"],
    }


def report(r: dict[str, Any]) -> str:
    lines = [f"client: {r['client']}", f"seconds per phase: {r['seconds_per_phase']}", ""]
    head = f"{'server':<22}{'operation':<15}{'median ms':>11}{'p99 ms':>10}{'per s':>10}{'n':>8}"
    lines.append(head)
    for server in ("netconfd_ssh", "zerotouch_ssh", "zerotouch_tls"):
        for op in ("session_setup", "get_config", "edit_config"):
            s = r[server][op]
            lines.append(
                f"{server:<22}{op:<15}{s['median_ms']:>11.3f}{s['p99_ms']:>10.3f}"
                f"{s['per_s']:>10.1f}{s['count']:>8}"
            )
    for op in ("get", "patch"):
        s = r["zerotouch_restconf"][op]
        lines.append(
            f"{'zerotouch_restconf':<22}{op:<15}{s['median_ms']:>11.3f}{s['p99_ms']:>10.3f}"
            f"{s['per_s']:>10.1f}{s['count']:>8}"
        )
    lines.append("")
    lines.append(
        "get-config reply bytes: netconfd "
        f"{r['netconfd_ssh']['get_config_reply_bytes']}, zerotouch "
        f"{r['zerotouch_ssh']['get_config_reply_bytes']}"
    )
    lines.append("ratios zerotouch/netconfd over SSH:")
    for name, value in r["ratios"].items():
        lines.append(f"  {name:<24}{value:>8.2f}")
    if "zerotouch_held" in r:
        h = r["zerotouch_held"]
        lines.append(
            f"held NETCONF/TLS sessions: {h['sessions']} open in {h['open_seconds']:.1f} s, "
            f"{h['answered']} answered a get-config with all open; device RSS idle "
            f"{h['rss_idle_mib']:.1f} MiB, holding them {h['rss_held_mib']:.1f} MiB "
            f"({h['rss_per_session_kib']:.0f} KiB per session)"
        )
    lines.append(f"targets met: {targets_met(r)}")
    return "\n".join(lines)


IDLE_RSS_MIB = 60.0


def targets_met(r: dict[str, Any]) -> bool:
    """get-config calls/s over SSH >= netconfd's; session setup faster than netconfd's;
    every held session answered, with the device's idle RSS within ``IDLE_RSS_MIB``."""
    held = r.get("zerotouch_held")
    held_ok = held is None or (
        held["answered"] == held["sessions"] and held["rss_idle_mib"] <= IDLE_RSS_MIB
    )
    return bool(
        r["ratios"]["get_config_per_s"] >= 1.0
        and r["ratios"]["session_setup_median"] < 1.0
        and held_ok
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each timed phase")
    parser.add_argument("--sessions", type=int, default=20, help="sessions for setup timing")
    parser.add_argument(
        "--held", type=int, default=500, help="TLS sessions held open at once (0: skip)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    if not 0 < args.seconds <= 20 or not 0 < args.sessions <= 200 or not 0 <= args.held <= 2000:
        parser.error("--seconds must be in (0, 20], --sessions in (0, 200], --held in [0, 2000]")
    results = asyncio.run(run(args.seconds, args.sessions, args.held))
    print(json.dumps(results, indent=2) if args.json else report(results))
    return 1 if args.check and not targets_met(results) else 0


if __name__ == "__main__":
    sys.exit(main())

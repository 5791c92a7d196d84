"""The join proxy (RFC 8995 §4.3 circuit proxy) as a real ``zerotouch proxy serve`` process.

On loopback: a pledge enrolls through the proxy with a real registrar and MASA, the registrar
sees the pledge's own IDevID, the proxy relays opaque bytes exactly (counts in its log, no
HTTP in it), refuses above --max-connections, closes idle connections, and closes a pledge's
connection at once when its registrar is down. In network namespaces (tests/support/
discovery_lab.py): pledge -- proxy -- registrar/MASA with no route between pledge and
registrar, the pledge enrolling through the proxy's link-local address.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import socket
import ssl
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.e2e.test_brski_flow import FAST_RETRY, Lab, running_lab
from tests.support.discovery_lab import discovery_lab
from tests.support.netns import Host
from tests.support.processes import ServerProcess, free_port, run_cli, start_server
from zerotouch_plugin.artifacts import certs

PAYLOAD = 1_000_003  # bytes each way through the relay: many buffers, not a multiple of one


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("proxy")) as lab:
        yield lab


def start_proxy(registrar: str, *extra: str) -> ServerProcess:
    return start_server(
        "proxy", "-v", "proxy", "serve", "--listen", "127.0.0.1:0", "--registrar", registrar,
        *extra,
    )  # fmt: skip


def proxy_port(proxy: ServerProcess) -> int:
    return int(proxy.url.rpartition(":")[2])


def wait_for_log(proxy: ServerProcess, pattern: str, timeout: float = 10) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, proxy.stderr)
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no log line matching {pattern!r}:\n{proxy.stderr}")


CLOSE_LINE = r"close #(\d+) (\S+) -> registrar (\S+): (\d+) bytes up, (\d+) bytes down, \S+s, (.+)"


def test_pledge_enrolls_through_the_proxy_with_its_own_identity(lab: Lab) -> None:
    serial, folder = lab.pledge()
    proxy = start_proxy(lab.registrar_url)
    try:
        assert re.fullmatch(r"127\.0\.0\.1:\d+", proxy.url)
        result = run_cli(
            "pledge", "enroll", "--dir", folder, "--registrar", f"https://{proxy.url}",
            *FAST_RETRY, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert lab.state(serial) == "enroll-confirmed"
        record = lab.device(serial)
        assert record is not None
        idevid = certs.load_certs((folder / "idevid.pem").read_bytes())[0]
        # the registrar authenticated the pledge's own IDevID over the relayed TLS
        assert record["idevid_fingerprint"] == certs.fingerprint(idevid)
        closes = [m.groups() for m in re.finditer(CLOSE_LINE, proxy.stderr)]
        registrar_where = lab.registrar_url.removeprefix("https://")
        assert closes, proxy.stderr
        assert all(c[1].startswith("127.0.0.1:") and c[2] == registrar_where for c in closes)
        assert all(int(c[3]) > 0 and int(c[4]) > 0 for c in closes)
        # ciphertext only: nothing of the HTTP exchange or the pledge's name in the log
        for plaintext in ("HTTP/1.1", "requestvoucher", "simpleenroll", serial):
            assert plaintext not in proxy.stderr
    finally:
        assert proxy.stop() == 0
    assert "proxy stopped" in proxy.stderr


def test_registrar_certificate_seen_through_the_proxy_is_the_registrar_s(lab: Lab) -> None:
    """The proxy holds no certificate: the TLS server a client meets through it is the
    registrar itself."""
    proxy = start_proxy(lab.registrar_url)
    try:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with (
            socket.create_connection(("127.0.0.1", proxy_port(proxy)), timeout=10) as raw,
            ctx.wrap_socket(raw) as tls,
        ):
            seen = tls.getpeercert(binary_form=True)
        assert seen is not None
        registrar_cert = certs.load_certs((lab.domain / "registrar.pem").read_bytes())[0]
        assert x509.load_der_x509_certificate(seen) == registrar_cert
    finally:
        proxy.stop()


class Sink:
    """A raw TCP 'registrar' in the test's loop: reads to EOF, answers the SHA-256 of what
    it got plus PAYLOAD bytes, then closes; or holds connections open (``hold``)."""

    def __init__(self, *, hold: bool = False) -> None:
        self.hold = hold
        self.received: list[int] = []
        self.open = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Sink:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"https://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        try:
            data = await reader.read()  # to EOF: the pledge side's half close came through
            self.received.append(len(data))
            writer.write(hashlib.sha256(data).digest() + bytes(range(256)) * (PAYLOAD // 256))
            await writer.drain()
        finally:
            writer.close()
            self.open -= 1


async def exchange(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    writer.write_eof()  # half close: the answer must still come back
    answer = await asyncio.wait_for(reader.read(), 20)
    writer.close()
    return answer


def test_relay_is_byte_exact_with_half_close_and_counts_bytes() -> None:
    async def scenario() -> None:
        async with Sink() as sink:
            proxy = await asyncio.to_thread(start_proxy, sink.url)
            try:
                payload = os.urandom(PAYLOAD)
                answer = await exchange(proxy_port(proxy), payload)
                assert answer[:32] == hashlib.sha256(payload).digest()
                assert answer[32:] == bytes(range(256)) * (PAYLOAD // 256)
                assert sink.received == [PAYLOAD]
                line = await asyncio.to_thread(wait_for_log, proxy, CLOSE_LINE)
                up, down, reason = int(line[4]), int(line[5]), line[6]
                assert (up, down) == (PAYLOAD, 32 + 256 * (PAYLOAD // 256))
                assert reason == "pledge closed first"
            finally:
                proxy.stop()

    asyncio.run(scenario())


def test_everything_relayed_reaches_a_slow_pledge_after_the_registrar_closed() -> None:
    """The registrar answers 2 MB and closes at once; the pledge reads slowly through a small
    receive buffer: what the proxy still holds when the registrar's EOF arrives is delivered
    before it closes, nothing is dropped."""
    size = 2 * 1024 * 1024

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.write(os.urandom(16) * (size // 16))
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        proxy = await asyncio.to_thread(start_proxy, url)
        try:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", proxy_port(proxy)))
            sock.setblocking(False)
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.write_eof()
            received = 0
            while chunk := await asyncio.wait_for(reader.read(32768), 20):
                received += len(chunk)
                await asyncio.sleep(0.002)
            writer.close()
            assert received == size
            line = await asyncio.to_thread(wait_for_log, proxy, CLOSE_LINE)
            assert int(line[5]) == size
        finally:
            proxy.stop()
            server.close()

    asyncio.run(scenario())


async def closed_at_once(port: int, timeout: float = 2) -> float:
    """Seconds until the proxy closed a fresh connection without a byte."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert await asyncio.wait_for(reader.read(), timeout) == b""
    finally:
        writer.close()
    return time.monotonic() - started


def test_max_connections_refuses_the_extra_ones_and_logs_once_per_burst() -> None:
    async def scenario() -> None:
        async with Sink() as sink:
            proxy = await asyncio.to_thread(start_proxy, sink.url, "--max-connections", "1")
            port = proxy_port(proxy)
            try:
                _, held = await asyncio.open_connection("127.0.0.1", port)
                for _ in range(50):  # until the first is relayed (sink saw it)
                    if sink.open:
                        break
                    await asyncio.sleep(0.05)
                assert sink.open == 1
                for _ in range(3):
                    assert await closed_at_once(port) < 1.5
                assert sink.open == 1  # the refused ones never reached the registrar
                held.write_eof()
                await asyncio.sleep(0.3)
                answer = await exchange(port, b"after the burst")
                assert answer[:32] == hashlib.sha256(b"after the burst").digest()
                log = proxy.stderr
                assert log.count("--max-connections") == 1, log
                assert "3 connections were refused at the limit" in log
            finally:
                held.close()
                proxy.stop()

    asyncio.run(scenario())


def test_one_address_cannot_take_every_slot() -> None:
    """--max-connections-per-ip (default 8 of the 64): a host that holds its share of
    connections open is refused more, while a pledge from another address is still
    relayed."""

    async def scenario() -> None:
        async with Sink(hold=True) as sink:
            proxy = await asyncio.to_thread(start_proxy, sink.url)
            port = proxy_port(proxy)
            held = []
            try:
                for _ in range(8):
                    held.append((await asyncio.open_connection("127.0.0.1", port))[1])
                for _ in range(50):  # until all are relayed (the sink saw them)
                    if sink.open == 8:
                        break
                    await asyncio.sleep(0.05)
                assert sink.open == 8
                assert await closed_at_once(port) < 1.5  # a ninth from 127.0.0.1
                other = socket.create_connection(
                    ("127.0.0.1", port), source_address=("127.0.0.2", 0)
                )
                other.setblocking(False)
                _, writer = await asyncio.open_connection(sock=other)
                held.append(writer)
                for _ in range(50):
                    if sink.open == 9:
                        break
                    await asyncio.sleep(0.05)
                assert sink.open == 9  # another address still gets through
                assert "connections relayed from that address (--max-connections-per-ip)" in (
                    proxy.stderr
                )
            finally:
                for writer in held:
                    writer.close()
                proxy.stop()

    asyncio.run(scenario())


def test_sigterm_closes_relayed_connections_and_exits_cleanly() -> None:
    async def scenario() -> None:
        async with Sink() as sink:
            proxy = await asyncio.to_thread(start_proxy, sink.url)
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port(proxy))
            writer.write(b"partial")
            for _ in range(50):
                if sink.open:
                    break
                await asyncio.sleep(0.05)
            assert sink.open == 1
            assert await asyncio.to_thread(proxy.stop) == 0
            with contextlib.suppress(ConnectionResetError):
                assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            line = re.search(CLOSE_LINE, proxy.stderr)
            assert line is not None, proxy.stderr
            assert (line[4], line[6]) == ("7", "proxy shutting down")
            assert proxy.stderr.rstrip().endswith("proxy stopped")

    asyncio.run(scenario())


def test_idle_connection_is_closed_and_logged() -> None:
    async def scenario() -> None:
        async with Sink() as sink:
            proxy = await asyncio.to_thread(start_proxy, sink.url, "--idle-timeout", "0.5")
            try:
                waited = await closed_at_once(proxy_port(proxy), timeout=5)
                assert 0.4 < waited < 3
                line = await asyncio.to_thread(wait_for_log, proxy, CLOSE_LINE)
                assert (line[4], line[5], line[6]) == ("0", "0", "idle timeout")
            finally:
                proxy.stop()

    asyncio.run(scenario())


def test_registrar_down_closes_the_pledge_connection_at_once(lab: Lab) -> None:
    dead = f"https://127.0.0.1:{free_port()}"
    proxy = start_proxy(dead)
    try:
        assert asyncio.run(closed_at_once(proxy_port(proxy))) < 1.5
        wait_for_log(proxy, r"registrar 127\.0\.0\.1:\d+ unreachable \(.+\); set aside 1s")
        # set aside: the next pledge is closed without waiting for the dead registrar
        assert asyncio.run(closed_at_once(proxy_port(proxy))) < 1.5
        wait_for_log(proxy, r"no registrar reachable \(all set aside after failures")
        serial, folder = lab.pledge()
        started = time.monotonic()
        result = run_cli(
            "pledge", "enroll", "--dir", folder, "--registrar", f"https://{proxy.url}",
            "--retries", "1", "--timeout", "10", check=False,
        )  # fmt: skip
        assert result.returncode != 0
        assert time.monotonic() - started < 8
        assert lab.state(serial) is None
    finally:
        proxy.stop()


def test_registrar_announce_needs_an_interface(lab: Lab) -> None:
    result = run_cli(
        "registrar", "serve", "--dir", lab.domain, "--listen", "127.0.0.1:0",
        "--announce", "mdns", check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "config-error: --announce needs --interface: announcements are per link"
    )


def test_bad_options_are_one_line_errors() -> None:
    for args, message in (
        (("--listen", "::1:80", "--registrar", "https://127.0.0.1:1"), "[ADDRESS]:PORT"),
        (("--listen", "127.0.0.1:0"), "--registrar URL or --registrar-interface"),
        (("--listen", "127.0.0.1:0", "--registrar", "http://x"), "must be https"),
        (("--registrar", "https://127.0.0.1:1", "--max-connections", "0"), "at least 1"),
        (("--registrar", "https://127.0.0.1:1", "--announce", "vendor"), "announces"),
        (("--registrar", "https://127.0.0.1:1", "--announce", "mdns"), "needs --interface"),
    ):
        result = run_cli("proxy", "serve", *args, check=False, timeout=30)
        assert result.returncode == 1, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def connect_from(host: Host, address: str, interface: str, port: int) -> int:
    """Exit status of a TCP connect from ``host`` to ``address%interface``:``port`` (0 made)."""
    code = (
        "import socket,sys\n"
        f"s=socket.create_connection(({address + '%' + interface!r},{port}),timeout=2)\n"
        "s.close()"
    )
    return host.run(sys.executable, "-c", code, timeout=30).returncode


def test_pledge_enrolls_through_the_proxy_across_namespaces(tmp_path: Path) -> None:
    """pledge -- proxy -- registrar/MASA, no route between pledge and registrar; the pledge
    is given the proxy's link-local address with its zone."""
    with discovery_lab(tmp_path) as lab:
        # the proxy is reachable from the pledge's link, the registrar only through the proxy
        assert connect_from(lab.pledge, lab.proxy_link_local, lab.pledge_if,
                            lab.proxy_port) == 0  # fmt: skip
        assert connect_from(lab.pledge, lab.registrar_link_local, lab.pledge_if,
                            lab.registrar_port) != 0  # fmt: skip
        # the proxy listens on the pledge's link only (--interface: SO_BINDTODEVICE)
        proxy_far_side = lab.proxy.link_local(lab.proxy_registrar_if)
        assert connect_from(lab.registrar, proxy_far_side, lab.registrar_if,
                            lab.proxy_port) != 0  # fmt: skip
        serial, folder = lab.new_pledge()
        result = lab.run_pledge(
            "pledge", "enroll", "--dir", folder, "--registrar", lab.proxy_url, *FAST_RETRY,
            check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert lab.brski.state(serial) == "enroll-confirmed"
        assert lab.proxy_process is not None
        log = lab.proxy_process.stderr
        pledge_address = lab.pledge.link_local(lab.pledge_if)
        opened = re.findall(r"open #\d+ \[(\S+)\]:\d+ -> registrar \[(\S+)\]:(\d+)", log)
        assert opened, log
        assert {o[0] for o in opened} == {f"{pledge_address}%{lab.proxy_pledge_if}"}
        assert {o[1] for o in opened} == {f"{lab.registrar_link_local}%{lab.proxy_registrar_if}"}

        # a proxy listening on its link-local address with a zone, without --interface
        scoped = lab.start_in(
            lab.proxy, "proxy", "proxy", "serve",
            "--listen", f"[{lab.proxy_link_local}%{lab.proxy_pledge_if}]:0",
            "--registrar", lab.registrar_url_from_proxy,
        )  # fmt: skip
        assert scoped.url.startswith(f"[{lab.proxy_link_local}%{lab.proxy_pledge_if}]:")
        assert connect_from(lab.pledge, lab.proxy_link_local, lab.pledge_if,
                            _port_of(scoped)) == 0  # fmt: skip


def browse(host: Host, interface: str, service: str, timeout: float = 8) -> set[str]:
    """``HOST:PORT`` of the ``service`` instances a real mDNS browser finds on the link."""
    return _find(host, "mdns", f"MdnsFinder({interface!r}, [{service!r}])", timeout)


def grasp_find(host: Host, interface: str, objective: str, timeout: float = 8) -> set[str]:
    """``HOST:PORT`` of the ``objective`` floods a real GRASP listener hears on the link."""
    return _find(host, "grasp", f"GraspFinder({interface!r}, {objective!r})", timeout)


def _find(host: Host, module: str, finder: str, timeout: float) -> set[str]:
    code = (
        "import asyncio\n"
        f"from zerotouch_plugin.services.discovery.{module} import *\n"
        f"found = asyncio.run({finder}.find(timeout={timeout}))\n"
        "print('\\n'.join(c.where for c in found))"
    )
    result = host.run(sys.executable, "-c", code, timeout=60)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_announced_by_grasp_and_mdns_and_registrar_found_by_grasp(tmp_path: Path) -> None:
    """--announce grasp,mdns on both: the proxy finds its registrar by GRASP AN_join_registrar
    (RFC 8995 §4.3) and relays a pledge to it; real listeners see AN_Proxy and
    _brski-proxy._tcp on the pledge's link (§4.1.1, §4.1.2) and AN_join_registrar and
    _brski-registrar._tcp on the proxy's registrar-facing link, each with the link-local
    address of the announcing interface and the listening port; none reaches the other link.
    When the registrar comes back on another port, the proxy finds it again and relays there."""
    with discovery_lab(
        tmp_path, registrar_announce="grasp,mdns", proxy_announce="grasp,mdns",
        proxy_by_grasp=True,
    ) as lab:  # fmt: skip
        proxy, registrar_if = lab.proxy_process, lab.proxy_registrar_if
        assert proxy is not None
        registrar_seen = f"[{lab.registrar_link_local}%{registrar_if}]:{lab.registrar_port}"
        wait_for_log(proxy, re.escape(f"registrars found: {registrar_seen}"))
        proxy_seen = f"[{lab.proxy_link_local}%{lab.pledge_if}]:{lab.proxy_port}"
        assert grasp_find(lab.pledge, lab.pledge_if, "AN_Proxy") == {proxy_seen}
        assert browse(lab.pledge, lab.pledge_if, "_brski-proxy._tcp.local.") == {proxy_seen}
        assert grasp_find(lab.proxy, registrar_if, "AN_join_registrar") == {registrar_seen}
        assert browse(lab.proxy, registrar_if, "_brski-registrar._tcp.local.") == {registrar_seen}
        # link-local announcements stay on their link
        assert grasp_find(lab.pledge, lab.pledge_if, "AN_join_registrar", 2) == set()
        assert browse(lab.pledge, lab.pledge_if, "_brski-registrar._tcp.local.", 2) == set()

        serial, folder = lab.new_pledge()
        enrolled = lab.run_pledge(
            "pledge", "enroll", "--dir", folder, "--registrar", lab.proxy_url, *FAST_RETRY,
            check=False,
        )  # fmt: skip
        assert enrolled.returncode == 0, enrolled.stderr
        assert lab.brski.state(serial) == "enroll-confirmed"

        # the registrar restarts on another port: the proxy learns it from its floods
        old = lab.registrar_process
        lab.stop(old)
        lab.start_registrar("--announce", "grasp", "--interface", lab.registrar_if)
        assert lab.registrar_port != _port_of(old)
        moved = f"[{lab.registrar_link_local}%{registrar_if}]:{lab.registrar_port}"
        # the old address is kept until it goes silent for long (tried first, refused, set
        # aside), the new one joins it
        wait_for_log(proxy, "registrars found: .*" + re.escape(moved))
        serial, folder = lab.new_pledge()
        enrolled = lab.run_pledge(
            "pledge", "enroll", "--dir", folder, "--registrar", lab.proxy_url, *FAST_RETRY,
            check=False,
        )  # fmt: skip
        assert enrolled.returncode == 0, enrolled.stderr
        assert lab.brski.state(serial) == "enroll-confirmed"
        assert f"-> registrar {moved}" in proxy.stderr


def _port_of(process: ServerProcess | None) -> int:
    assert process is not None
    return int(process.url.rpartition(":")[2])

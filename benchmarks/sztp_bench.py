"""SZTP bootstrap server throughput: get-bootstrapping-data on loopback (RFC 8572 §7.1).

Starts a real ``zerotouch sztp serve`` subprocess on 127.0.0.1 and sends requests from
clients that each open a NEW TLS connection per request, authenticated by an IDevID, asking
for signed data (the conveyed information is signed by the owner per request, and the owner
certificate and ownership voucher are sent beside it). The TLS floor is measured in the same
run against the same server: a new IDevID-authenticated connection per request for the
(trivial) ``GET /.well-known/host-meta``. Figures are printed as a fraction of that floor.

    .venv/bin/python benchmarks/sztp_bench.py [--requests 600] [--check] [--json]

Targets (``--check`` exits 1 when one is missed): at least 200 requests/s with 20 concurrent
clients, and p50 latency under 50 ms at 20 clients. Latency is from sending the request on
the new, established connection to the full answer; the time including the handshake is
printed too, but with 20 clients that never pause it is at least 20 / rate (Little's law),
so no server whose TLS floor is under 400/s could show it under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cryptography.hazmat.primitives.serialization import Encoding  # noqa: E402

from zerotouch_plugin.artifacts import certs, sztp  # noqa: E402
from zerotouch_plugin.artifacts.voucher import Assertion, Voucher, sign_artifact  # noqa: E402
from zerotouch_plugin.services import certfiles  # noqa: E402
from zerotouch_plugin.services._tls import client_context  # noqa: E402
from zerotouch_plugin.services.sztp import server  # noqa: E402

TARGET_RATE = 200.0  # requests/s at 20 clients
TARGET_P50 = 0.050  # seconds at 20 clients
DEVICES = 20
GBD = "/restconf/operations/ietf-sztp-bootstrap-server:get-bootstrapping-data"
BODY = b'{"ietf-sztp-bootstrap-server:input": {"signed-data-preferred": [null]}}'


def build_server(folder: Path) -> tuple[list[certs.Identity], certs.Identity]:
    """The server folder as ``zerotouch sztp init`` leaves it, plus a response and a
    voucher per device; returns the devices' IDevIDs and the server CA."""
    now = datetime.now(UTC)
    folder.mkdir(parents=True)
    vendor = certs.make_ca("bench manufacturer", now=now)
    masa = certs.issue_masa_signer(vendor, "bench MASA", now=now)
    server_ca = certs.make_ca("bench sztp CA", now=now)
    tls = certs.issue_tls_server(server_ca, "bench sztp", hosts=["127.0.0.1"], now=now)
    owner_ca = certs.make_ca("bench owner CA", now=now)
    owner = certs.issue_client(owner_ca, "bench owner", now=now)
    certfiles.write_certs(folder / server.TLS_CERT, [tls.cert, *tls.chain])
    certfiles.write_key(folder / server.TLS_KEY, tls.key)
    certfiles.write_certs(folder / server.MANUFACTURER_CA, [vendor.cert])
    certfiles.write_certs(folder / server.OWNER_CERT, [owner.cert, *owner.chain])
    certfiles.write_key(folder / server.OWNER_KEY, owner.key)
    repo = server.open_repository(folder, server.load_config_for(folder))
    info = sztp.OnboardingInformation(
        configuration_handling=sztp.ConfigurationHandling.MERGE,
        configuration=b'{"ietf-system:system": {"hostname": "bench"}}',
        post_configuration_script=b"#!/bin/sh\necho done\n",
    )
    repo.set_response("default", info, now=now)
    devices = []
    for index in range(DEVICES):
        serial = f"SZTP-BENCH-{index:03d}"
        idevid = certs.issue_idevid(vendor, serial, masa_url=None, now=now)
        voucher = Voucher(
            created_on=now,
            assertion=Assertion.VERIFIED,
            serial_number=serial,
            pinned_domain_cert=owner_ca.cert.public_bytes(Encoding.DER),
            expires_on=now + timedelta(days=30),
        )
        der = sign_artifact(voucher, signer=masa, now=now)
        repo.set_device(serial, voucher=der, voucher_expires=voucher.expires_on)
        devices.append(idevid)
    repo.db.dispose()
    return devices, server_ca


def start(folder: Path) -> tuple[subprocess.Popen[str], int]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "zerotouch_plugin", "sztp", "serve", "--dir", str(folder),
         "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening sztp "):
        proc.kill()
        raise SystemExit(f"sztp server did not start: {line!r}")
    return proc, int(line.rsplit(":", 1)[1])


def _request(method: str, path: str, body: bytes) -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: application/yang-data+json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def one(port: int, ctx: ssl.SSLContext, request: bytes) -> tuple[float, float]:
    """One request on a new TLS connection: seconds from connect to the full answer, and
    from sending the request (handshake done) to the full answer."""
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    sent = time.perf_counter()
    writer.write(request)
    answer = await reader.read()
    writer.close()
    done = time.perf_counter()
    if not answer.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"unexpected answer: {answer[:200]!r}")
    return done - start, done - sent


async def run(
    port: int, contexts: list[ssl.SSLContext], request: bytes, total: int, clients: int
) -> tuple[float, list[float], list[float]]:
    """``total`` requests by ``clients`` concurrent clients: seconds taken, latencies with the
    handshake and request latencies."""
    latencies: list[float] = []
    requests: list[float] = []
    counter = iter(range(total))

    async def client(ctx: ssl.SSLContext) -> None:
        for _ in counter:
            whole, request_only = await one(port, ctx, request)
            latencies.append(whole)
            requests.append(request_only)

    start = time.perf_counter()
    await asyncio.gather(*(client(contexts[i % len(contexts)]) for i in range(clients)))
    return time.perf_counter() - start, latencies, requests


async def measure(
    port: int, contexts: list[ssl.SSLContext], total: int, rounds: int
) -> dict[str, float]:
    """Floor and get-bootstrapping-data in alternating rounds, so that load from elsewhere on
    the machine weighs on both alike."""
    gbd = _request("POST", GBD, BODY)
    floor = _request("GET", "/.well-known/host-meta", b"")
    await run(port, contexts, gbd, 40, 4)  # warm-up: caches, code paths
    figures: dict[str, float] = {}
    for clients in (1, 20):
        count = max(1, (total // 4 if clients == 1 else total) // rounds)
        floor_time = gbd_time = 0.0
        whole: list[float] = []
        requests: list[float] = []
        for _ in range(rounds):
            floor_time += (await run(port, contexts, floor, count, clients))[0]
            took, round_whole, round_requests = await run(port, contexts, gbd, count, clients)
            gbd_time += took
            whole += round_whole
            requests += round_requests
        figures[f"floor_rate_{clients}"] = count * rounds / floor_time
        figures[f"rate_{clients}"] = count * rounds / gbd_time
        figures[f"p50_{clients}"] = statistics.median(requests)
        figures[f"p95_{clients}"] = statistics.quantiles(requests, n=100)[94]
        figures[f"p50_with_handshake_{clients}"] = statistics.median(whole)
        figures[f"fraction_of_floor_{clients}"] = floor_time / gbd_time
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=600, help="requests at 20 clients")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per run")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sztp-bench-") as tmp:
        devices, server_ca = build_server(Path(tmp) / "server")
        contexts = [client_context(d, trust=[server_ca.cert]) for d in devices]
        proc, port = start(Path(tmp) / "server")
        try:
            figures = asyncio.run(measure(port, contexts, args.requests, args.rounds))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    ok = figures["rate_20"] >= TARGET_RATE and figures["p50_20"] < TARGET_P50
    figures["targets_met"] = float(ok)
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        for clients in (1, 20):
            print(
                f"{clients:>2} clients: {figures[f'rate_{clients}']:7.1f} req/s "
                f"({figures[f'fraction_of_floor_{clients}']:.2f} of the TLS floor "
                f"{figures[f'floor_rate_{clients}']:.1f}/s), "
                f"request p50 {figures[f'p50_{clients}'] * 1000:.1f} ms, "
                f"p95 {figures[f'p95_{clients}'] * 1000:.1f} ms "
                f"(with the handshake: p50 {figures[f'p50_with_handshake_{clients}'] * 1000:.1f}"
                " ms)"
            )
        print(
            f"targets (>= {TARGET_RATE:.0f}/s and p50 < {TARGET_P50 * 1000:.0f} ms at 20 "
            f"clients): {'met' if ok else 'MISSED'}"
        )
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    raise SystemExit(main())

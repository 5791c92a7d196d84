"""Headless BRSKI enrollment on loopback: one pledge, then a burst of pledges.

Starts real ``zerotouch masa serve`` and ``zerotouch registrar serve --auto-accept``
subprocesses on 127.0.0.1, then runs in-process pledge clients (the same code as
``zerotouch pledge enroll``) against them. Baselines measured in the same run, so the figures
are ratios that travel between machines: a plain HTTPS round trip to the registrar's
``/.well-known/est/cacerts`` (new TLS connection with the IDevID each time), and raw ECDSA
P-256 sign+verify.

    .venv/bin/python benchmarks/enroll_bench.py [--burst 100] [--concurrency 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from zerotouch_plugin.artifacts import certs  # noqa: E402
from zerotouch_plugin.artifacts.signer import tls_identity  # noqa: E402
from zerotouch_plugin.demo.services import Services, free_port  # noqa: E402
from zerotouch_plugin.roles.pledge import RetryPolicy  # noqa: E402
from zerotouch_plugin.services import certfiles  # noqa: E402
from zerotouch_plugin.services._tls import client_context  # noqa: E402
from zerotouch_plugin.services.pledge_client import enroll, load_pledge_config  # noqa: E402

RETRY = RetryPolicy(attempts=8, base_delay=0.2, max_delay=2)


def make_pledges(vendor: Path, root: Path, count: int, masa_url: str) -> list[Path]:
    """Pledge folders as ``zerotouch vendor idevid`` writes them (in-process: faster)."""
    ca = certfiles.load_identity(vendor / "ca.pem", vendor / "ca.key")
    now = datetime.now(UTC)
    folders = []
    for index in range(count):
        folder = root / f"P{index:04d}"
        folder.mkdir(parents=True)
        idevid = certs.issue_idevid(ca, f"BENCH-{index:04d}", masa_url=masa_url, now=now)
        certfiles.write_certs(folder / "idevid.pem", [idevid.cert, ca.cert])
        certfiles.write_key(folder / "idevid.key", idevid.key)
        certfiles.write_certs(folder / "masa-ca.pem", [ca.cert])
        folders.append(folder)
    return folders


async def https_round_trip(folder: Path, url: str, runs: int) -> list[float]:
    """Baseline: new TLS connection (IDevID client cert) + GET cacerts, per run."""
    config = load_pledge_config(folder)
    ctx = client_context(tls_identity(config.idevid), trust=None)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        connector = aiohttp.TCPConnector(ssl=ctx, force_close=True)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get(url + "/.well-known/est/cacerts") as resp,
        ):
            await resp.read()
            assert resp.status == 200, resp.status
        times.append(time.perf_counter() - start)
    return times


def ecdsa_sign_verify(runs: int) -> float:
    """Baseline: seconds per raw ECDSA P-256 sign + verify."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    data = b"x" * 512
    start = time.perf_counter()
    for _ in range(runs):
        public.verify(key.sign(data, ec.ECDSA(hashes.SHA256())), data, ec.ECDSA(hashes.SHA256()))
    return (time.perf_counter() - start) / runs


async def burst(folders: list[Path], url: str, concurrency: int) -> tuple[float, int]:
    gate = asyncio.Semaphore(concurrency)
    failures = 0

    async def one(folder: Path) -> None:
        nonlocal failures
        async with gate:
            try:
                await enroll(folder, url, retry=RETRY, timeout=60)
            except Exception as exc:
                failures += 1
                print(f"  {folder.name}: {type(exc).__name__}: {exc}", file=sys.stderr)

    start = time.perf_counter()
    await asyncio.gather(*(one(folder) for folder in folders))
    return time.perf_counter() - start, failures


async def measure(root: Path, args: argparse.Namespace) -> dict[str, float]:
    """MASA and registrar as ``zerotouch ... serve`` processes (started and stopped like the
    demo's), then the baselines, single enrollments and the burst against them."""
    services = Services(root)
    deadline = time.monotonic() + 60
    masa_port = free_port()
    masa_url = f"https://127.0.0.1:{masa_port}"
    vendor, domain = str(root / "V"), str(root / "R")
    await services.run("vendor", "init", "--dir", vendor, "--masa-url", masa_url)
    await services.run("registrar", "init", "--dir", domain, "--manufacturer-ca",
                       f"{vendor}/ca.pem", "--masa-trust", f"{vendor}/ca.pem")  # fmt: skip
    pledges = make_pledges(root / "V", root / "P", args.singles + args.burst + 2, masa_url)
    try:
        await services.serve("masa", "masa", "masa", "serve", "--dir", vendor,
                             "--listen", f"127.0.0.1:{masa_port}", deadline=deadline)  # fmt: skip
        _, url = await services.serve("registrar", "registrar", "registrar", "serve", "--dir",
                                      domain, "--listen", "127.0.0.1:0", "--auto-accept",
                                      deadline=deadline)  # fmt: skip
        rtt = await https_round_trip(pledges[0], url, 30)
        singles = []
        for folder in pledges[1 : 1 + args.singles]:
            start = time.perf_counter()
            await enroll(folder, url, retry=RETRY, timeout=60)
            singles.append(time.perf_counter() - start)
        cli_folder = str(pledges[1 + args.singles])
        start = time.perf_counter()
        await services.run("pledge", "enroll", "--dir", cli_folder, "--registrar", url)
        cli_seconds = time.perf_counter() - start
        elapsed, failures = await burst(pledges[2 + args.singles :], url, args.concurrency)
    finally:
        services.stop()
    return {
        "rtt": statistics.median(rtt),
        "single": statistics.median(singles),
        "cli": cli_seconds,
        "elapsed": elapsed,
        "failures": failures,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--burst", type=int, default=100, help="pledges in the burst")
    parser.add_argument("--concurrency", type=int, default=20, help="pledges at a time")
    parser.add_argument("--singles", type=int, default=5, help="single enrollments timed")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="zt-enroll-bench-") as tmp:
        figures = asyncio.run(measure(Path(tmp), args))
    ecdsa = ecdsa_sign_verify(500)
    rtt_median, single, cli_seconds = figures["rtt"], figures["single"], figures["cli"]
    elapsed, failures = figures["elapsed"], int(figures["failures"])
    done = args.burst - failures
    rate = done / elapsed

    cpu = os.cpu_count()
    print(f"enroll_bench on {cpu} CPU(s), loopback, P-256 everywhere")
    print(f"  baseline HTTPS round trip (new TLS + GET cacerts): {rtt_median * 1000:8.1f} ms")
    print(f"  baseline raw ECDSA P-256 sign+verify:              {ecdsa * 1000:8.3f} ms")
    print(
        f"  one enrollment (in-process, median of {args.singles}):      {single * 1000:8.1f} ms"
        f"  = {single / rtt_median:5.1f} x HTTPS round trip"
        f" = {single / ecdsa:6.0f} x ECDSA sign+verify"
    )
    print(f"  one enrollment (zerotouch pledge enroll, CLI):     {cli_seconds * 1000:8.1f} ms")
    print(
        f"  burst {done} pledges, {args.concurrency} at a time: {elapsed:6.2f} s ="
        f" {rate:6.1f} enrollments/s = {rate * rtt_median:5.2f} x (1 / HTTPS round trip);"
        f" failures {failures}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

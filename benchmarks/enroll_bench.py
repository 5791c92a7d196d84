"""Headless BRSKI enrollment at site scale on loopback.

Starts real ``zerotouch masa serve`` and K ``zerotouch registrar serve --auto-accept``
subprocesses on 127.0.0.1, prepares the IDevIDs before the timed part, then runs N
enrollments (voucher through the MASA, voucher_status with the MASA audit-log verdict, EST,
enrollstatus) C at a time with the product's pledge logic (``roles/pledge.py`` driven by
``services/pledge_client.py``, the code of ``zerotouch pledge enroll``). Baselines come from
the same run, so the figures are ratios that travel between machines: one HTTPS round trip
(new mutual TLS connection + GET cacerts), this machine's ECDSA P-256 sign and verify rates
and its mutual-TLS handshake rate, from which the crypto ideal follows. The simulated pledges
run in this process (``--pledge-processes`` shares them among more): its CPU per timed
enrollment is theirs, on the same cores as the servers. The servers' CPU per enrollment is
that of the timed burst alone: each process's CPU is read from /proc when it is ready and
again just before and after the burst, so neither its start-up (imports, keys, schema) nor
the untimed runs before the burst (baselines, single enrollments, trace, ``zerotouch pledge
enroll``) count. ``--trace`` adds the timeline of one enrollment alone, step by step.

    .venv/bin/python benchmarks/enroll_bench.py --pledges 2000 --concurrency 200 [--db URL]
        [--registrars K] [--pledge-processes P] [--json] [--check] [--trace]
    .venv/bin/python benchmarks/enroll_bench.py --pledges 2000 --concurrency 200 \
        --compare-db postgresql://... [--pairs 3] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import queue
import secrets
import ssl
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from zerotouch_plugin.artifacts import certs  # noqa: E402
from zerotouch_plugin.artifacts.signer import tls_identity  # noqa: E402
from zerotouch_plugin.demo.services import Service, Services, free_port  # noqa: E402
from zerotouch_plugin.roles.pledge import (  # noqa: E402
    Enrollment,
    HttpRequest,
    Pledge,
    Response,
    RetryPolicy,
)
from zerotouch_plugin.services import certfiles  # noqa: E402
from zerotouch_plugin.services._gate import settle_heap  # noqa: E402
from zerotouch_plugin.services._tls import client_context  # noqa: E402
from zerotouch_plugin.services.pledge_client import (  # noqa: E402
    PledgeClient,
    drive,
    enroll,
    load_pledge_config,
    write_enrollment,
)

RETRY = RetryPolicy(attempts=8, base_delay=0.2, max_delay=2)

# Public-key operations one enrollment needs outside TLS, counted from the protocol
# (RFC 8995 §5.2-5.9, RFC 7030): pledge voucher-request, registrar voucher-request, MASA
# voucher, voucher_status, CSR, LDevID, enrollstatus are signed (plus the pledge's new key);
# the registrar and MASA verify the requests, the registrar and the pledge the voucher, the
# registrar the status telemetry, the CSR and the IDevID chain.
SIGNS_PER_ENROLLMENT = 8
VERIFIES_PER_ENROLLMENT = 10
# Mutual-TLS handshakes: one, the pledge's with the registrar: the provisional connection
# carries the voucher-request and, once the voucher's pin validates its certificate, goes on
# as the verified session (voucher_status, csrattrs, simpleenroll, enrollstatus). The
# registrar's calls to the MASA (voucher, audit log) go over its kept-alive connection pool,
# whose few handshakes per process are spread over all enrollments: counted as none.
HANDSHAKES_PER_ENROLLMENT = 1

# Targets of the issue on the 2-CPU machine (pledges and servers on the same cores).
TARGET_RATE = 100.0
TARGET_P99 = 2.0
TARGET_SINGLE_RTTS = 10.0
TARGET_CLI_MS = 400.0
LOOPBACK_CONNECTIONS = 1000


SERVER_CPU_NOTE = (
    "server CPU is the timed burst's alone: start-up to ready and the untimed runs before"
    " the burst (baselines, single enrollments, trace, CLI enroll) are subtracted"
)


@dataclass
class ProcessUse:
    """CPU seconds, peak RSS and RSS at the end of the run of one server process (from
    /proc, read before it stops)."""

    name: str
    cpu_seconds: float
    peak_rss_mb: float
    rss_mb: float


@dataclass
class ServerUse:
    """One server process of the burst: CPU seconds (user + system) up to ready, between
    ready and the burst (the untimed runs) and over the timed burst alone, the burst's per
    enrollment, peak RSS and RSS at the end."""

    name: str
    startup_cpu_seconds: float
    untimed_cpu_seconds: float
    cpu_seconds: float
    cpu_ms_per_enrollment: float
    peak_rss_mb: float
    rss_mb: float


@dataclass
class TraceStep:
    """One step of the traced enrollment: wall time, the CPU of the pledge (this process)
    and of each server process over it. On a network step the wall time not spent in the
    pledge's CPU is the wait on the servers (their handling, the MASA call, the commits)."""

    step: str
    network: bool
    wall_ms: float
    pledge_cpu_ms: float
    server_cpu_ms: dict[str, float]


@dataclass
class Report:
    cpus: int
    python: str
    pledges: int
    concurrency: int
    registrars: int
    db: str
    rtt_ms: float
    ecdsa_sign_per_s: float
    ecdsa_verify_per_s: float
    tls_handshakes_per_s: float
    single_ms: float
    single_rtts: float
    single_pledge_cpu_ms: float
    cli_ms: float
    elapsed_s: float
    enrollments_per_s: float
    pledge_cpu_ms: float
    pledge_processes: int
    pledge_cpu_ms_by_process: list[float]
    p50_ms: float
    p95_ms: float
    p99_ms: float
    first_wave_mean_ms: float | None
    first_wave_max_ms: float | None
    after_first_wave_p99_ms: float | None
    crypto_ideal_per_s: float
    achieved_fraction: float
    failures: dict[str, int] = field(default_factory=dict)
    processes: list[ServerUse] = field(default_factory=list)
    trace: list[TraceStep] = field(default_factory=list)
    pledge_dir: str = "beside the servers' files"
    server_cpu: str = SERVER_CPU_NOTE

    def missed(self) -> list[str]:
        """Targets this run missed, one line each."""
        checks = [
            (sum(self.failures.values()) == 0, f"{sum(self.failures.values())} failures"),
            (self.enrollments_per_s >= TARGET_RATE, f"{self.enrollments_per_s:.1f}/s < 100/s"),
            (self.p99_ms <= TARGET_P99 * 1000, f"p99 {self.p99_ms:.0f} ms > 2 s"),
            (self.single_rtts <= TARGET_SINGLE_RTTS, f"single = {self.single_rtts:.1f} RTTs > 10"),
            (self.cli_ms <= TARGET_CLI_MS, f"pledge enroll {self.cli_ms:.0f} ms > 400 ms"),
        ]
        return [text for ok, text in checks if not ok]


def make_pledges(vendor: Path, root: Path, count: int, masa_url: str) -> list[Path]:
    """Pledge folders as ``zerotouch vendor idevid`` writes them (in-process: faster)."""
    ca = certfiles.load_identity(vendor / "ca.pem", vendor / "ca.key")
    now = datetime.now(UTC)
    folders = []
    for index in range(count):
        folder = root / f"P{index:05d}"
        folder.mkdir(parents=True)
        idevid = certs.issue_idevid(ca, f"BENCH-{index:05d}", masa_url=masa_url, now=now)
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
            if resp.status != 200:
                raise RuntimeError(f"cacerts answered {resp.status}")
        times.append(time.perf_counter() - start)
    return times


def ecdsa_rates(runs: int) -> tuple[float, float]:
    """Baseline: raw ECDSA P-256 signatures and verifications per second."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    data = b"x" * 512
    start = time.perf_counter()
    signatures = [key.sign(data, ec.ECDSA(hashes.SHA256())) for _ in range(runs)]
    signed = time.perf_counter() - start
    start = time.perf_counter()
    for signature in signatures:
        public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    verified = time.perf_counter() - start
    return runs / signed, runs / verified


def tls_handshake_rate(server: Path, client: Path, runs: int) -> float:
    """Baseline: mutual-TLS handshakes per second in memory (both ends in this process,
    P-256 certificates verified against their CA on both sides), no sockets."""
    ca = str(server / "masa-ca.pem")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(server / "idevid.pem", server / "idevid.key")
    server_ctx.load_verify_locations(ca)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_cert_chain(client / "idevid.pem", client / "idevid.key")
    client_ctx.load_verify_locations(ca)
    client_ctx.check_hostname = False
    start = time.perf_counter()
    for _ in range(runs):
        c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
        tls_client = client_ctx.wrap_bio(c_in, c_out, server_side=False)
        tls_server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
        done = [False, False]
        while not all(done):
            for index, (end, out, peer_in) in enumerate(
                ((tls_client, c_out, s_in), (tls_server, s_out, c_in))
            ):
                if not done[index]:
                    try:
                        end.do_handshake()
                        done[index] = True
                    except ssl.SSLWantReadError:
                        pass
                peer_in.write(out.read())
    return runs / (time.perf_counter() - start)


def process_cpu_seconds(service: Service) -> float:
    """CPU seconds (utime + stime of /proc/PID/stat, ended threads included) a running
    service has used so far."""
    fields = Path(f"/proc/{service.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_use(service: Service) -> ProcessUse:
    """Read /proc/PID for the CPU seconds (user + system), peak RSS and current RSS of a
    running service."""
    kb = {"VmHWM:": 0, "VmRSS:": 0}
    for line in Path(f"/proc/{service.popen.pid}/status").read_text().splitlines():
        parts = line.split()
        if parts and parts[0] in kb:
            kb[parts[0]] = int(parts[1])
    return ProcessUse(
        service.name, process_cpu_seconds(service), kb["VmHWM:"] / 1024, kb["VmRSS:"] / 1024
    )


def server_use(service: Service, ready: float, before: float, enrollments: int) -> ServerUse:
    """A service's use of the burst, from its CPU at ready and just before the burst, read
    now, just after it: the burst's CPU is the difference with ``before`` alone."""
    use = process_use(service)
    timed = use.cpu_seconds - before
    return ServerUse(
        name=service.name,
        startup_cpu_seconds=ready,
        untimed_cpu_seconds=before - ready,
        cpu_seconds=timed,
        cpu_ms_per_enrollment=timed / enrollments * 1000,
        peak_rss_mb=use.peak_rss_mb,
        rss_mb=use.rss_mb,
    )


def thread_cpu_seconds(pid: int) -> float:
    """CPU seconds of every thread of ``pid`` so far, to the nanosecond (schedstat), where
    /proc/PID/stat counts 10 ms ticks: fine enough for one request."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended meanwhile
    return total / 1e9


# Well-known path -> the step it is in the trace.
TRACE_NAMES = {
    "/.well-known/brski/requestvoucher": "requestvoucher (registrar -> MASA voucher)",
    "/.well-known/brski/voucher_status": "voucher_status",
    "/.well-known/est/cacerts": "cacerts",
    "/.well-known/est/csrattrs": "csrattrs",
    "/.well-known/est/simpleenroll": "simpleenroll",
    "/.well-known/brski/enrollstatus": "enrollstatus",
}


class Timeline:
    """Consecutive steps of one enrollment: ``enter`` ends the running step and starts the
    next. The servers' CPU is read between the marks, outside the steps."""

    def __init__(self, servers: list[Service]) -> None:
        self.servers = servers
        self.steps: list[TraceStep] = []
        self._open: tuple[str, bool] | None = None
        self._servers = self._server_cpu()
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def _server_cpu(self) -> list[float]:
        return [thread_cpu_seconds(server.popen.pid) for server in self.servers]

    def enter(self, step: str | None, *, network: bool = False) -> None:
        """End the running step (if any) and start ``step`` (None: the end)."""
        wall, cpu = time.perf_counter(), time.process_time()
        servers = self._server_cpu()
        if self._open is not None:
            used = zip(self.servers, self._servers, servers, strict=True)
            self.steps.append(
                TraceStep(
                    step=self._open[0],
                    network=self._open[1],
                    wall_ms=(wall - self._wall) * 1000,
                    pledge_cpu_ms=(cpu - self._cpu) * 1000,
                    server_cpu_ms={s.name: (after - before) * 1000 for s, before, after in used},
                )
            )
        self._open = None if step is None else (step, network)
        self._servers = servers
        self._wall, self._cpu = time.perf_counter(), time.process_time()


class TracedClient(PledgeClient):
    """The product's client, each exchange a network step of ``timeline`` and the pledge's
    work on its answer the next one."""

    timeline: Timeline

    async def probe(self, origin: str | None = None) -> x509.Certificate:
        self.timeline.enter("TLS handshake (provisional)", network=True)
        cert = await super().probe(origin)
        self.timeline.enter("pledge: record the registrar, sign the voucher-request")
        return cert

    async def send(self, request: HttpRequest, *, now: Callable[[], datetime]) -> Response:
        name = TRACE_NAMES.get(request.path, request.path)
        self.timeline.enter(name, network=True)
        response = await super().send(request, now=now)
        self.timeline.enter(f"pledge: check the {name.split()[0]} answer, next request")
        return response


async def traced_enrollment(folder: Path, url: str, servers: list[Service]) -> list[TraceStep]:
    """One enrollment alone, as ``enroll`` runs it, step by step."""
    timeline = Timeline(servers)
    timeline.enter("pledge: read the pledge folder")
    config = load_pledge_config(folder, retry=RETRY)
    machine = Pledge(config, random_bytes=os.urandom)

    async def install(enrollment: Enrollment) -> None:
        timeline.enter("pledge: install the LDevID (files written, fsync)")
        await asyncio.to_thread(write_enrollment, folder, enrollment)
        timeline.enter("pledge: build enrollstatus")

    client = TracedClient(config, url, timeout=60)
    client.timeline = timeline
    await drive(machine, client, install=install)
    timeline.enter("close the connection", network=True)
    await client.close()
    timeline.enter(None)
    return timeline.steps


def median_trace(traces: list[list[TraceStep]]) -> list[TraceStep]:
    """Step by step, the median of each figure over the traced enrollments that took the
    steps of the first (one that retried has others and is left out)."""
    if not traces:
        return []
    same = [trace for trace in traces if [s.step for s in trace] == [s.step for s in traces[0]]]
    return [
        TraceStep(
            step=steps[0].step,
            network=steps[0].network,
            wall_ms=statistics.median(s.wall_ms for s in steps),
            pledge_cpu_ms=statistics.median(s.pledge_cpu_ms for s in steps),
            server_cpu_ms={
                name: statistics.median(s.server_cpu_ms[name] for s in steps)
                for name in steps[0].server_cpu_ms
            },
        )
        for steps in zip(*same, strict=True)
    ]


def waves(
    latencies: dict[int, float], concurrency: int
) -> tuple[float | None, float | None, float | None]:
    """Milliseconds: the mean and maximum latency of the first ``concurrency`` pledges, which
    start together (a site's devices after a power cut), and the p99 of the others; None for
    a wave with no success."""
    first = [t * 1000 for i, t in latencies.items() if i < concurrency]
    after = [t * 1000 for i, t in latencies.items() if i >= concurrency]
    return (
        statistics.mean(first) if first else None,
        max(first) if first else None,
        percentile(after, 0.99) if after else None,
    )


def _ms(value: float | None) -> str:
    return "none" if value is None else f"{value:.0f} ms"


def interpreter() -> str:
    """Version and the interpreter's real file: the same CPython release runs this path
    measurably slower when built without PGO and LTO (scripts/pick-python.sh)."""
    version = ".".join(map(str, sys.version_info[:3]))
    return f"{version} {os.path.realpath(sys.executable)}"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


async def _enroll_share(
    share: list[tuple[int, Path]], urls: list[str], concurrency: int
) -> tuple[dict[int, float], Counter[str]]:
    """Enroll ``share`` (pledge index, folder), ``concurrency`` at a time in index order,
    round robin over the registrars by index: latencies by index, failures by reason."""
    gate = asyncio.Semaphore(concurrency)
    latencies: dict[int, float] = {}
    failures: Counter[str] = Counter()

    async def one(index: int, folder: Path) -> None:
        async with gate:
            start = time.perf_counter()
            try:
                await enroll(folder, urls[index % len(urls)], retry=RETRY, timeout=60)
            except Exception as exc:
                failures[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
                return
            latencies[index] = time.perf_counter() - start

    await asyncio.gather(*(one(index, folder) for index, folder in share))
    return latencies, failures


def _shares(
    folders: list[Path], concurrency: int, processes: int
) -> list[tuple[list[tuple[int, Path]], int]]:
    """Pledge ``i`` goes to process ``i % processes``, the concurrency split as evenly: each
    process's first pledges are then the first ``concurrency`` of all, which start together."""
    return [
        (
            [(i, folder) for i, folder in enumerate(folders) if i % processes == w],
            concurrency // processes + (1 if w < concurrency % processes else 0),
        )
        for w in range(processes)
    ]


def _pledge_process(
    share: list[tuple[int, Path]],
    urls: list[str],
    concurrency: int,
    start: Any,
    results: Any,
) -> None:
    """A further process of simulated pledges (``--pledge-processes``): set up like the
    bench's own, then its share once every process is ready; latencies, failures and its
    CPU over the share back through ``results``."""
    settle_heap()
    start.wait()
    cpu = time.process_time()
    latencies, failures = asyncio.run(_enroll_share(share, urls, concurrency))
    results.put((latencies, dict(failures), time.process_time() - cpu))


def _collect(results: Any, workers: list[Any]) -> list[Any]:
    """One result per pledge process; a process that ended without its result (a crash)
    fails the burst at once instead of leaving it waiting."""
    collected: list[Any] = []
    while len(collected) < len(workers):
        try:
            collected.append(results.get(timeout=1))
        except queue.Empty:
            ended = [worker.exitcode for worker in workers if worker.exitcode not in (None, 0)]
            if ended:
                raise RuntimeError(f"a pledge process ended with exit code {ended[0]}") from None
    return collected


async def burst(
    folders: list[Path], urls: list[str], concurrency: int, processes: int = 1
) -> tuple[float, dict[int, float], Counter[str], list[float]]:
    """Every pledge enrolls once, ``concurrency`` at a time, round robin over the registrars;
    wall time, latencies of the successes by pledge index (the gate is FIFO: the first
    ``concurrency`` pledges start together, the rest as others finish), failures by reason,
    and the simulated pledges' CPU seconds per process. With ``processes`` > 1 the pledges
    are shared among this process and ``processes - 1`` more, as a site's pledges each have
    a CPU of their own (the same CPUs as the servers' here)."""
    (own, own_concurrency), *others = _shares(folders, concurrency, processes)
    context = multiprocessing.get_context("spawn")
    start, results = (context.Barrier(processes), context.Queue()) if others else (None, None)
    workers = [
        context.Process(
            target=_pledge_process, args=(share, urls, limit, start, results), daemon=True
        )
        for share, limit in others
    ]
    for worker in workers:
        worker.start()
    try:
        if start is not None:
            await asyncio.to_thread(start.wait, 120)
        began, cpu = time.perf_counter(), time.process_time()
        latencies, failures = await _enroll_share(own, urls, own_concurrency)
        cpus = [time.process_time() - cpu]
        if workers:
            for their_latencies, their_failures, their_cpu in await asyncio.to_thread(
                _collect, results, workers
            ):
                latencies.update(their_latencies)
                failures.update(their_failures)
                cpus.append(their_cpu)
        elapsed = time.perf_counter() - began
    finally:
        for worker in workers:
            worker.join(10)
            if worker.is_alive():
                worker.kill()
    return elapsed, latencies, failures, cpus


async def measure(root: Path, pledge_root: Path, args: argparse.Namespace) -> Report:
    """MASA and registrars as ``zerotouch ... serve`` processes, then the baselines, single
    enrollments and the burst against them."""
    services = Services(root)
    deadline = time.monotonic() + 120
    masa_port = free_port()
    masa_url = f"https://127.0.0.1:{masa_port}"
    vendor, domain = str(root / "V"), str(root / "R")
    db = ["--db", args.db] if args.db else []
    await services.run("vendor", "init", "--dir", vendor, "--masa-url", masa_url)
    await services.run("registrar", "init", "--dir", domain, "--manufacturer-ca",
                       f"{vendor}/ca.pem", "--masa-trust", f"{vendor}/ca.pem")  # fmt: skip
    # Every simulated pledge (and the registrar calling the MASA) comes from 127.0.0.1, where
    # a site's pledges come from one address each: the per-address cap is the total cap here.
    for config_file in (root / "V" / "masa.toml", root / "R" / "registrar.toml"):
        with config_file.open("a", encoding="utf-8") as fh:
            fh.write(f"\n[limits]\nmax_connections_per_ip = {LOOPBACK_CONNECTIONS}\n")
    pledges = make_pledges(root / "V", pledge_root, 2 * args.singles + args.pledges + 2, masa_url)
    settle_heap()  # the simulated pledges are one process's fleet, as `zerotouch fleet` runs them
    handshakes = tls_handshake_rate(pledges[0], pledges[1], 200)
    sign_rate, verify_rate = ecdsa_rates(500)
    try:
        masa, _ = await services.serve("masa", "masa", "masa", "serve", "--dir", vendor,
                                       "--listen", f"127.0.0.1:{masa_port}",
                                       deadline=deadline)  # fmt: skip
        ready = {masa.name: process_cpu_seconds(masa)}
        servers, urls = [masa], []
        for index in range(args.registrars):
            server, url = await services.serve(f"registrar{index}", "registrar", "registrar",
                                               "serve", "--dir", domain, "--listen",
                                               "127.0.0.1:0", "--auto-accept", *db,
                                               deadline=deadline)  # fmt: skip
            ready[server.name] = process_cpu_seconds(server)
            servers.append(server)
            urls.append(url)
        rtt = statistics.median(await https_round_trip(pledges[0], urls[0], 30))
        singles = []
        cpu_start = time.process_time()
        for folder in pledges[1 : 1 + args.singles]:
            start = time.perf_counter()
            await enroll(folder, urls[0], retry=RETRY, timeout=60)
            singles.append(time.perf_counter() - start)
        single_cpu = (time.process_time() - cpu_start) / args.singles
        traced = pledges[-args.singles :] if args.trace else []
        traces = [await traced_enrollment(folder, urls[0], servers[:2]) for folder in traced]
        cli_folder = str(pledges[1 + args.singles])
        start = time.perf_counter()
        await services.run("pledge", "enroll", "--dir", cli_folder, "--registrar", urls[0])
        cli_seconds = time.perf_counter() - start
        before = [process_cpu_seconds(server) for server in servers]
        elapsed, latencies, failures, burst_cpus = await burst(
            pledges[2 + args.singles : 2 + args.singles + args.pledges],
            urls,
            args.concurrency,
            args.pledge_processes,
        )
        use = [
            server_use(server, ready[server.name], start_cpu, args.pledges)
            for server, start_cpu in zip(servers, before, strict=True)
        ]
    finally:
        services.stop()
    crypto_seconds = (
        SIGNS_PER_ENROLLMENT / sign_rate
        + VERIFIES_PER_ENROLLMENT / verify_rate
        + HANDSHAKES_PER_ENROLLMENT / handshakes
    )
    ideal = (os.cpu_count() or 1) / crypto_seconds
    rate = len(latencies) / elapsed
    single = statistics.median(singles)
    first_mean, first_max, after_p99 = waves(latencies, args.concurrency)
    every = list(latencies.values())
    return Report(
        cpus=os.cpu_count() or 1,
        python=interpreter(),
        pledges=args.pledges,
        concurrency=args.concurrency,
        registrars=args.registrars,
        db=args.db or "sqlite (registrar.db)",
        rtt_ms=rtt * 1000,
        ecdsa_sign_per_s=sign_rate,
        ecdsa_verify_per_s=verify_rate,
        tls_handshakes_per_s=handshakes,
        single_ms=single * 1000,
        single_rtts=single / rtt,
        single_pledge_cpu_ms=single_cpu * 1000,
        cli_ms=cli_seconds * 1000,
        elapsed_s=elapsed,
        enrollments_per_s=rate,
        pledge_cpu_ms=sum(burst_cpus) / args.pledges * 1000,
        pledge_processes=args.pledge_processes,
        pledge_cpu_ms_by_process=[cpu / args.pledges * 1000 for cpu in burst_cpus],
        p50_ms=percentile(every, 0.50) * 1000,
        p95_ms=percentile(every, 0.95) * 1000,
        p99_ms=percentile(every, 0.99) * 1000,
        first_wave_mean_ms=first_mean,
        first_wave_max_ms=first_max,
        after_first_wave_p99_ms=after_p99,
        crypto_ideal_per_s=ideal,
        achieved_fraction=rate / ideal,
        failures=dict(failures),
        processes=use,
        trace=median_trace(traces),
    )


def show(report: Report) -> None:
    r = report
    print(f"enroll_bench on {r.cpus} CPU(s), loopback, P-256, {r.registrars} registrar(s), {r.db}")
    print(f"  Python {r.python} (the servers' and the simulated pledges')")
    print(f"  pledges' files: {r.pledge_dir}")
    print(f"  baseline HTTPS round trip (new TLS + GET cacerts): {r.rtt_ms:8.1f} ms")
    print(
        f"  baseline ECDSA P-256: {r.ecdsa_sign_per_s:7.0f} sign/s {r.ecdsa_verify_per_s:7.0f}"
        f" verify/s; mutual-TLS handshakes {r.tls_handshakes_per_s:6.0f}/s"
    )
    print(
        f"  one enrollment alone: {r.single_ms:7.1f} ms = {r.single_rtts:5.1f} x HTTPS round trip;"
        f" simulated pledge (this process) CPU {r.single_pledge_cpu_ms:5.1f} ms"
    )
    print(f"  zerotouch pledge enroll (new process, wall): {r.cli_ms:7.1f} ms")
    print(
        f"  {r.pledges} pledges, {r.concurrency} at a time: {r.elapsed_s:6.2f} s ="
        f" {r.enrollments_per_s:6.1f} enrollments/s; p50 {r.p50_ms:.0f} ms, p95 {r.p95_ms:.0f} ms,"
        f" p99 {r.p99_ms:.0f} ms"
    )
    print(
        f"    the first {min(r.concurrency, r.pledges)}, started together: mean"
        f" {_ms(r.first_wave_mean_ms)}, max {_ms(r.first_wave_max_ms)};"
        f" the others: p99 {_ms(r.after_first_wave_p99_ms)}"
    )
    print(
        f"  crypto ideal {r.crypto_ideal_per_s:6.0f} enrollments/s"
        f" ({SIGNS_PER_ENROLLMENT} signs, {VERIFIES_PER_ENROLLMENT} verifies,"
        f" {HANDSHAKES_PER_ENROLLMENT} TLS handshake(s) each, on {r.cpus} CPUs):"
        f" achieved {r.achieved_fraction:.1%}"
    )
    where = "this process" if r.pledge_processes == 1 else f"{r.pledge_processes} processes"
    print(
        f"  simulated pledges ({where}, same CPUs as the servers) CPU"
        f" {r.pledge_cpu_ms:6.1f} ms per timed enrollment"
    )
    print(f"  {r.server_cpu}:")
    for use in r.processes:
        print(
            f"  {use.name:11s} CPU {use.cpu_seconds:7.2f} s ="
            f" {use.cpu_ms_per_enrollment:6.1f} ms per enrollment (start-up"
            f" {use.startup_cpu_seconds:5.2f} s, untimed runs {use.untimed_cpu_seconds:5.2f} s"
            f" not counted), peak RSS {use.peak_rss_mb:6.1f} MB, at the end {use.rss_mb:6.1f} MB"
        )
    print(f"  failures: {sum(r.failures.values())}")
    for reason, count in sorted(r.failures.items(), key=lambda item: -item[1]):
        print(f"    {count:5d}  {reason}")
    if r.trace:
        show_trace(r.trace)


def show_trace(steps: list[TraceStep]) -> None:
    """The timeline of one enrollment; on network steps, the wait on the servers."""
    names = list(steps[0].server_cpu_ms)
    print("  one enrollment, step by step (ms; server wait = wall - pledge CPU on network steps):")
    print(f"    {'step':58s} {'wall':>6s} {'pledge':>6s} {'wait':>6s}" + "".join(
        f" {name[:9]:>9s}" for name in names))  # fmt: skip
    for step in steps:
        wait = f"{step.wall_ms - step.pledge_cpu_ms:6.1f}" if step.network else " " * 6
        print(
            f"    {step.step:58s} {step.wall_ms:6.1f} {step.pledge_cpu_ms:6.1f} {wait}"
            + "".join(f" {step.server_cpu_ms[name]:9.1f}" for name in names)
        )
    print(
        f"    {'total':58s} {sum(s.wall_ms for s in steps):6.1f}"
        f" {sum(s.pledge_cpu_ms for s in steps):6.1f}"
    )


@contextmanager
def own_schema(url: str | None) -> Iterator[str | None]:
    """A PostgreSQL ``--db`` gets a new, empty schema for this run (dropped afterwards), so
    runs neither see nor leave each other's devices; other URLs are used as given."""
    if url is None or not url.startswith(("postgresql://", "postgres://")):
        yield url
        return
    import psycopg

    schema = f"enroll_bench_{secrets.token_hex(6)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--pledges", "--burst", type=int, default=200, help="enrollments timed")
    parser.add_argument("--concurrency", type=int, default=50, help="pledges at a time")
    parser.add_argument("--registrars", type=int, default=1, help="registrar processes")
    parser.add_argument("--db", help="registrar database URL (default: SQLite registrar.db)")
    parser.add_argument("--singles", type=int, default=5, help="single enrollments timed")
    parser.add_argument(
        "--pledge-dir",
        help="folder for the pledges' files (default: beside the servers'; /dev/shm keeps "
        "the pledges' fsyncs off the servers' disk, as on a site where each has its own)",
    )
    parser.add_argument(
        "--pledge-processes",
        type=int,
        default=1,
        help="processes the timed pledges are shared among (default 1: this one, as "
        "`zerotouch fleet` runs a fleet; a site's pledges each have a CPU of their own)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--trace", action="store_true", help="time each step of one enrollment alone"
    )
    parser.add_argument(
        "--compare-db",
        metavar="URL",
        help="instead: pairs of runs, one registrar on SQLite and --registrars (at least 2) "
        "on this PostgreSQL URL, in alternating order; reports the rate of each and their "
        "ratio (target: PostgreSQL not slower)",
    )
    parser.add_argument("--pairs", type=int, default=3, help="pairs of runs of --compare-db")
    args = parser.parse_args()
    if min(args.pledges, args.concurrency, args.registrars, args.singles, args.pairs) < 1:
        parser.error(
            "--pledges, --concurrency, --registrars, --singles and --pairs must be at least 1"
        )
    if not 1 <= args.pledge_processes <= min(args.concurrency, args.pledges):
        parser.error("--pledge-processes must be from 1 to --concurrency and --pledges")
    if args.compare_db:
        if args.db:
            parser.error("--compare-db replaces --db")
        return compare(args)
    report = run_once(args)
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        show(report)
    return exit_status(args.check, report.missed(), bool(report.failures))


def exit_status(check: bool, missed: list[str], failed: bool) -> int:
    """1 when ``--check`` was asked and a target is missed (each named on stderr), or when
    an enrollment failed; 0 otherwise."""
    if check and missed:
        print("targets missed: " + "; ".join(missed), file=sys.stderr)
        return 1
    return 1 if failed else 0


def run_once(args: argparse.Namespace) -> Report:
    """One run in folders (and, on PostgreSQL, a schema) of its own."""
    with (
        tempfile.TemporaryDirectory(prefix="zt-enroll-bench-") as tmp,
        tempfile.TemporaryDirectory(prefix="zt-pledges-", dir=args.pledge_dir) as pledge_tmp,
        own_schema(args.db) as db,
    ):
        report = asyncio.run(measure(Path(tmp), Path(pledge_tmp), argparse.Namespace(
            **{**vars(args), "db": db}
        )))  # fmt: skip
        if args.pledge_dir:
            report.pledge_dir = args.pledge_dir
        if args.db:
            report.db = make_url(args.db).set(query={}).render_as_string(hide_password=True)
    return report


@dataclass
class Pair:
    sqlite: Report
    postgresql: Report

    @property
    def ratio(self) -> float:
        return self.postgresql.enrollments_per_s / self.sqlite.enrollments_per_s


def compare(args: argparse.Namespace) -> int:
    """The PostgreSQL target as a ratio of the same hour: runs of one machine drift by more
    than the difference sought, so the two set-ups alternate (which goes first alternates
    too) and the median of the pairs' ratios is the figure."""
    sqlite = argparse.Namespace(**{**vars(args), "db": None, "registrars": 1})
    postgresql = argparse.Namespace(
        **{**vars(args), "db": args.compare_db, "registrars": max(2, args.registrars)}
    )
    pairs = []
    for index in range(args.pairs):
        order = (sqlite, postgresql) if index % 2 == 0 else (postgresql, sqlite)
        first, second = (run_once(each) for each in order)
        pair = Pair(*((first, second) if index % 2 == 0 else (second, first)))
        pairs.append(pair)
        if not args.json:
            print(
                f"pair {index + 1}: SQLite, 1 registrar {pair.sqlite.enrollments_per_s:.1f}/s; "
                f"PostgreSQL, {postgresql.registrars} registrars "
                f"{pair.postgresql.enrollments_per_s:.1f}/s: {pair.ratio:.2f} times",
                flush=True,
            )
    median = statistics.median(pair.ratio for pair in pairs)
    failures = sum(sum(r.failures.values()) for p in pairs for r in (p.sqlite, p.postgresql))
    if args.json:
        print(json.dumps({"pairs": [asdict(p) for p in pairs], "median_ratio": median}, indent=2))
    else:
        print(f"PostgreSQL / SQLite, median of {len(pairs)} pairs: {median:.2f} (target >= 1)")
    missed = [f"PostgreSQL {median:.2f} times SQLite"] if median < 1 else []
    missed += [f"{failures} failures"] if failures else []
    return exit_status(args.check, missed, failures > 0)


if __name__ == "__main__":
    sys.exit(main())

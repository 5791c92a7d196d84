"""Faults with real processes on 127.0.0.1, and what must hold after recovery: the flow
completes, nothing is half-written, nothing is lost.

* The registrar or the MASA is SIGKILLed at each step of an enrollment and restarted on the
  same port and files; the pledge's ordinary retries finish it. Afterwards there is one
  device record, enrolled, whose LDevID is the one the pledge installed; the voucher the
  pledge holds is one the MASA issued; the MASA has an audit entry for every voucher it
  issued (RFC 8995 §5.8.1).
* The registrar or the device is SIGKILLed while the day-0 configuration is pushed: the
  device's startup is the old configuration or the new one, and the hand-off completes.
* PostgreSQL crashes under a burst of enrollments; the registrar's database or the device's
  folder fills up: 503 with Retry-After (or the device's rpc-error), then completion.
* The pledge's clock is off: within tolerance it enrolls; beyond, the error names its clock.

TLS hides the request line, so a fault fires at a step that a relay (tests/support/faults.py)
can see (the registrar's connection to the MASA, which listens behind a relay on the port the
IDevIDs name; a piece of an answer the relay holds back), when a service's database shows the
step was reached, or when the pledge is about to send the step's request.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from cryptography import x509

from tests.e2e.test_brski_flow import Lab, make_lab
from tests.support.device_process import start_device
from tests.support.faults import DROP, FORWARD, Relay, Watcher, kill9, private_postgres
from tests.support.processes import ServerProcess, free_port, run_cli, start_cli, start_server
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.errors import Expired
from zerotouch_plugin.roles.pledge import (
    PATH_ENROLLSTATUS,
    PATH_SIMPLEENROLL,
    PATH_VOUCHER_STATUS,
    Enrollment,
    HttpRequest,
    Pledge,
    RetryPolicy,
)
from zerotouch_plugin.services.pledge_client import (
    PLEDGE_FILES,
    PledgeClient,
    drive,
    load_pledge_config,
    write_enrollment,
)
from zerotouch_plugin.store.db import Database, open_database
from zerotouch_plugin.store.masa import MasaRepository
from zerotouch_plugin.store.registrar import DeviceRecord, HandoffRow, RegistrarRepository

# Enough tries per step to outlast a restart (a new interpreter: one to three seconds here).
PATIENT = RetryPolicy(attempts=10, base_delay=0.3, max_delay=1.5)


@dataclass
class FaultLab:
    """A vendor and a registrar folder, the MASA behind a relay, the registrar on a fixed
    port; both can be killed and restarted in place."""

    lab: Lab
    registrar_port: int = field(default_factory=free_port)
    masa_port: int = field(default_factory=free_port)
    masa: ServerProcess | None = None
    registrar: ServerProcess | None = None
    _dbs: dict[Path, Database] = field(default_factory=dict)

    @property
    def registrar_url(self) -> str:
        return f"https://127.0.0.1:{self.registrar_port}"

    def start_masa(self) -> None:
        self.masa = start_server(
            "masa", "-v", "masa", "serve", "--dir", self.lab.vendor,
            "--listen", f"127.0.0.1:{self.masa_port}",
        )  # fmt: skip

    def start_registrar(self) -> None:
        self.registrar = start_server(
            "registrar", "-v", "registrar", "serve", "--dir", self.lab.domain,
            "--listen", f"127.0.0.1:{self.registrar_port}",
        )  # fmt: skip

    def kill_registrar(self, *, restart: bool = True) -> None:
        assert self.registrar is not None
        kill9(self.registrar.proc)
        self.registrar.stop()
        if restart:
            self.start_registrar()

    def kill_masa(self, *, restart: bool = True) -> None:
        assert self.masa is not None
        kill9(self.masa.proc)
        self.masa.stop()
        if restart:
            self.start_masa()

    def relay(self, on_connect: Callable[[int], str] = lambda _n: FORWARD) -> Relay:
        """The MASA as the registrar reaches it (the port in every IDevID)."""
        return Relay(self.lab.masa_port, self.masa_port, on_connect)

    def _db(self, path: Path) -> Database:
        if path not in self._dbs:
            self._dbs[path] = open_database(path)
        return self._dbs[path]

    @property
    def registrar_db(self) -> RegistrarRepository:
        return RegistrarRepository(self._db(self.lab.domain / "registrar.db"))

    @property
    def masa_db(self) -> MasaRepository:
        return MasaRepository(self._db(self.lab.vendor / "masa.db"))

    def __enter__(self) -> FaultLab:
        try:
            self.start_masa()
            self.start_registrar()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        for process in (self.registrar, self.masa):
            if process is not None:
                process.stop()
                process.log_path.unlink(missing_ok=True)
        for db in self._dbs.values():
            db.dispose()


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultLab]:
    with FaultLab(make_lab(tmp_path_factory.mktemp("faults"))) as lab:
        yield lab


def enroll(
    lab: FaultLab,
    folder: Path,
    before: Callable[[HttpRequest], None] = lambda _r: None,
    *,
    url: str | None = None,
) -> Enrollment:
    """The pledge (the code ``zerotouch pledge enroll`` runs), patient enough to outlast a
    restart; ``before`` sees each request just before it is sent."""

    def hook(action: object) -> None:
        if isinstance(action, HttpRequest):
            before(action)

    return asyncio.run(enroll_async(folder, url or lab.registrar_url, hook))


async def enroll_async(
    folder: Path, url: str, hook: Callable[[object], None] | None = None
) -> Enrollment:
    """One pledge's enrollment in the running event loop (see ``enroll``)."""

    async def keep(enrollment: Enrollment) -> None:
        write_enrollment(folder, enrollment)

    config = load_pledge_config(folder, retry=PATIENT)
    async with PledgeClient(config, url, timeout=15) as client:
        machine = Pledge(config, random_bytes=os.urandom)
        return await drive(machine, client, on_action=hook, install=keep)


def assert_consistent(lab: FaultLab, serial: str, folder: Path) -> None:
    """Nothing half-written, nothing lost (see the module docstring)."""
    registrar, masa = lab.registrar_db, lab.masa_db
    records = [d for d in registrar.devices() if d.serial == serial]
    assert len(records) == 1, records
    (record,) = records
    assert record.state == "enroll-confirmed", record
    assert record.enroll_confirmed is True, record
    assert record.audit_level == "clean", record  # the MASA's audit log was read (§5.8.3)
    ldevid = certs.load_certs((folder / PLEDGE_FILES["ldevid"]).read_bytes())[0]
    issued = [x509.load_der_x509_certificate(der) for der in registrar.certificates(serial)]
    assert ldevid in issued, "the pledge's LDevID is not on record"
    assert record.ldevid_fingerprint == certs.fingerprint(ldevid), record
    # every voucher the MASA issued has its audit entry, and the pledge's voucher is one
    vouchers = masa.vouchers(serial)
    audit = masa.audit_entries(serial)
    assert vouchers and len(audit) == len(vouchers), (vouchers, audit)
    assert {v.nonce for v in vouchers} == {a.nonce for a in audit}
    held = (folder / PLEDGE_FILES["voucher"]).read_bytes()
    assert held in {v.cms for v in vouchers}
    # the registrar's own voucher records are vouchers the MASA issued
    assert {v.voucher_cms for v in registrar.vouchers(serial)} <= {v.cms for v in vouchers}


def once(action: Callable[[], None]) -> Callable[[], bool]:
    """``action`` the first time the returned callable runs; True when it did."""
    done = threading.Event()

    def run() -> bool:
        if done.is_set():
            return False
        done.set()
        action()
        return True

    return run


def test_registrar_killed_while_it_calls_the_masa(faults: FaultLab) -> None:
    """requestvoucher: SIGKILL the registrar the moment it connects to the MASA (the pledge's
    request is in flight, no voucher exists yet)."""
    serial, folder = faults.lab.pledge()
    fire = once(faults.kill_registrar)

    def on_connect(_n: int) -> str:
        return DROP if fire() else FORWARD

    with faults.relay(on_connect) as relay:
        assert enroll(faults, folder).serial == serial
    assert relay.connections >= 2
    assert_consistent(faults, serial, folder)


def test_masa_killed_while_the_registrar_calls_it(faults: FaultLab) -> None:
    """requestvoucher: SIGKILL the MASA when the registrar's call reaches it; the registrar
    answers 503 and the pledge retries once the MASA is back."""
    serial, folder = faults.lab.pledge()
    fire = once(faults.kill_masa)

    def on_connect(_n: int) -> str:
        return DROP if fire() else FORWARD

    with faults.relay(on_connect):
        assert enroll(faults, folder).serial == serial
    assert_consistent(faults, serial, folder)


def test_registrar_killed_after_the_masa_issued_the_voucher(faults: FaultLab) -> None:
    """requestvoucher: SIGKILL the registrar once the MASA has recorded the voucher it is
    returning: that voucher never reaches the pledge; a second one does, and both are
    audited."""
    serial, folder = faults.lab.pledge()
    with (
        faults.relay(),
        Watcher(lambda: bool(faults.masa_db.vouchers(serial)), faults.kill_registrar) as w,
    ):
        assert enroll(faults, folder).serial == serial
        assert w.wait()
    assert_consistent(faults, serial, folder)


def lose_answer(
    faults: FaultLab,
    serial: str,
    reached: Callable[[DeviceRecord], bool],
    fault: Callable[[], None],
    fired: list[int],
) -> Callable[[int, int], str]:
    """A relay's ``on_reply``: once the registrar's record of ``serial`` shows the step,
    run ``fault`` and drop the answer (once; the chunk is appended to ``fired``)."""

    def on_reply(_n: int, chunk: int) -> str:
        record = faults.registrar_db.device(serial)
        if fired or record is None or not reached(record):
            return FORWARD
        fired.append(chunk)
        fault()
        return DROP

    return on_reply


@pytest.mark.parametrize(
    ("reached", "vouchers", "ldevids", "reports"),
    [
        pytest.param(lambda r: r.voucher_issued_at is not None, 2, 1, 2, id="voucher-recorded"),
        pytest.param(lambda r: r.voucher_status_at is not None, 1, 1, 3, id="status-recorded"),
        pytest.param(lambda r: r.enrolled_at is not None, 1, 2, 2, id="ldevid-recorded"),
        pytest.param(lambda r: r.enroll_status_at is not None, 1, 1, 3, id="enrollstatus-recorded"),
    ],
)
def test_registrar_killed_before_its_answer_leaves(
    faults: FaultLab,
    reached: Callable[[DeviceRecord], bool],
    vouchers: int,
    ldevids: int,
    reports: int,
) -> None:
    """The pledge talks to the registrar through a relay that holds each piece of the
    registrar's answer until it has looked at the registrar's database: once the step is
    recorded, the registrar is SIGKILLed and the answer is lost. The pledge repeats the
    step on the restarted registrar: a lost voucher means a second one (both audited by the
    MASA), a lost LDevID a second one (the first stays on record, the device's record names
    the one installed), a lost status answer a second report."""
    serial, folder = faults.lab.pledge()
    relay_port = free_port()
    fired: list[int] = []
    on_reply = lose_answer(faults, serial, reached, faults.kill_registrar, fired)
    registrar = Relay(relay_port, faults.registrar_port, on_reply=on_reply)
    with faults.relay(), registrar:
        assert enroll(faults, folder, url=f"https://127.0.0.1:{relay_port}").serial == serial
    assert len(fired) == 1
    assert len(faults.masa_db.vouchers(serial)) == vouchers
    assert len(list(faults.registrar_db.certificates(serial))) == ldevids
    assert len(faults.registrar_db.status_reports(serial)) == reports
    assert_consistent(faults, serial, folder)


@pytest.mark.parametrize("path", [PATH_VOUCHER_STATUS, PATH_SIMPLEENROLL, PATH_ENROLLSTATUS])
def test_registrar_killed_before_a_step(faults: FaultLab, path: str) -> None:
    """SIGKILL the registrar just before the pledge sends the step's request (so it is never
    received); it is restarted while the pledge retries."""
    serial, folder = faults.lab.pledge()
    restarts: list[threading.Thread] = []

    def before(request: HttpRequest) -> None:
        if request.path == path and not restarts:
            faults.kill_registrar(restart=False)
            restarts.append(threading.Thread(target=faults.start_registrar))
            restarts[0].start()

    with faults.relay():
        assert enroll(faults, folder, before).serial == serial
    assert len(restarts) == 1
    restarts[0].join(30)
    assert_consistent(faults, serial, folder)


@contextmanager
def small_tmpfs(where: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``where`` (a disk that can be filled in a moment);
    unmounted on exit."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", where], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", where], check=True)


def fill(folder: Path) -> Path:
    """A file that takes every free byte of ``folder``'s file system."""
    filler = folder / "filler"
    with filler.open("wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def test_registrar_database_disk_full(faults: FaultLab, tmp_path: Path) -> None:
    """The registrar's SQLite database on a full disk: the pledge's requests are refused
    with 503 storage-unavailable and a Retry-After (logged; the registrar keeps running;
    the transaction rolled back), and once space is freed the pledge's retries enroll it."""
    serial, folder = faults.lab.pledge()
    with small_tmpfs(tmp_path / "disk") as disk:
        registrar = start_server(
            "registrar", "-v", "registrar", "serve", "--dir", faults.lab.domain,
            "--listen", "127.0.0.1:0", "--db", disk / "registrar.db", "--auto-accept",
        )  # fmt: skip
        try:
            filler = fill(disk)
            refused = "refused 503: storage-unavailable: "
            fault = Watcher(lambda: refused in registrar.stderr, filler.unlink)
            with faults.relay(), fault:
                assert enroll(faults, folder, url=registrar.url).serial == serial
                assert fault.wait()
            assert registrar.proc.poll() is None
            db = open_database(disk / "registrar.db")
            try:
                (record,) = [d for d in RegistrarRepository(db).devices() if d.serial == serial]
                assert record.state == "enroll-confirmed", record
            finally:
                db.dispose()
            assert "database or disk is full" in registrar.stderr
        finally:
            registrar.stop()
            registrar.log_path.unlink(missing_ok=True)


def burst_progress(url: str) -> int:
    """How many devices of the burst the registrar has relayed a voucher for (0 while the
    database does not answer)."""
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT count(*) FROM registrar_devices WHERE voucher_issued_at IS NOT NULL"
            ).fetchone()
    except psycopg.Error:
        return 0
    return int(row[0]) if row else 0


@pytest.mark.postgres
def test_postgresql_crashes_and_restarts_mid_burst(faults: FaultLab) -> None:
    """A burst of concurrent enrollments on a registrar on PostgreSQL; once some vouchers are
    relayed the server crashes (every backend killed) and restarts. In-flight transactions
    fail with 503 storage-unavailable, the pledges retry, every enrollment completes, and
    each device has exactly one record."""
    pledges = [faults.lab.pledge(allow=False) for _ in range(8)]
    with private_postgres(free_port()) as pg:
        registrar = start_server(
            "registrar", "-v", "registrar", "serve", "--dir", faults.lab.domain,
            "--listen", "127.0.0.1:0", "--db", pg.url, "--auto-accept",
        )  # fmt: skip
        try:
            crash = Watcher(lambda: burst_progress(pg.url) >= 2, pg.restart_after_crash)
            with faults.relay(), crash:

                async def burst() -> list[Enrollment]:
                    return list(
                        await asyncio.gather(
                            *(enroll_async(folder, registrar.url) for _, folder in pledges)
                        )
                    )

                enrollments = asyncio.run(burst())
                assert crash.wait()
            assert [e.serial for e in enrollments] == [serial for serial, _ in pledges]
            with psycopg.connect(pg.url) as conn:
                rows = conn.execute("SELECT serial, state FROM registrar_devices").fetchall()
            assert sorted(rows) == sorted((serial, "enroll-confirmed") for serial, _ in pledges)
            assert "refused 503: storage-unavailable: " in registrar.stderr
        finally:
            registrar.stop()
            registrar.log_path.unlink(missing_ok=True)


def enroll_with_clock(lab: FaultLab, folder: Path, skew: timedelta) -> Enrollment:
    """The pledge with its clock ``skew`` off the registrar's and the MASA's (all roles take
    ``now`` from the service that drives them: here the pledge's driver)."""

    async def keep(enrollment: Enrollment) -> None:
        write_enrollment(folder, enrollment)

    async def scenario() -> Enrollment:
        config = load_pledge_config(folder, retry=PATIENT)
        async with PledgeClient(config, lab.registrar_url, timeout=15) as client:
            machine = Pledge(config, random_bytes=os.urandom)
            clock = lambda: datetime.now(UTC) + skew  # noqa: E731
            return await drive(machine, client, install=keep, now=clock)

    with lab.relay():
        return asyncio.run(scenario())


@pytest.mark.parametrize(
    "skew",
    [timedelta(minutes=10), timedelta(hours=3), -timedelta(minutes=4)],
    ids=["ahead-10min", "ahead-3h", "behind-4min"],
)
def test_pledge_clock_skew_within_tolerance(faults: FaultLab, skew: timedelta) -> None:
    """A pledge clock ahead (within every certificate's validity) or a few minutes behind
    (issued certificates are backdated by five minutes) does not stop the enrollment."""
    serial, folder = faults.lab.pledge()
    assert enroll_with_clock(faults, folder, skew).serial == serial
    assert_consistent(faults, serial, folder)


@pytest.mark.parametrize(
    "clock",
    [datetime.now(UTC) - timedelta(hours=3), datetime(1970, 1, 1, tzinfo=UTC)],
    ids=["behind-3h", "no-rtc-1970"],
)
def test_pledge_clock_beyond_tolerance_is_named(faults: FaultLab, clock: datetime) -> None:
    """A pledge clock before the MASA signer's certificate (hours behind, or a device with
    no real-time clock that boots at the epoch, RFC 8995 §2.6.1) refuses the voucher with an
    error that names the pledge's clock, the time it read and the certificate's validity,
    reports it in voucher_status (the registrar records it) and installs nothing."""
    serial, folder = faults.lab.pledge()
    with pytest.raises(Expired) as refused:
        enroll_with_clock(faults, folder, clock - datetime.now(UTC))
    message = str(refused.value)
    assert f"is not valid at {clock.date().isoformat()}" in message, message
    assert "(valid " in message and "the pledge's clock reads" in message, message
    assert not (folder / PLEDGE_FILES["ldevid"]).exists()
    (report,) = faults.registrar_db.status_reports(serial)
    assert report.kind == "voucher_status" and report.status is False, report
    assert report.reason is not None and "not valid at" in report.reason, report


# A SIGKILLed registrar's hand-off lease (2 x handoff_timeout + 10 s) must expire before the
# restarted one takes the hand-off over; a short timeout keeps that wait short.
HANDOFF_SETTINGS = (
    "handoff_attempts = 60\nhandoff_backoff = 0.2\nhandoff_max_backoff = 0.5\n"
    "handoff_timeout = 4.0\nhandoff_poll = 1.0\n"
)


@pytest.fixture(scope="module")
def handoff_faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultLab]:
    """A fault lab whose registrar retries hand-offs quickly."""
    lab = make_lab(tmp_path_factory.mktemp("handoff-faults"))
    with (lab.domain / "registrar.toml").open("a") as fh:
        fh.write(HANDOFF_SETTINGS)
    with FaultLab(lab) as faults:
        yield faults


def startup_hostname(folder: Path) -> str | None:
    """The hostname in the device's startup datastore (None before it has one); a torn file
    fails to parse."""
    path = folder / "startup.json"
    if not path.exists():
        return None
    name = json.loads(path.read_text()).get("ietf-system:system", {}).get("hostname")
    return None if name is None else str(name)


def enrolled_with_day0(faults: FaultLab, tmp_path: Path, port: int) -> tuple[str, Path, str]:
    """An enrolled pledge whose day-0 configuration (a hostname) the registrar pushes to
    127.0.0.1:``port``: serial, folder, hostname."""
    serial, folder = faults.lab.pledge()
    hostname = f"edge-{serial.lower()}"
    (tmp_path / "day0.json").write_text(json.dumps({"ietf-system:system": {"hostname": hostname}}))
    run_cli("registrar", "day0", "--dir", faults.lab.domain, "--serial", serial,
            "--file", tmp_path / "day0.json", "--address", f"127.0.0.1:{port}")  # fmt: skip
    with faults.relay():
        assert enroll(faults, folder).serial == serial
    return serial, folder, hostname


def wait_applied(faults: FaultLab, serial: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (state := faults.registrar_db.handoff(serial).state) != "applied":
        assert state in {"pending", "none"}, faults.registrar_db.handoff(serial)
        assert time.monotonic() < deadline, faults.registrar_db.handoff(serial)
        time.sleep(0.2)


@pytest.mark.parametrize(("victim", "chunk"), [("device", 3), ("device", 6), ("registrar", 4)])
def test_killed_during_the_day0_handoff(
    handoff_faults: FaultLab, tmp_path: Path, victim: str, chunk: int
) -> None:
    """The registrar pushes the day-0 configuration over NETCONF/TLS through a relay; the
    registrar or the device is SIGKILLed once the relay has passed the registrar's
    ``chunk``-th piece (after the handshake: the hello, the edit, the commit) and restarted
    in place. At that moment the device's startup is the old configuration or the new one,
    never a torn mix; afterwards the hand-off completes and the new configuration is there."""
    faults = handoff_faults
    relay_port, device_port = free_port(), free_port()
    serial, folder, hostname = enrolled_with_day0(faults, tmp_path, relay_port)
    devices = [start_device(folder, {"netconf-tls": f"127.0.0.1:{device_port}"})]
    at_kill: list[str | None] = []

    def on_chunk(n: int, k: int) -> None:
        if n != 1 or k != chunk:
            return
        if victim == "device":
            devices[-1].kill()
            at_kill.append(startup_hostname(folder))
            devices.append(start_device(folder, {"netconf-tls": f"127.0.0.1:{device_port}"}))
        else:
            faults.kill_registrar(restart=False)
            at_kill.append(startup_hostname(folder))
            faults.start_registrar()

    try:
        with Relay(relay_port, device_port, on_chunk=on_chunk):
            wait_applied(faults, serial)
        assert len(at_kill) == 1, "the fault never fired"
        assert at_kill[0] in {None, hostname}, at_kill
        assert startup_hostname(folder) == hostname
    finally:
        for device in devices:
            device.stop()
            device.log_path.unlink(missing_ok=True)


def test_device_datastore_disk_full(handoff_faults: FaultLab, tmp_path: Path) -> None:
    """The device's folder on a full disk (a small tmpfs): the pushed day-0 configuration
    cannot be persisted, the device answers with an rpc-error naming the full disk and keeps
    its old startup (no torn file), the registrar keeps the hand-off pending with that
    reason; once space is freed the next attempt applies it."""
    faults = handoff_faults
    port = free_port()
    serial, enrolled, hostname = enrolled_with_day0(faults, tmp_path, port)
    with small_tmpfs(tmp_path / "disk") as disk:
        folder = disk / "device"
        shutil.copytree(enrolled, folder)
        filler = fill(disk)
        device = start_device(folder, {"netconf-tls": f"127.0.0.1:{port}"})
        try:
            seen: list[HandoffRow] = []

            def refused() -> bool:
                seen.append(faults.registrar_db.handoff(serial))
                return seen[-1].error is not None and "unreachable" not in seen[-1].error

            with Watcher(refused, filler.unlink) as fault:
                assert fault.wait(60), seen[-1]
            assert seen[-1].state == "pending", seen[-1]
            assert "No space left on device" in str(seen[-1].error), seen[-1]
            assert startup_hostname(folder) is None
            wait_applied(faults, serial)
            assert startup_hostname(folder) == hostname
        finally:
            device.stop()
            device.log_path.unlink(missing_ok=True)


@pytest.mark.parametrize(
    "reached",
    [
        pytest.param(lambda r: r.voucher_issued_at is not None, id="voucher-recorded"),
        pytest.param(lambda r: r.enrolled_at is not None, id="ldevid-recorded"),
    ],
)
def test_pledge_killed_mid_enrollment(
    faults: FaultLab, reached: Callable[[DeviceRecord], bool]
) -> None:
    """``zerotouch pledge enroll`` SIGKILLed once the registrar has recorded the voucher or
    the LDevID, before the answer reaches it (the device lost power mid-bootstrap; a relay
    holds the answer back): the folder holds no domain CA (the install's commit point) and
    a second run enrolls the device."""
    serial, folder = faults.lab.pledge()
    relay_port = free_port()
    command = ("pledge", "enroll", "--dir", folder, "--registrar",
               f"https://127.0.0.1:{relay_port}", "--retries", "8", "--backoff", "0.3",
               "--max-backoff", "1.5")  # fmt: skip
    pledge = start_cli(*command)
    fired: list[int] = []
    on_reply = lose_answer(faults, serial, reached, lambda: kill9(pledge), fired)
    with faults.relay(), Relay(relay_port, faults.registrar_port, on_reply=on_reply):
        pledge.communicate(timeout=60)
        assert fired and pledge.returncode == -signal.SIGKILL
        assert not (folder / PLEDGE_FILES["domain-ca"]).exists()
        again = run_cli(*command, check=False)
    assert again.returncode == 0, again.stderr
    assert_consistent(faults, serial, folder)

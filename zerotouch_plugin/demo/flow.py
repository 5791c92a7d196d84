"""The demo's steps: the whole zero-touch flow on 127.0.0.1, through the ``zerotouch`` CLIs.

Steps form a small dependency graph (``STEPS``) so that independent work overlaps (the MASA
starts while the domain PKI is made; every device starts at once); each step's result is
reported as soon as it is known. The first failing step stops the flow: the other steps are
cancelled and every process is stopped.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.demo import nms
from zerotouch_plugin.demo.ansible_inventory import write_inventory
from zerotouch_plugin.demo.services import Service, Services, StepFailed, free_port, tail
from zerotouch_plugin.services import certfiles

__all__ = ["MASA_GONE_STEPS", "STEPS", "Demo", "Device", "StepResult"]

HOST = "127.0.0.1"
# Longest wait for one step's condition (listening, enrolled, hand-off): every device adds
# its share, as they all start at once on the same CPUs.
WAIT_SECONDS = 45.0
WAIT_PER_DEVICE = 15.0
ADMIN_POLL = 0.1  # seconds between admin API reads
SERIAL_PREFIX = "DEMO-"
ESCROW_DAYS = 30  # lifetime of the vouchers fetched ahead in the --masa-gone run


@dataclass
class Device:
    """One demo device: its folder, identity, process and ports."""

    index: int
    service: Service | None = None
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"device-{self.index}"

    @property
    def serial(self) -> str:
        return f"{SERIAL_PREFIX}{self.index:04d}"

    @property
    def hostname(self) -> str:
        return f"demo-device-{self.index}"

    @property
    def folder(self) -> str:
        return f"devices/{self.name}"

    def day0(self) -> dict[str, Any]:
        """The day-0 configuration the registrar hands off (RFC 7951 JSON)."""
        return {
            "ietf-system:system": {
                "hostname": self.hostname,
                "contact": "noc@demo.example",
                "location": f"demo rack, slot {self.index}",
            },
            "ietf-interfaces:interfaces": {
                "interface": [
                    {
                        "name": "eth0",
                        "type": "iana-if-type:ethernetCsmacd",
                        "description": "uplink (day-0)",
                        "enabled": True,
                    }
                ]
            },
        }

    def endpoint(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "serial": self.serial,
            "hostname": self.hostname,
            "folder": self.folder,
            **{name: f"{HOST}:{port}" for name, port in sorted(self.ports.items())},
        }


@dataclass(frozen=True)
class StepResult:
    """How one step went: ``at`` is when it ended, in seconds since the demo began."""

    name: str
    title: str
    ok: bool
    seconds: float
    at: float
    detail: str
    log_tail: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "title": self.title,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "detail": self.detail,
        }
        if self.log_tail:
            out["logs"] = {path: list(lines) for path, lines in self.log_tail}
        return out


def _port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


class Demo:
    """One run in ``folder`` with ``devices`` devices; ``report`` hears each step's result."""

    def __init__(
        self,
        folder: Path,
        devices: int,
        *,
        keep: bool,
        report: Callable[[StepResult], None],
        steps: Sequence[Step] | None = None,
        on_finish: Callable[[], str] | None = None,
        masa_gone: bool = False,
    ) -> None:
        self.masa_gone = masa_gone  # vouchers fetched ahead, then the MASA stopped for good
        default = MASA_GONE_STEPS if masa_gone else STEPS
        self.steps = tuple(default if steps is None else steps)
        self.on_finish = on_finish  # after the services stopped: more to clean up, said how
        self.folder = folder
        self.services = Services(folder, keep=keep)
        self.report = report
        self.devices = [Device(index) for index in range(1, devices + 1)]
        self.masa_url = f"https://{HOST}:{free_port(HOST)}"
        self.registrar_url = ""
        self.found: list[str] = []  # how each device found its registrar (--discovery)
        self.from_escrow: list[str] = []  # serials whose voucher the registrar held (--masa-gone)
        self.results: list[StepResult] = []
        self._began = time.monotonic()

    # -- paths --------------------------------------------------------------------------------

    def path(self, relative: str) -> Path:
        return self.folder / relative

    def client(self, name: str) -> nms.ClientFiles:
        """A client identity folder written by ``registrar issue-client-cert`` (or alike)."""
        return nms.ClientFiles(
            self.path(f"{name}/cert.pem"), self.path(f"{name}/key.pem"), self.path(f"{name}/ca.pem")
        )

    def endpoints(self) -> dict[str, Any]:
        return {
            "masa": self.masa_url,
            "registrar": self.registrar_url or None,
            "devices": [device.endpoint() for device in self.devices],
        }

    # -- running ------------------------------------------------------------------------------

    async def run(self) -> bool:
        """Every step in dependency order; True if all held."""
        tasks: dict[str, asyncio.Task[None]] = {}
        for step in self.steps:
            tasks[step.name] = asyncio.create_task(self._step(step, tasks), name=step.name)
        pending: set[asyncio.Task[None]] = set(tasks.values())
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                if any(task.exception() is not None for task in done):
                    return False
            return True
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _step(self, step: Step, tasks: dict[str, asyncio.Task[None]]) -> None:
        await asyncio.gather(*(tasks[name] for name in step.after))
        start = time.monotonic()
        try:
            detail = await step.run(self)
        except StepFailed as exc:
            self._record(step.name, step.title, start, exc.message, ok=False, logs=exc.logs)
            raise
        except Exception as exc:  # any surprise still names the step that did not hold
            self._record(step.name, step.title, start, f"{type(exc).__name__}: {exc}", ok=False)
            raise StepFailed(str(exc)) from exc
        self._record(step.name, step.title, start, detail, ok=True)

    def _record(
        self,
        name: str,
        title: str,
        start: float,
        detail: str,
        *,
        ok: bool,
        logs: Sequence[Path] = (),
    ) -> None:
        now = time.monotonic()
        tails = tuple((str(path.relative_to(self.folder)), tuple(tail(path))) for path in logs)
        result = StepResult(name, title, ok, now - start, now - self._began, detail, tails)
        self.results.append(result)
        self.report(result)

    def finish(self, ok: bool) -> None:
        """Stop every service (or, after a successful ``--keep`` run, leave them running)."""
        start = time.monotonic()
        if ok and self.services.keep:
            names = ", ".join(service.name for service in self.services.running)
            write_inventory(self.folder, self.registrar_url, self.devices, HOST)
            detail = f"{names}; pids in run/; Ansible inventory in ansible/hosts.yml"
            self._record("keep", "services left running", start, detail, ok=True)
            return
        statuses = self.services.stop()
        # A service stopped before it installed its SIGTERM handler dies of the signal: fine.
        bad = {n: status for n, status in statuses.items() if status not in (0, -signal.SIGTERM)}
        if bad:
            detail = ", ".join(f"{name} exited {status}" for name, status in bad.items())
        elif statuses:
            detail = f"stopped {len(statuses)} processes: {', '.join(statuses)}"
        else:
            detail = "nothing was running"
        if self.on_finish is not None:
            detail += f"; {self.on_finish()}"
        self._record("stop", "stop every process", start, detail, ok=not bad)

    @property
    def wait_seconds(self) -> float:
        return WAIT_SECONDS + WAIT_PER_DEVICE * len(self.devices)

    def until(self) -> float:
        return time.monotonic() + self.wait_seconds

    # -- registrar admin API (RFC 8995 has none; docs/admin-api.md) ------------------------------

    def _admin_devices(self) -> dict[str, dict[str, Any]]:
        context = self.client("admin").context(check_hostname=True)
        host, port = self.registrar_url.removeprefix("https://").rsplit(":", 1)
        connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
        try:
            connection.request("GET", "/admin/devices")
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise StepFailed(f"GET /admin/devices answered {response.status}: {body[:200]!r}")
        return {record["serial"]: record for record in json.loads(body)["devices"]}

    async def wait_records(
        self, holds: Callable[[dict[str, Any]], bool], what: str
    ) -> dict[str, dict[str, Any]]:
        """Poll the admin API until ``holds`` is true of every device's record."""
        deadline = self.until()
        while True:
            records = await asyncio.to_thread(self._admin_devices)
            waiting = [d for d in self.devices if not holds(records.get(d.serial, {}))]
            if not waiting:
                return records
            self.services.check_alive()
            if time.monotonic() > deadline:
                first = waiting[0]
                record = records.get(first.serial) or {}
                raise StepFailed(
                    f"{first.serial}: not {what} after {self.wait_seconds:.0f} s (registrar "
                    f"record: state {record.get('state')}, handoff {record.get('handoff')}, "
                    f"last error {record.get('last_error')})",
                    logs=[self.path("logs/registrar.log"), self.path(f"logs/{first.name}.log")],
                )
            await asyncio.sleep(ADMIN_POLL)


# -- the steps ------------------------------------------------------------------------------


async def manufacturer_pki(demo: Demo) -> str:
    await demo.services.run(
        "vendor", "init", "--dir", "vendor", "--masa-url", demo.masa_url, "--name", "zerotouch demo"
    )
    return "vendor/: manufacturer CA, MASA voucher signer and TLS certificate (vendor init)"


async def idevids(demo: Demo) -> str:
    await asyncio.gather(
        *(
            demo.services.run(
                *["vendor", "idevid", "--dir", "vendor", "--serial"], d.serial, "--out", d.folder
            )
            for d in demo.devices
        )
    )
    serials = ", ".join(device.serial for device in demo.devices)
    return f"IDevIDs {serials} in devices/*/idevid.pem, MASA URL {demo.masa_url}"


async def _serve(demo: Demo, name: str, listener: str, *args: str) -> tuple[Service, str]:
    """Start service ``name`` (``zerotouch ARGS``); it and the address it printed in its
    ``listening LISTENER ADDRESS`` line, once there."""
    return await demo.services.serve(name, listener, *args, deadline=demo.until())


async def start_masa(demo: Demo) -> str:
    port = demo.masa_url.rsplit(":", 1)[1]
    masa, address = await _serve(
        demo, "masa", "masa", "masa", "serve", "--dir", "vendor", "--listen", f"{HOST}:{port}"
    )
    return f"MASA {address} (pid {masa.popen.pid})"


async def domain_pki(demo: Demo) -> str:
    # fetching vouchers ahead needs the MASA's URL: no pledge is there to name it
    masa_url = ("--masa-url", demo.masa_url) if demo.masa_gone else ()
    await demo.services.run(
        "registrar", "init", "--dir", "registrar", "--manufacturer-ca", "vendor/ca.pem",
        "--masa-trust", "vendor/ca.pem", "--ca-name", "zerotouch demo domain CA", *masa_url,
    )  # fmt: skip
    return "registrar/: domain CA, registrar certificate, manufacturer CA as IDevID anchor"


async def client_certs(demo: Demo) -> str:
    issue = ("registrar", "issue-client-cert", "--dir", "registrar")
    await asyncio.gather(
        demo.services.run(*issue, "--name", "demo-admin", "--out", "admin", "--admin"),
        demo.services.run(*issue, "--name", "demo-nms", "--out", "nms"),
    )
    # A client certificate from a CA the devices were never told about (another domain).
    now = datetime.now(UTC)
    other = certs.make_ca("zerotouch demo OTHER domain CA", now=now)
    client = certs.issue_client(other, "someone-else", now=now)
    folder = demo.path("other-domain")
    folder.mkdir(exist_ok=True)
    certfiles.write_certs(folder / "cert.pem", [client.cert, other.cert])
    certfiles.write_key(folder / "key.pem", client.key)
    certfiles.write_certs(folder / "ca.pem", [other.cert])
    return "admin/ (admin API), nms/ (NETCONF client), other-domain/ (a foreign CA's client)"


async def policy(demo: Demo) -> str:
    await asyncio.gather(
        *(
            demo.services.run("registrar", "allow", "--dir", "registrar", "--serial", d.serial)
            for d in demo.devices
        )
    )
    return f"allowed {len(demo.devices)} serial(s) (registrar allow)"


async def day0(demo: Demo) -> str:
    folder = demo.path("day0")
    folder.mkdir(exist_ok=True)
    for device in demo.devices:
        (folder / f"{device.name}.json").write_text(json.dumps(device.day0(), indent=2) + "\n")
    await asyncio.gather(
        *(
            demo.services.run(
                *["registrar", "day0", "--dir", "registrar", "--serial"],
                d.serial,
                "--file",
                f"day0/{d.name}.json",
            )
            for d in demo.devices
        )
    )
    return "day0/*.json stored at the registrar: ietf-system hostname, contact, location; eth0"


async def start_registrar(demo: Demo) -> str:
    registrar, demo.registrar_url = await _serve(
        demo, "registrar", "registrar",
        "registrar", "serve", "--dir", "registrar", "--listen", f"{HOST}:0",
    )  # fmt: skip
    return f"registrar {demo.registrar_url} (pid {registrar.popen.pid})"


async def _start_device(demo: Demo, device: Device) -> None:
    nonceless = ("--allow-nonceless",) if demo.masa_gone else ()
    device.service, address = await _serve(
        demo, device.name, "netconf-tls",
        "device", "run", "--dir", device.folder,
        "--netconf-tls", f"{HOST}:0", "--restconf", f"{HOST}:{device.ports['restconf']}",
        "--registrar", demo.registrar_url, *nonceless,
    )  # fmt: skip
    device.ports["netconf-tls"] = _port_of(address)


async def start_devices(demo: Demo) -> str:
    for device in demo.devices:  # RESTCONF listens only once enrolled: its port is chosen here
        device.ports["restconf"] = free_port(HOST)
    await asyncio.gather(*(_start_device(demo, device) for device in demo.devices))
    ports = ", ".join(f"{d.name} NETCONF/TLS :{d.ports['netconf-tls']}" for d in demo.devices)
    return f"{ports} (factory identity only)"


async def _enrolled(demo: Demo, device: Device) -> None:
    assert device.service is not None
    expected = f"enrolled {device.serial}"
    await device.service.wait_line(
        lambda text: text.startswith(expected), expected, demo.until(), demo.services
    )


async def enrollment(demo: Demo) -> str:
    await asyncio.gather(*(_enrolled(demo, device) for device in demo.devices))
    records = await demo.wait_records(
        lambda record: record.get("state") == "enroll-confirmed", "enroll-confirmed"
    )
    audits = {str(records[d.serial].get("audit_level")) for d in demo.devices}
    demo.from_escrow = [
        d.serial for d in demo.devices if records[d.serial].get("voucher_source") == "escrow"
    ]
    if demo.masa_gone and len(demo.from_escrow) != len(demo.devices):
        raise StepFailed(
            f"vouchers from escrow: {', '.join(demo.from_escrow) or 'none'} of "
            f"{len(demo.devices)}, with the MASA gone",
            logs=[demo.path("logs/registrar.log")],
        )
    source = (
        f"vouchers from escrow: {', '.join(demo.from_escrow)}"
        if demo.from_escrow
        else f"audit {', '.join(sorted(audits))}"
    )
    return (
        f"{len(demo.devices)} device(s) enrolled: voucher accepted, LDevID installed, "
        f"enrollstatus confirmed at the registrar ({source})"
    )


async def handoff(demo: Demo) -> str:
    records = await demo.wait_records(
        lambda record: (record.get("handoff") or {}).get("state") == "applied", "handed off"
    )
    attempts = sorted({str(records[d.serial]["handoff"].get("attempts")) for d in demo.devices})
    return (
        "registrar pushed day-0 configuration over NETCONF/TLS (edit-config, copy-config "
        f"running->startup); attempts {', '.join(attempts)}"
    )


async def _read(demo: Demo, device: Device) -> str:
    client = demo.client("nms")
    view = await asyncio.to_thread(nms.read_device, device.ports["netconf-tls"], client)
    restconf = await asyncio.to_thread(
        nms.restconf_hostname, device.ports["restconf"], client, device.serial
    )
    wanted = (device.hostname, device.hostname, "enrolled", device.hostname)
    got = (view.running_hostname, view.startup_hostname, view.phase, restconf)
    if got != wanted:
        raise StepFailed(
            f"{device.name}: hostname in running, in startup, bootstrap phase, hostname over "
            f"RESTCONF are {got}, expected {wanted}",
            logs=[demo.path(f"logs/{device.name}.log")],
        )
    return device.hostname


async def nms_read(demo: Demo) -> str:
    names = await asyncio.gather(*(_read(demo, device) for device in demo.devices))
    return (
        f"with nms/cert.pem, ncclient read hostname {', '.join(names)} from running and "
        "startup and bootstrap phase enrolled; RESTCONF GET gave the same hostname"
    )


def _device_client(demo: Demo, owner: Device, stem: str) -> nms.ClientFiles:
    """``owner``'s own identity (``idevid`` or ``ldevid``) used as a TLS client."""
    return nms.ClientFiles(
        demo.path(f"{owner.folder}/{stem}.pem"),
        demo.path(f"{owner.folder}/{stem}.key"),
        demo.path("registrar/ca.pem"),
    )


def _peer(demo: Demo, device: Device) -> Device:
    """Another device of the same domain: the next one (the device itself when alone)."""
    return demo.devices[(demo.devices.index(device) + 1) % len(demo.devices)]


ClientFinder = Callable[[Demo, Device], nms.ClientFiles | None]

# Clients a device must refuse once enrolled: label -> the client's files (None:
# no certificate at all). A device's LDevID chains to the domain CA like the NMS's
# certificate, but no device may manage another (docs/cli/device.md, "Cert-to-name").
REFUSED_CLIENTS: tuple[tuple[str, ClientFinder], ...] = (
    ("no certificate", lambda demo, device: None),
    ("manufacturer IDevID", lambda demo, device: _device_client(demo, device, "idevid")),
    ("other domain's CA", lambda demo, device: demo.client("other-domain")),
    ("a device's LDevID", lambda demo, device: _device_client(demo, _peer(demo, device), "ldevid")),
)


async def _refusals(demo: Demo, device: Device) -> None:
    port = device.ports["netconf-tls"]
    for label, find in REFUSED_CLIENTS:
        client = find(demo, device)
        let_in = await asyncio.to_thread(nms.refused, port, demo.path("registrar/ca.pem"), client)
        if let_in is not None:
            raise StepFailed(
                f"{device.name} did not refuse a client with {label}: {let_in}",
                logs=[demo.path(f"logs/{device.name}.log")],
            )


async def refusals(demo: Demo) -> str:
    await asyncio.gather(*(_refusals(demo, device) for device in demo.devices))
    labels = "; ".join(label for label, _ in REFUSED_CLIENTS)
    return f"every device refused NETCONF/TLS clients with: {labels}"


async def claims(demo: Demo) -> str:
    """The MASA of the --masa-gone run: claims mode, nonceless vouchers to a claimed
    device's domain; the sales channel has claimed every device for the owner's domain."""
    demo.path("vendor/masa.toml").write_text('policy = "claims"\nnonceless_allowed = true\n')
    for device in demo.devices:
        await demo.services.run(
            "masa", "claim", "--dir", "vendor", "--serial", device.serial,
            "--domain-ca", "registrar/ca.pem",
        )  # fmt: skip
    return f"vendor/masa.toml: policy claims; {len(demo.devices)} device(s) claimed (masa claim)"


async def prefetch(demo: Demo) -> str:
    out = await demo.services.run(
        "registrar", "prefetch", "--dir", "registrar", "--all-allowed",
        "--lifetime", str(ESCROW_DAYS),
    )  # fmt: skip
    held = [line for line in out.splitlines() if ": held until " in line]
    return f"{len(held)} nonceless voucher(s) held in escrow for {ESCROW_DAYS} days"


async def masa_gone(demo: Demo) -> str:
    """Stop the MASA for good: the vendor is out of business."""
    masa = next(s for s in demo.services.running if s.name == "masa")
    masa.popen.send_signal(signal.SIGTERM)
    status = await asyncio.to_thread(masa.popen.wait, 10)
    demo.services.running.remove(masa)
    masa.pid_file.unlink(missing_ok=True)
    return f"MASA stopped (exit {status}); it is not started again"


@dataclass(frozen=True)
class Step:
    """A step: runs once every step named in ``after`` held; returns a one-line result."""

    name: str
    title: str
    after: tuple[str, ...]
    run: Callable[[Demo], Awaitable[str]]


STEPS: tuple[Step, ...] = (
    Step("manufacturer-pki", "manufacturer PKI", (), manufacturer_pki),
    Step("idevids", "factory identities (IDevID)", ("manufacturer-pki",), idevids),
    Step("masa", "start the MASA", ("manufacturer-pki",), start_masa),
    Step("domain-pki", "owner's domain PKI", ("manufacturer-pki",), domain_pki),
    Step("client-certs", "NMS and admin certificates", ("domain-pki",), client_certs),
    Step("policy", "allow the devices' serials", ("domain-pki",), policy),
    Step("day0", "day-0 configuration per device", ("domain-pki",), day0),
    Step("registrar", "start the registrar", ("domain-pki",), start_registrar),
    Step(
        "devices",
        "start the devices",
        ("idevids", "masa", "registrar", "policy", "day0"),
        start_devices,
    ),
    Step("enrollment", "devices enroll (BRSKI)", ("devices", "client-certs"), enrollment),
    Step("handoff", "day-0 hand-off by the registrar", ("enrollment",), handoff),
    Step("nms-read", "NMS reads the devices", ("handoff",), nms_read),
    Step("refusals", "foreign clients refused", ("enrollment",), refusals),
)


def _masa_gone_steps() -> tuple[Step, ...]:
    """STEPS with the MASA claiming the devices before it starts, the vouchers fetched ahead
    and the MASA stopped before the devices start."""
    extra = (
        Step("claims", "MASA claims mode, devices claimed", ("idevids", "domain-pki"), claims),
        Step("prefetch", "vouchers fetched ahead", ("masa", "registrar", "policy"), prefetch),
        Step("masa-gone", "the MASA goes away for good", ("prefetch",), masa_gone),
    )
    after = {"masa": ("claims",), "devices": ("idevids", "masa-gone", "registrar", "day0")}
    steps = [Step(s.name, s.title, after.get(s.name, s.after), s.run) for s in STEPS]
    at = next(i for i, s in enumerate(steps) if s.name == "devices")
    return (*steps[:at], *extra, *steps[at:])


MASA_GONE_STEPS = _masa_gone_steps()

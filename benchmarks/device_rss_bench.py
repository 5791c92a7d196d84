"""Idle resident memory of ``zerotouch device run``: after start, no session open.

Builds an enrolled device folder in a temporary folder (an IDevID from a manufacturer CA, a
domain identity from a domain CA, both made here), starts the device with each listener
set below as a real process, waits until it has printed every ``listening`` line and has
settled, and reads its ``VmRSS`` from /proc. The pledge agent runs in each (it finds the
domain identity and only waits for the LDevID's renewal time), as on a deployed device.
Then an operator (a client certificate of the domain CA) sends ``--requests`` requests to
each TLS listener (NETCONF ``<get>`` in one session, RESTCONF ``GET /restconf/data`` on a
connection each) and the RSS is read again once the device has settled: the idle memory of
a device that has been managed.

    .venv/bin/python benchmarks/device_rss_bench.py [--json] [--check] [--requests N]

Target of the issue: 60 MB idle, read as 60 MiB like the RSS target of netconf_bench.py,
for each listener set: NETCONF over TLS alone (what the day-0 hand-off needs), with
RESTCONF, and with every listener; ``--check`` exits 1 when one is missed. The same run
measures a bare interpreter as the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from zerotouch_plugin.artifacts import certs  # noqa: E402
from zerotouch_plugin.config import hash_password  # noqa: E402
from zerotouch_plugin.device.domain_files import write_domain  # noqa: E402
from zerotouch_plugin.services import certfiles  # noqa: E402
from zerotouch_plugin.services._tls import client_context  # noqa: E402
from zerotouch_plugin.services.netconf.client import NetconfClient  # noqa: E402

TARGET_MIB = 60.0
SETTLE_SECONDS = 1.5
HOST = "127.0.0.1"
# Listener sets measured: name -> ``device run`` options.
LISTENERS: dict[str, tuple[str, ...]] = {
    "netconf-tls": ("--netconf-tls", f"{HOST}:0"),
    "netconf-tls+restconf": ("--netconf-tls", f"{HOST}:0", "--restconf", f"{HOST}:0"),
    "all (ssh, tls, restconf)": (
        "--netconf-ssh", f"{HOST}:0", "--netconf-tls", f"{HOST}:0", "--restconf", f"{HOST}:0",
    ),
}  # fmt: skip


def rss_mib(pid: int) -> float:
    """``VmRSS`` of process ``pid`` in MiB, the unit of the other benchmarks' RSS figures."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def enrolled_folder(folder: Path) -> ssl.SSLContext:
    """A device folder as an enrolled device has it: factory and domain identity; returns
    the TLS context of an operator of the domain."""
    now = datetime.now(UTC)
    maker = certs.make_ca("rss bench manufacturer", now=now)
    idevid = certs.issue_idevid(maker, "RSS-0001", masa_url="https://127.0.0.1:9", now=now)
    folder.mkdir(parents=True)
    certfiles.write_certs(folder / "idevid.pem", [idevid.cert, maker.cert])
    certfiles.write_key(folder / "idevid.key", idevid.key)
    certfiles.write_certs(folder / "masa-ca.pem", [maker.cert])
    domain = certs.make_ca("rss bench domain", now=now)
    ldevid = certs.issue_tls_server(domain, "RSS-0001", hosts=[HOST], now=now, client_auth=True)
    write_domain(folder, key=ldevid.key, chain=[ldevid.cert], anchors=[domain.cert])
    user = (
        f'[[users]]\nname = "admin"\npassword = "{hash_password("bench", salt=os.urandom(16))}"\n'
    )
    (folder / "device.toml").write_text(f'registrars = ["https://127.0.0.1:9"]\n{user}')
    operator = certs.issue_client(domain, "rss bench operator", now=now)
    return client_context(operator, trust=[domain.cert], check_hostname=False)


async def restconf_gets(port: int, context: ssl.SSLContext, count: int) -> None:
    """``count`` GETs of the whole datastore, each on its own connection."""
    for _ in range(count):
        reader, writer = await asyncio.open_connection(HOST, port, ssl=context)
        writer.write(b"GET /restconf/data HTTP/1.1\r\nHost: device\r\nConnection: close\r\n\r\n")
        answer = await reader.read()
        writer.close()
        if not answer.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"RESTCONF answered {answer[:40]!r}")


async def netconf_gets(port: int, context: ssl.SSLContext, count: int) -> None:
    """``count`` ``<get>`` RPCs in one NETCONF/TLS session."""
    client = await NetconfClient.connect(HOST, port, context=context)
    try:
        for _ in range(count):
            await client.rpc("<get/>")
    finally:
        await client.close()


# listener -> what the operator sends it
REQUESTS = {"netconf-tls": netconf_gets, "restconf": restconf_gets}


async def serve_requests(ports: dict[str, int], context: ssl.SSLContext, count: int) -> None:
    for name, port in ports.items():
        send = REQUESTS.get(name)
        if send is not None:
            await send(port, context, count)


def measure(
    folder: Path, options: tuple[str, ...], context: ssl.SSLContext, requests: int
) -> tuple[float, float]:
    """RSS (MiB) of ``zerotouch device run`` with ``options``: idle, then idle again after
    ``requests`` requests to each TLS listener."""
    command = [sys.executable, "-m", "zerotouch_plugin", "device", "run", "--dir", str(folder)]
    with subprocess.Popen(
        [*command, *options], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            wanted = sum(1 for option in options if option.startswith("--"))
            ports: dict[str, int] = {}
            while len(ports) < wanted:
                line = proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"device exited {proc.wait()} before listening")
                if line.startswith("listening "):
                    _, name, address = line.split()
                    ports[name] = int(address.rpartition(":")[2])
            time.sleep(SETTLE_SECONDS)
            idle = rss_mib(proc.pid)
            asyncio.run(serve_requests(ports, context, requests))
            time.sleep(SETTLE_SECONDS)
            return idle, rss_mib(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)


def baseline() -> float:
    """A bare interpreter's RSS (MiB), the floor under every figure."""
    with subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    ) as proc:
        time.sleep(0.5)
        value = rss_mib(proc.pid)
        proc.communicate(b"")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    parser.add_argument(
        "--requests", type=int, default=20, help="requests sent to each TLS listener (20)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zt-rss-bench-") as tmp:
        folder = Path(tmp) / "device"
        context = enrolled_folder(folder)
        measured = {
            name: measure(folder, options, context, args.requests)
            for name, options in LISTENERS.items()
        }
    floor = baseline()
    figures = {name: idle for name, (idle, _) in measured.items()}
    served = {name: after for name, (_, after) in measured.items()}
    missed = [
        f"{name}: {mib:.1f} MiB > {TARGET_MIB:g}"
        for name, mib in figures.items()
        if mib > TARGET_MIB
    ]
    if args.json:
        print(json.dumps({"python_mib": floor, "idle_rss_mib": figures, "target_mib": TARGET_MIB,
                          "requests": args.requests, "after_requests_rss_mib": served,
                          "cpus": os.cpu_count()}))  # fmt: skip
    else:
        print(f"device idle RSS (python3 alone: {floor:.1f} MiB; target {TARGET_MIB:g} MiB)")
        print(
            f"  {'listeners':26s} {'idle':>6s}     after {args.requests} requests per TLS listener"
        )
        for name, mib in figures.items():
            print(f"  {name:26s} {mib:6.1f} MiB {served[name]:6.1f} MiB")
    if args.check and missed:
        print("targets missed: " + "; ".join(missed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

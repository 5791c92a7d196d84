"""What the SZTP DNS tests serve (RFC 8572 §4.2): signed ``ov``/``oc``/``ci`` artifacts of an
owner for a serial, TXT records carrying them one per artifact, and a real dnsmasq serving
those records (in the test's own process namespace or inside a network namespace)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.sztp_lab import onboarding_server
from zerotouch_plugin.artifacts import sztp
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services.sztp_dns import txt_strings

__all__ = ["dnsmasq", "rdata", "signed_artifacts", "txt_records"]


def rdata(key: str, value: bytes) -> bytes:
    """The wire rdata of the one TXT record carrying ``key=value``: length-prefixed strings."""
    return b"".join(bytes([len(s)]) + s for s in txt_strings(key, value))


def txt_records(name: str, artifacts: Mapping[str, bytes]) -> list[str]:
    """One dnsmasq ``--dns-rr`` per artifact: a TXT record (type 16) given as hex rdata
    (--txt-record takes text only, and configuration file lines are too short)."""
    return [f"--dns-rr={name},16,{rdata(key, der).hex()}" for key, der in artifacts.items()]


def signed_artifacts(
    vendor: Path, owner_dir: Path, serial: str, configuration: bytes
) -> dict[str, bytes]:
    """ov/oc/ci of an owner for ``serial``: a voucher from the vendor, the owner's chain,
    conveyed information merging ``configuration``, signed by the owner."""
    server_dir = onboarding_server(vendor, owner_dir, serial, configuration)
    owner = certfiles.load_identity(server_dir / "owner.pem", server_dir / "owner.key")
    info = sztp.OnboardingInformation(
        configuration_handling=sztp.ConfigurationHandling.MERGE, configuration=configuration
    )
    chain = [owner.cert, *(c for c in owner.chain if c.subject != c.issuer)]
    return {
        "ov": (server_dir / f"{serial}.cms").read_bytes(),
        "oc": sztp.encode_certs_only(chain),
        "ci": sztp.sign_conveyed_information(info, owner=owner, now=datetime.now(UTC)),
    }


def _dnsmasq_path() -> str:
    found = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not Path(found).exists():
        message = "dnsmasq missing: run scripts/setup-system.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def dnsmasq(
    address: str,
    port: int,
    domain: str,
    records: Sequence[str],
    log: Path,
    prefix: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """dnsmasq answering for ``domain`` from ``records`` only, on ``address``:``port``,
    logging its queries to ``log``; ``prefix`` runs it elsewhere (``ip netns exec NS``).
    Returns once it has started."""
    command = [
        *prefix, _dnsmasq_path(), "--keep-in-foreground", "--no-resolv", "--no-hosts",
        "--conf-file=/dev/null", "--pid-file", "--bind-interfaces",
        f"--listen-address={address}", f"--port={port}", f"--local=/{domain}/",
        "--log-queries", "--log-facility=-", *records,
    ]  # fmt: skip
    if os.geteuid() == 0:
        command.append("--user=root")
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=out)
    deadline = time.monotonic() + 10
    while "started, version" not in log.read_text(errors="replace"):
        if proc.poll() is not None:
            raise AssertionError(f"dnsmasq exited: {log.read_text(errors='replace')}")
        assert time.monotonic() < deadline, "dnsmasq did not start"
        time.sleep(0.05)
    return proc

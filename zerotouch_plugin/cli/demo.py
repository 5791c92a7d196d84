"""``zerotouch demo``: what exists end to end today, step by step, with timings.

PARTIAL demo: it exercises the artifacts layer (PKI, voucher-request, voucher, CMS, YANG)
and an independent verifier (the OpenSSL CLI); the MASA, registrar and device flow over the
network is not part of it yet. Exits 0 only if every step held.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives.serialization import Encoding

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.artifacts.voucher import (
    Assertion,
    Voucher,
    VoucherRequest,
    new_nonce,
    parse_signed_voucher,
    parse_signed_voucher_request,
    sign_artifact,
)
from zerotouch_plugin.errors import SignatureInvalid, WrongNonce, ZerotouchError

__all__ = ["HELP", "register"]

HELP = "PARTIAL demo: vendor PKI, domain CA, IDevID, signed voucher verified two ways"

SERIAL = "ZT-DEMO-0001"
MASA_URL = "https://masa.example.invalid:9443"
PARTIAL = (
    "PARTIAL DEMO: artifacts only (PKI, voucher-request, voucher, CMS, YANG). The MASA, "
    "registrar and device flow over the network is pending and not shown here."
)


T = TypeVar("T")


class StepFailed(Exception):
    """A demo step did not hold; the message says what was expected."""


@dataclass
class _Run:
    """State shared by the steps, and what they wrote where."""

    folder: Path
    now: datetime
    values: dict[str, object] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        return self.folder / name

    def get(self, name: str, kind: type[T]) -> T:
        """A value an earlier step produced."""
        value = self.values.get(name)
        if not isinstance(value, kind):
            raise StepFailed(f"{name} was not produced by an earlier step")
        return value


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workdir", type=Path, help="keep the generated files here (default: a temp folder)"
    )
    parser.set_defaults(func=_demo)


def _vendor_pki(run: _Run) -> str:
    ca = certs.make_ca("zerotouch demo manufacturer CA", now=run.now)
    masa = certs.issue_masa_signer(ca, "zerotouch demo MASA signer", now=run.now)
    certs.write_certs(run.path("vendor-ca.pem"), [ca.cert])
    certs.write_certs(run.path("masa.pem"), [masa.cert])
    certs.write_key(run.path("masa.key"), masa.key)
    run.values.update(vendor_ca=ca, masa=masa)
    return "vendor-ca.pem, masa.pem, masa.key"


def _domain_pki(run: _Run) -> str:
    ca = certs.make_ca("zerotouch demo owner domain CA", now=run.now)
    registrar = certs.issue_registrar(
        ca, "registrar.demo.invalid", hosts=["127.0.0.1"], now=run.now
    )
    certs.write_certs(run.path("domain-ca.pem"), [ca.cert])
    certs.write_certs(run.path("registrar.pem"), [registrar.cert])
    run.values.update(domain_ca=ca, registrar=registrar)
    return "domain-ca.pem, registrar.pem (EKU cmcRA + serverAuth + clientAuth)"


def _idevid(run: _Run) -> str:
    ca = run.get("vendor_ca", certs.Identity)
    idevid = certs.issue_idevid(ca, SERIAL, masa_url=MASA_URL, now=run.now)
    if certs.serial_number_of(idevid.cert) != SERIAL:
        raise StepFailed("IDevID subject serialNumber missing")
    if certs.masa_url_of(idevid.cert) != MASA_URL:
        raise StepFailed("IDevID MASA URL extension missing")
    certs.write_certs(run.path("idevid.pem"), [idevid.cert])
    certs.write_key(run.path("idevid.key"), idevid.key)
    run.values.update(idevid=idevid)
    return f"serialNumber={SERIAL}, MASA URL {MASA_URL}"


def _voucher_request(run: _Run) -> str:
    idevid = run.get("idevid", certs.Identity)
    registrar = run.get("registrar", certs.Identity)
    nonce = new_nonce(os.urandom(16))
    request = VoucherRequest(
        created_on=run.now,
        assertion=Assertion.PROXIMITY,
        serial_number=SERIAL,
        nonce=nonce,
        proximity_registrar_cert=registrar.cert.public_bytes(Encoding.DER),
    )
    der = sign_artifact(request, signer=idevid, now=run.now)
    run.path("voucher-request.cms").write_bytes(der)
    run.values.update(nonce=nonce, request_der=der)
    return f"pledge voucher-request signed by the IDevID, nonce {nonce}"


def _check_request(run: _Run) -> str:
    ca = run.get("vendor_ca", certs.Identity)
    der = run.get("request_der", bytes)
    request, signed = parse_signed_voucher_request(der, trust_anchors=[ca.cert], now=run.now)
    if certs.serial_number_of(signed.signer) != request.serial_number:
        raise StepFailed("voucher-request serial-number differs from the IDevID's")
    return "signature, IDevID path to the manufacturer CA, YANG schema: ok"


def _voucher(run: _Run) -> str:
    masa = run.get("masa", certs.Identity)
    domain_ca = run.get("domain_ca", certs.Identity)
    nonce = run.get("nonce", str)
    voucher = Voucher(
        created_on=run.now,
        assertion=Assertion.PROXIMITY,
        serial_number=SERIAL,
        pinned_domain_cert=domain_ca.cert.public_bytes(Encoding.DER),
        nonce=nonce,
    )
    der = sign_artifact(voucher, signer=masa, now=run.now)
    run.path("voucher.json").write_bytes(voucher.to_json())
    run.path("voucher.cms").write_bytes(der)
    run.values.update(voucher=voucher, voucher_der=der)
    return f"voucher.cms ({len(der)} bytes DER, eContentType id-ct-animaJSONVoucher)"


def _verify_zerotouch(run: _Run) -> str:
    ca = run.get("vendor_ca", certs.Identity)
    der = run.get("voucher_der", bytes)
    nonce = run.get("nonce", str)
    voucher, _ = parse_signed_voucher(der, trust_anchors=[ca.cert], now=run.now)
    voucher.check(now=run.now, serial=SERIAL, nonce=nonce)
    if voucher != run.get("voucher", Voucher):
        raise StepFailed("verified voucher differs from the one signed")
    return "signature, MASA path to the manufacturer CA, YANG, serial-number and nonce: ok"


def _verify_openssl(run: _Run) -> str:
    openssl = shutil.which("openssl")
    if openssl is None:
        return "skipped: openssl is not installed"
    out = run.path("voucher.openssl.json")
    command = [openssl, "cms", "-verify", "-binary", "-inform", "DER", "-purpose", "any"]
    command += ["-in", str(run.path("voucher.cms")), "-CAfile", str(run.path("vendor-ca.pem"))]
    result = subprocess.run(
        [*command, "-out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise StepFailed(f"openssl cms -verify failed: {result.stderr.strip()}")
    if out.read_bytes() != run.path("voucher.json").read_bytes():
        raise StepFailed("openssl returned a different payload")
    return "openssl cms -verify -CAfile vendor-ca.pem: Verification successful, same payload"


def _rejections(run: _Run) -> str:
    ca = run.get("vendor_ca", certs.Identity)
    der = run.get("voucher_der", bytes)
    tampered = der.replace(SERIAL.encode(), SERIAL[:-1].encode() + b"9")
    try:
        parse_signed_voucher(tampered, trust_anchors=[ca.cert], now=run.now)
    except SignatureInvalid as exc:
        tampered_reason = exc.reason
    else:
        raise StepFailed("a tampered voucher was accepted")
    voucher = run.get("voucher", Voucher)
    try:
        voucher.check(now=run.now, serial=SERIAL, nonce=new_nonce(os.urandom(16)))
    except WrongNonce as exc:
        nonce_reason = exc.reason
    else:
        raise StepFailed("a voucher with another nonce was accepted")
    return f"tampered payload -> {tampered_reason}; replayed nonce -> {nonce_reason}"


# The steps, in order: (title, function returning a one-line result).
STEPS: tuple[tuple[str, Callable[[_Run], str]], ...] = (
    ("manufacturer CA and MASA signing certificate", _vendor_pki),
    ("owner's domain CA and registrar certificate", _domain_pki),
    ("IDevID for the pledge", _idevid),
    ("pledge voucher-request (RFC 8995 §5.2), CMS-signed", _voucher_request),
    ("check the voucher-request as a MASA would", _check_request),
    ("voucher (RFC 8366) pinning the domain CA, signed by the MASA", _voucher),
    ("verify the voucher with zerotouch", _verify_zerotouch),
    ("verify the voucher with the OpenSSL CLI", _verify_openssl),
    ("forgeries are rejected", _rejections),
)


def _run_steps(run: _Run) -> bool:
    total = time.perf_counter()
    for number, (title, step) in enumerate(STEPS, start=1):
        start = time.perf_counter()
        print(f"[{number}/{len(STEPS)}] {title} ...", flush=True)
        try:
            detail = step(run)
        except (StepFailed, ZerotouchError, OSError, ValueError, subprocess.SubprocessError) as exc:
            print(f"      FAILED: {exc}", flush=True)
            return False
        elapsed = (time.perf_counter() - start) * 1000
        print(f"      ok ({elapsed:.1f} ms): {detail}", flush=True)
    print(f"all {len(STEPS)} steps held in {(time.perf_counter() - total) * 1000:.0f} ms")
    return True


def _demo(args: argparse.Namespace) -> int:
    print(PARTIAL)
    now = datetime.now(UTC)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        ok = _run_steps(_Run(args.workdir, now))
        print(f"files kept in {args.workdir}")
    else:
        with tempfile.TemporaryDirectory(prefix="zerotouch-demo-") as tmp:
            ok = _run_steps(_Run(Path(tmp), now))
    print(PARTIAL)
    return 0 if ok else 1

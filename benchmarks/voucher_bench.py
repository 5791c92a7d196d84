"""CMS voucher signing and verification rates against raw ECDSA P-256 on the same machine.

Prints voucher sign/s and verify/s (signature, message digest and certificate path to the
manufacturer trust anchor) next to cryptography's raw ECDSA P-256 sign/s and verify/s over
the same payload, and the ratios (target: both >= 40 %). Run time is bounded by --seconds.
With --softhsm also voucher sign/s with the MASA key in a PKCS#11 token (a SoftHSM2 token
made for the run in a temporary folder; the key is generated there and never leaves it).

    .venv/bin/python benchmarks/voucher_bench.py [--seconds 10] [--json] [--softhsm]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from zerotouch_plugin.artifacts import certs, cms
from zerotouch_plugin.artifacts.signer import SigningIdentity

TARGET_RATIO = 0.40


@dataclass(frozen=True)
class Figures:
    voucher_sign_per_s: float
    voucher_verify_per_s: float
    raw_sign_per_s: float
    raw_verify_per_s: float
    sign_ratio: float
    verify_ratio: float
    payload_bytes: int
    cms_bytes: int
    token_sign_per_s: float | None = None  # the signing key in a PKCS#11 token (--softhsm)


def rates(operations: Sequence[Callable[[], object]], seconds: float) -> list[float]:
    """Operations per second of each operation over about ``seconds`` of wall time in all.

    Rates are per second of this process's CPU time, and the operations take turns in short
    slices, so other processes on a shared machine disturb the figures and ratios little."""
    for operation in operations:
        operation()  # warm-up: caches, lazy imports
    counts = [0] * len(operations)
    spent = [0.0] * len(operations)
    slice_seconds = min(0.05, seconds / (4 * len(operations)))
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for index, operation in enumerate(operations):
            start = time.process_time()
            stop = start + slice_seconds
            done = 0
            while True:
                for _ in range(8):
                    operation()
                done += 8
                now = time.process_time()
                if now >= stop:
                    break
            counts[index] += done
            spent[index] += now - start
    return [count / elapsed for count, elapsed in zip(counts, spent, strict=True)]


def voucher_payload(registrar_der: bytes, now: datetime) -> bytes:
    """A realistic RFC 8366 voucher: pinned-domain-cert is a real registrar certificate."""
    voucher = {
        "ietf-voucher:voucher": {
            "created-on": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "expires-on": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "assertion": "logged",
            "serial-number": "SN-000000042",
            "idevid-issuer": base64.b64encode(bytes(range(24))).decode(),
            "pinned-domain-cert": base64.b64encode(registrar_der).decode(),
            "nonce": "-_XE9zK9q8Ll1qylMtLKeg",
            "domain-cert-revocation-checks": False,
        }
    }
    return json.dumps(voucher, separators=(",", ":")).encode()


def token_signer(vendor: certs.Identity, now: datetime, folder: str) -> SigningIdentity:
    """A MASA signer whose P-256 key is generated in a fresh SoftHSM2 token in ``folder``."""
    from zerotouch_plugin.services.pkcs11 import Pkcs11Signer, generate_key

    tokens = os.path.join(folder, "tokens")
    os.mkdir(tokens)
    conf = os.path.join(folder, "softhsm2.conf")
    with open(conf, "w", encoding="utf-8") as fh:
        fh.write(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n")
    os.environ["SOFTHSM2_CONF"] = conf
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", "bench", "--pin", "1234",
         "--so-pin", "5678"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    uri = "pkcs11:token=bench;object=masa?pin-value=1234"
    public = generate_key(uri)
    cert = certs.masa_signer_cert(vendor, public, "Bench token MASA", now=now)
    return SigningIdentity(cert, Pkcs11Signer(uri))


def measure(seconds: float, *, softhsm: bool = False) -> Figures:
    now = datetime.now(UTC)
    vendor = certs.make_ca("Bench Manufacturer CA", now=now)
    masa = certs.issue_masa_signer(vendor, "Bench MASA", now=now)
    domain = certs.make_ca("Bench Domain CA", now=now)
    registrar = certs.issue_registrar(domain, "registrar", hosts=["127.0.0.1"], now=now)
    payload = voucher_payload(registrar.cert.public_bytes(serialization.Encoding.DER), now)
    signed = cms.sign(payload, signer=masa, now=now)
    anchors = [vendor.cert]
    cms.verify(signed, trust_anchors=anchors, now=now)  # must succeed before timing

    assert isinstance(masa.key, ec.EllipticCurvePrivateKey)
    key = masa.key
    public = key.public_key()
    signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    ecdsa = ec.ECDSA(hashes.SHA256())
    operations: list[Callable[[], object]] = [
        lambda: cms.sign(payload, signer=masa, now=now),
        lambda: cms.verify(signed, trust_anchors=anchors, now=now),
        lambda: key.sign(payload, ecdsa),
        lambda: public.verify(signature, payload, ecdsa),
    ]
    token_sign = None
    with tempfile.TemporaryDirectory() as folder:
        if softhsm:
            token = token_signer(vendor, now, folder)
            cms.verify(cms.sign(payload, signer=token, now=now), trust_anchors=anchors, now=now)
            operations.append(lambda: cms.sign(payload, signer=token, now=now))
        found = rates(operations, seconds)
        voucher_sign, voucher_verify, raw_sign, raw_verify = found[:4]
        if softhsm:
            token_sign = found[4]
    return Figures(
        voucher_sign_per_s=voucher_sign,
        voucher_verify_per_s=voucher_verify,
        raw_sign_per_s=raw_sign,
        raw_verify_per_s=raw_verify,
        sign_ratio=voucher_sign / raw_sign,
        verify_ratio=voucher_verify / raw_verify,
        payload_bytes=len(payload),
        cms_bytes=len(signed),
        token_sign_per_s=token_sign,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0, help="total run time (default 10)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--softhsm", action="store_true", help="also sign with the key in a SoftHSM2 token"
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    if args.softhsm and shutil.which("softhsm2-util") is None:
        parser.error("--softhsm needs SoftHSM2 (scripts/setup-system.sh installs softhsm2)")
    figures = measure(args.seconds, softhsm=args.softhsm)
    if args.json:
        print(json.dumps(asdict(figures), indent=2))
        return 0
    verdict = {True: "meets", False: "MISSES"}
    print(f"payload {figures.payload_bytes} bytes JSON, CMS {figures.cms_bytes} bytes DER (P-256)")
    print(f"voucher sign   {figures.voucher_sign_per_s:10.0f}/s")
    print(f"voucher verify {figures.voucher_verify_per_s:10.0f}/s  (signature + path validation)")
    print(f"raw ECDSA sign   {figures.raw_sign_per_s:8.0f}/s")
    print(f"raw ECDSA verify {figures.raw_verify_per_s:8.0f}/s")
    if figures.token_sign_per_s is not None:
        print(f"voucher sign, key in PKCS#11 token {figures.token_sign_per_s:8.0f}/s (SoftHSM2)")
    for name, ratio in (("sign", figures.sign_ratio), ("verify", figures.verify_ratio)):
        meets = verdict[ratio >= TARGET_RATIO]
        print(f"{name} ratio {ratio:6.1%} ({meets} the {TARGET_RATIO:.0%} target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

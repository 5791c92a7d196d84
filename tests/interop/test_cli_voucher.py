"""``zerotouch voucher sign|verify|inspect`` end to end, as processes.

The vendor PKI comes from ``zerotouch vendor init/idevid``; the OpenSSL CLI is the
independent peer in both directions (its vouchers verify in zerotouch, ours in OpenSSL).
Process start-up dominates, so the commands run in two parallel batches (sign, then
verify/inspect) and the tests check their recorded results.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.artifacts.voucher import new_nonce
from zerotouch_plugin.services import certfiles

SERIAL = "SN-CLI-0001"
NONCE = new_nonce(b"interop-nonce-16")
OPAQUE_NONCE = "-_XE9zK9q8Ll1qylMtLKeg"  # RFC 8995 Appendix C style
ANIMA_JSON_VOUCHER = "1.2.840.113549.1.9.16.1.40"
ID_DATA = "1.2.840.113549.1.7.1"
OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl CLI missing (make system)")

Result = subprocess.CompletedProcess[str]
Command = Sequence[str | Path]


def zerotouch(*args: str | Path) -> Result:
    return subprocess.run(
        [sys.executable, "-m", "zerotouch_plugin", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def run_all(commands: Mapping[str, Command]) -> dict[str, Result]:
    """Run ``zerotouch`` commands in parallel; results by name."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(zerotouch, *args) for name, args in commands.items()}
        return {name: future.result() for name, future in futures.items()}


def openssl(*args: str | Path) -> Result:
    assert OPENSSL is not None
    return subprocess.run(
        [OPENSSL, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def assert_ok(result: Result) -> None:
    assert result.returncode == 0, (result.stdout, result.stderr)


def assert_fails(result: Result, reason: str) -> None:
    """Exit 1, exactly one line on stderr starting with the reason, no traceback, no stdout."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{reason}: "), lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@dataclass(frozen=True)
class Setup:
    root: Path
    vendor: Path  # V from `zerotouch vendor init`
    pledge: Path  # P from `zerotouch vendor idevid`
    voucher: dict[str, object]  # the payload signed everywhere

    def path(self, name: str) -> Path:
        return self.root / name

    def write(self, name: str, data: bytes) -> Path:
        path = self.root / name
        path.write_bytes(data)
        return path

    @property
    def masa(self) -> list[str | Path]:
        return ["--cert", self.vendor / "masa-signer.pem", "--key", self.vendor / "masa-signer.key"]

    @property
    def trust(self) -> list[str | Path]:
        return ["--trust", self.pledge / "masa-ca.pem"]


def _payloads(root: Path) -> dict[str, object]:
    now = datetime.now(UTC)
    domain = certs.make_ca("interop owner domain CA", now=now)
    certfiles.write_certs(root / "other-ca.pem", [certs.make_ca("interop other CA", now=now).cert])
    body = {
        "created-on": "2026-11-26T12:00:00Z",
        "assertion": "logged",
        "serial-number": SERIAL,
        "pinned-domain-cert": base64.b64encode(domain.cert.public_bytes(Encoding.DER)).decode(),
        "nonce": NONCE,
    }
    voucher = {"ietf-voucher:voucher": body}
    request = {
        "ietf-voucher-request:voucher": {
            "created-on": "2026-11-26T12:00:00Z",
            "assertion": "proximity",
            "serial-number": SERIAL,
            "nonce": NONCE,
        }
    }
    variants = {
        "voucher.json": voucher,
        "request.json": request,
        "bad-enum.json": {"ietf-voucher:voucher": {**body, "assertion": "trusted"}},
        "quirky.json": {"ietf-voucher:voucher": {**body, "nonce": OPAQUE_NONCE}},
        "no-serial.json": {
            "ietf-voucher:voucher": {k: v for k, v in body.items() if k != "serial-number"}
        },
    }
    for name, obj in variants.items():
        (root / name).write_text(json.dumps(obj))
    return voucher


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    root = tmp_path_factory.mktemp("cli-voucher")
    vendor, pledge = root / "V", root / "P"
    assert_ok(zerotouch("vendor", "init", "--dir", vendor, "--masa-url", "https://127.0.0.1:9443"))
    assert_ok(zerotouch("vendor", "idevid", "--dir", vendor, "--serial", SERIAL, "--out", pledge))
    return Setup(root, vendor, pledge, _payloads(root))


@pytest.fixture(scope="module")
def signing(setup: Setup) -> dict[str, Result]:
    """Batch 1: every ``voucher sign``."""
    s = setup
    idevid = ["--cert", s.pledge / "idevid.pem", "--key", s.pledge / "idevid.key"]
    sign = ["voucher", "sign", "--payload"]
    names = ("voucher", "request", "chained", "never", "q0", "quirky")
    out = {name: ["--out", s.path(f"{name}.cms")] for name in names}
    chain = ["--chain", s.vendor / "ca.pem"]
    return run_all(
        {
            "voucher": [*sign, s.path("voucher.json"), *s.masa, *out["voucher"]],
            "request": [*sign, s.path("request.json"), *idevid, *out["request"]],
            "chained": [*sign, s.path("voucher.json"), *s.masa, *chain, *out["chained"]],
            "bad-enum": [*sign, s.path("bad-enum.json"), *s.masa, *out["never"]],
            "quirky-strict": [*sign, s.path("quirky.json"), *s.masa, *out["q0"]],
            "quirky": [*sign, s.path("quirky.json"), *s.masa, "--tolerant", *out["quirky"]],
        }
    )


def _openssl_sign(setup: Setup, payload: str, out: str, *extra: str) -> Path:
    result = openssl(
        "cms", "-sign", "-binary", "-nodetach", "-outform", "DER", "-in", setup.path(payload),
        "-signer", setup.vendor / "masa-signer.pem", "-inkey", setup.vendor / "masa-signer.key",
        "-out", setup.path(out), *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return setup.path(out)


@pytest.fixture(scope="module")
def checks(setup: Setup, signing: dict[str, Result]) -> dict[str, Result]:
    """Batch 2: every ``voucher verify`` / ``inspect``, on good and on broken inputs."""
    s = setup
    assert_ok(signing["voucher"])
    assert_ok(signing["request"])
    signed = s.path("voucher.cms").read_bytes()
    tampered = signed.replace(SERIAL.encode(), SERIAL[:-1].encode() + b"9")
    assert tampered != signed
    bad_signature = bytearray(signed)
    bad_signature[-1] ^= 0x01  # last byte of the ECDSA signature value
    b64 = base64.b64encode(signed)
    pem = b"-----BEGIN CMS-----\n"
    pem += b"\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
    pem += b"\n-----END CMS-----\n"
    verify = ["voucher", "verify"]
    inspect = ["voucher", "inspect"]
    voucher = s.path("voucher.cms")
    expect = ["--expect-serial", SERIAL, "--expect-nonce", NONCE]
    quirky = [s.path("quirky.cms"), *s.trust]
    commands: dict[str, Command] = {
        "verify": [*verify, voucher, *s.trust, *expect],
        "verify-base64": [*verify, s.write("voucher.b64", b64), *s.trust],
        "verify-pem": [*verify, s.write("voucher.pem", pem), *s.trust],
        "verify-request": [*verify, s.path("request.cms"), *s.trust, "--request", *expect],
        "inspect": [*inspect, voucher],
        "inspect-tampered": [*inspect, s.write("tampered.cms", tampered)],
        "verify-chained": [*verify, s.path("chained.cms"), *s.trust],
        "inspect-chained": [*inspect, s.path("chained.cms")],
        "verify-quirky": [*verify, *quirky, f"--expect-nonce={OPAQUE_NONCE}"],
        "verify-quirky-strict": [*verify, *quirky, "--strict"],
        # one per failure reason
        "digest-mismatch": [*verify, s.path("tampered.cms"), *s.trust],
        "bad-signature": [*verify, s.write("badsig.cms", bytes(bad_signature)), *s.trust],
        "untrusted-signer": [*verify, voucher, "--trust", s.path("other-ca.pem")],
        "expired": [*verify, voucher, *s.trust, "--at", "2099-01-01T00:00:00Z"],
        "wrong-serial": [*verify, voucher, *s.trust, "--expect-serial", "SN-OTHER"],
        "wrong-nonce": [*verify, voucher, *s.trust, "--expect-nonce", new_nonce(bytes(16))],
        "not-cms": [*verify, s.path("voucher.json"), *s.trust],
        "truncated": [*verify, s.write("truncated.cms", signed[:-40]), *s.trust],
        "wrong-artifact": [*verify, s.path("request.cms"), *s.trust],
        "io-error": [*verify, s.path("nope.cms"), *s.trust],
    }
    if OPENSSL is not None:
        econtent = ("-econtent_type", ANIMA_JSON_VOUCHER)
        typed = _openssl_sign(s, "voucher.json", "openssl-typed.cms", *econtent)
        data = _openssl_sign(s, "voucher.json", "openssl-data.cms")
        no_serial = _openssl_sign(s, "no-serial.json", "openssl-no-serial.cms", *econtent)
        commands |= {
            "openssl-typed": [*verify, typed, *s.trust, *expect],
            "openssl-typed-inspect": [*inspect, typed],
            "openssl-data": [*verify, data, *s.trust, *expect],
            "openssl-data-inspect": [*inspect, data],
            "openssl-data-strict": [*verify, data, *s.trust, "--strict"],
            "openssl-no-serial": [*verify, no_serial, *s.trust],
        }
    return run_all(commands)


# --- sign -------------------------------------------------------------------------------------


def test_sign_writes_der_cms(setup: Setup, signing: dict[str, Result]) -> None:
    assert_ok(signing["voucher"])
    assert "signed voucher for serial-number 'SN-CLI-0001'" in signing["voucher"].stdout
    assert setup.path("voucher.cms").read_bytes()[:1] == b"\x30"


def test_sign_refuses_an_invalid_payload(setup: Setup, signing: dict[str, Result]) -> None:
    assert_fails(signing["bad-enum"], "schema-error")
    assert "not in enumeration" in signing["bad-enum"].stderr
    assert "/ietf-voucher:voucher/assertion" in signing["bad-enum"].stderr
    assert not setup.path("never.cms").exists()


def test_sign_needs_tolerant_for_an_opaque_nonce(
    checks: dict[str, Result], signing: dict[str, Result]
) -> None:
    assert_fails(signing["quirky-strict"], "schema-error")
    assert_ok(signing["quirky"])
    assert_ok(checks["verify-quirky"])
    assert json.loads(checks["verify-quirky"].stdout)["ietf-voucher:voucher"]["nonce"] == (
        OPAQUE_NONCE
    )
    assert_fails(checks["verify-quirky-strict"], "schema-error")


def test_sign_with_chain_embeds_it(checks: dict[str, Result]) -> None:
    assert_ok(checks["verify-chained"])
    assert "embedded certificates: 2" in checks["inspect-chained"].stdout


# --- verify and inspect -----------------------------------------------------------------------


def test_verify_prints_the_payload(setup: Setup, checks: dict[str, Result]) -> None:
    result = checks["verify"]
    assert_ok(result)
    assert json.loads(result.stdout) == setup.voucher
    assert result.stderr == ""


@pytest.mark.parametrize("case", ["verify-base64", "verify-pem"])
def test_verify_accepts_base64_and_pem(setup: Setup, checks: dict[str, Result], case: str) -> None:
    assert_ok(checks[case])
    assert json.loads(checks[case].stdout) == setup.voucher


def test_verify_request(checks: dict[str, Result]) -> None:
    assert_ok(checks["verify-request"])
    assert "ietf-voucher-request:voucher" in json.loads(checks["verify-request"].stdout)


def test_inspect_is_labelled_unverified(setup: Setup, checks: dict[str, Result]) -> None:
    result = checks["inspect"]
    assert_ok(result)
    out = result.stdout
    assert out.startswith("UNVERIFIED")
    assert "signer (UNVERIFIED)" in out
    assert "payload (UNVERIFIED)" in out
    assert ANIMA_JSON_VOUCHER in out
    assert "signing-time: 20" in out
    signer = certfiles.load_cert_file(setup.vendor / "masa-signer.pem")
    assert signer.subject.rfc4514_string() in out
    assert signer.issuer.rfc4514_string() in out
    assert "validity:" in out
    assert SERIAL in out
    # Inspect shows even what verify refuses: it is not a trust decision.
    assert_ok(checks["inspect-tampered"])
    assert "UNVERIFIED" in checks["inspect-tampered"].stdout


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("digest-mismatch", "digest-mismatch"),  # tampered payload
        ("bad-signature", "bad-signature"),
        ("untrusted-signer", "untrusted-signer"),  # wrong trust anchor
        ("expired", "expired"),  # signer certificate not valid at --at
        ("wrong-serial", "wrong-serial"),
        ("wrong-nonce", "wrong-nonce"),
        ("not-cms", "not-cms"),
        ("truncated", "not-cms"),  # truncated DER
        ("wrong-artifact", "wrong-artifact"),  # voucher-request where a voucher is expected
        ("io-error", "io-error"),  # missing input file
    ],
)
def test_verify_failure_reason(checks: dict[str, Result], case: str, reason: str) -> None:
    assert_fails(checks[case], reason)


# --- OpenSSL in both directions ---------------------------------------------------------------


@needs_openssl
@pytest.mark.parametrize(
    ("case", "content_type"), [("typed", ANIMA_JSON_VOUCHER), ("data", ID_DATA)]
)
def test_openssl_signed_voucher_verifies(
    setup: Setup, checks: dict[str, Result], case: str, content_type: str
) -> None:
    assert_ok(checks[f"openssl-{case}"])
    assert json.loads(checks[f"openssl-{case}"].stdout) == setup.voucher
    assert content_type in checks[f"openssl-{case}-inspect"].stdout


@needs_openssl
def test_id_data_is_accepted_only_through_its_tolerance(checks: dict[str, Result]) -> None:
    assert_fails(checks["openssl-data-strict"], "wrong-artifact")


@needs_openssl
def test_openssl_signed_payload_with_schema_error(checks: dict[str, Result]) -> None:
    result = checks["openssl-no-serial"]
    assert_fails(result, "schema-error")
    assert "missing mandatory leaf 'serial-number'" in result.stderr
    assert "/ietf-voucher:voucher/serial-number" in result.stderr


@needs_openssl
def test_zerotouch_signed_voucher_verifies_in_openssl(
    setup: Setup, signing: dict[str, Result]
) -> None:
    assert_ok(signing["voucher"])
    out = setup.path("openssl-out.json")
    result = openssl(
        "cms", "-verify", "-binary", "-inform", "DER", "-in", setup.path("voucher.cms"),
        "-purpose", "any", "-CAfile", setup.pledge / "masa-ca.pem", "-out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Verification successful" in result.stderr
    assert json.loads(out.read_bytes()) == setup.voucher

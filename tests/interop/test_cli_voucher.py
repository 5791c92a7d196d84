"""``zerotouch voucher sign|verify|inspect`` and ``zerotouch demo`` end to end, as processes.

The vendor PKI comes from ``zerotouch vendor init/idevid``; the OpenSSL CLI is the
independent peer in both directions (its vouchers verify in zerotouch, ours in OpenSSL).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.artifacts.voucher import new_nonce

SERIAL = "SN-CLI-0001"
NONCE = new_nonce(b"interop-nonce-16")
OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl CLI missing (make system)")


def zerotouch(*args: str | Path, check: bool = False) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "zerotouch_plugin", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert OPENSSL is not None
    return subprocess.run(
        [OPENSSL, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


@dataclass(frozen=True)
class Setup:
    root: Path
    vendor: Path  # V
    pledge: Path  # P
    other_ca: Path
    voucher_json: Path
    request_json: Path

    def write(self, name: str, data: bytes) -> Path:
        path = self.root / name
        path.write_bytes(data)
        return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    root = tmp_path_factory.mktemp("cli-voucher")
    vendor, pledge = root / "V", root / "P"
    zerotouch("vendor", "init", "--dir", vendor, "--masa-url", "https://127.0.0.1:9443", check=True)
    zerotouch("vendor", "idevid", "--dir", vendor, "--serial", SERIAL, "--out", pledge, check=True)
    now = datetime.now(UTC)
    domain = certs.make_ca("interop owner domain CA", now=now)
    other = certs.make_ca("interop unrelated CA", now=now)
    certs.write_certs(root / "other-ca.pem", [other.cert])
    pinned = base64.b64encode(domain.cert.public_bytes(Encoding.DER)).decode()
    voucher = {
        "ietf-voucher:voucher": {
            "created-on": "2026-11-26T12:00:00Z",
            "assertion": "logged",
            "serial-number": SERIAL,
            "pinned-domain-cert": pinned,
            "nonce": NONCE,
        }
    }
    request = {
        "ietf-voucher-request:voucher": {
            "created-on": "2026-11-26T12:00:00Z",
            "assertion": "proximity",
            "serial-number": SERIAL,
            "nonce": NONCE,
        }
    }
    (root / "voucher.json").write_text(json.dumps(voucher))
    (root / "request.json").write_text(json.dumps(request))
    return Setup(
        root, vendor, pledge, root / "other-ca.pem", root / "voucher.json", root / "request.json"
    )


@pytest.fixture(scope="module")
def signed(setup: Setup) -> Path:
    out = setup.root / "voucher.cms"
    result = zerotouch(
        "voucher", "sign", "--payload", setup.voucher_json,
        "--cert", setup.vendor / "masa-signer.pem", "--key", setup.vendor / "masa-signer.key",
        "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "signed voucher" in result.stdout
    return out


def assert_fails(result: subprocess.CompletedProcess[str], reason: str) -> None:
    """Exit 1, exactly one line on stderr starting with the reason, no traceback, no stdout."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{reason}: "), lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def verify(setup: Setup, path: Path, *extra: str | Path) -> subprocess.CompletedProcess[str]:
    return zerotouch("voucher", "verify", path, "--trust", setup.pledge / "masa-ca.pem", *extra)


# --- success paths ---------------------------------------------------------------------------


def test_sign_writes_der_cms(signed: Path) -> None:
    assert signed.read_bytes()[:1] == b"\x30"


def test_verify_prints_the_payload(setup: Setup, signed: Path) -> None:
    result = verify(setup, signed, "--expect-serial", SERIAL, "--expect-nonce", NONCE)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(setup.voucher_json.read_text())
    assert result.stderr == ""


def test_verify_accepts_pem_and_base64_input(setup: Setup, signed: Path) -> None:
    b64 = base64.b64encode(signed.read_bytes())
    assert verify(setup, setup.write("voucher.b64", b64)).returncode == 0
    body = b"\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
    pem = b"-----BEGIN CMS-----\n" + body + b"\n-----END CMS-----\n"
    assert verify(setup, setup.write("voucher.pem", pem)).returncode == 0


def test_voucher_request_with_request_flag(setup: Setup) -> None:
    out = setup.root / "request.cms"
    result = zerotouch(
        "voucher", "sign", "--payload", setup.request_json,
        "--cert", setup.pledge / "idevid.pem", "--key", setup.pledge / "idevid.key",
        "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    ok = verify(setup, out, "--request", "--expect-serial", SERIAL, "--expect-nonce", NONCE)
    assert ok.returncode == 0, ok.stderr
    assert "ietf-voucher-request:voucher" in json.loads(ok.stdout)


def test_inspect_is_labelled_unverified(setup: Setup, signed: Path) -> None:
    result = zerotouch("voucher", "inspect", signed)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("UNVERIFIED")
    assert "payload (UNVERIFIED)" in out
    assert "1.2.840.113549.1.9.16.1.40" in out
    assert "signing-time:" in out
    signer = certs.load_cert_file(setup.vendor / "masa-signer.pem")
    assert signer.subject.rfc4514_string() in out
    assert signer.issuer.rfc4514_string() in out
    assert SERIAL in out
    # Inspect shows even what verify refuses: it is not a trust decision.
    assert zerotouch("voucher", "inspect", setup.write("t.cms", tamper(signed))).returncode == 0


def test_sign_with_chain_embeds_it(setup: Setup) -> None:
    out = setup.root / "chained.cms"
    result = zerotouch(
        "voucher", "sign", "--payload", setup.voucher_json,
        "--cert", setup.vendor / "masa-signer.pem", "--key", setup.vendor / "masa-signer.key",
        "--chain", setup.vendor / "ca.pem", "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "embedded certificates: 2" in zerotouch("voucher", "inspect", out).stdout
    assert verify(setup, out).returncode == 0


# --- each failure reason: one line, exit 1 --------------------------------------------------


def tamper(signed: Path) -> bytes:
    data = signed.read_bytes()
    changed = data.replace(SERIAL.encode(), SERIAL[:-1].encode() + b"9")
    assert changed != data
    return changed


def _bad_signature(signed: Path) -> bytes:
    data = bytearray(signed.read_bytes())
    data[-1] ^= 0x01  # last byte of the ECDSA signature value
    return bytes(data)


@pytest.fixture(scope="module")
def failures(setup: Setup, signed: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every failing verify, run as processes in parallel (start-up time dominates)."""
    request = setup.root / "request-for-failures.cms"
    zerotouch(
        "voucher", "sign", "--payload", setup.request_json, "--out", request,
        "--cert", setup.pledge / "idevid.pem", "--key", setup.pledge / "idevid.key", check=True,
    )  # fmt: skip
    trust = ["--trust", setup.pledge / "masa-ca.pem"]
    cases: dict[str, list[str | Path]] = {
        "digest-mismatch": [setup.write("tampered.cms", tamper(signed)), *trust],
        "bad-signature": [setup.write("badsig.cms", _bad_signature(signed)), *trust],
        "untrusted-signer": [signed, "--trust", setup.other_ca],
        "expired": [signed, *trust, "--at", "2099-01-01T00:00:00Z"],
        "wrong-serial": [signed, *trust, "--expect-serial", "SN-OTHER"],
        "wrong-nonce": [signed, *trust, "--expect-nonce", new_nonce(bytes(16))],
        "not-cms": [setup.voucher_json, *trust],
        "truncated": [setup.write("truncated.cms", signed.read_bytes()[:-40]), *trust],
        "wrong-artifact": [request, *trust],
        "io-error": [setup.root / "nope.cms", *trust],
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            name: pool.submit(zerotouch, "voucher", "verify", *args) for name, args in cases.items()
        }
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("digest-mismatch", "digest-mismatch"),  # tampered payload
        ("bad-signature", "bad-signature"),
        ("untrusted-signer", "untrusted-signer"),  # wrong trust anchor
        ("expired", "expired"),  # signer certificate expired at --at
        ("wrong-serial", "wrong-serial"),
        ("wrong-nonce", "wrong-nonce"),
        ("not-cms", "not-cms"),
        ("truncated", "not-cms"),  # truncated DER
        ("wrong-artifact", "wrong-artifact"),  # voucher-request where a voucher is expected
        ("io-error", "io-error"),  # missing input file
    ],
)
def test_verify_failure_reason(
    failures: dict[str, subprocess.CompletedProcess[str]], case: str, reason: str
) -> None:
    assert_fails(failures[case], reason)


def test_sign_refuses_an_invalid_payload(setup: Setup) -> None:
    bad = json.loads(setup.voucher_json.read_text())
    bad["ietf-voucher:voucher"]["assertion"] = "trusted"
    payload = setup.write("bad.json", json.dumps(bad).encode())
    result = zerotouch(
        "voucher", "sign", "--payload", payload,
        "--cert", setup.vendor / "masa-signer.pem", "--key", setup.vendor / "masa-signer.key",
        "--out", setup.root / "never.cms",
    )  # fmt: skip
    assert_fails(result, "schema-error")
    assert "/ietf-voucher:voucher/assertion" in result.stderr
    assert not (setup.root / "never.cms").exists()


def test_sign_tolerant_accepts_an_opaque_nonce(setup: Setup) -> None:
    quirky = json.loads(setup.voucher_json.read_text())
    quirky["ietf-voucher:voucher"]["nonce"] = "-_XE9zK9q8Ll1qylMtLKeg"
    payload = setup.write("quirky.json", json.dumps(quirky).encode())
    args = ["voucher", "sign", "--payload", payload, "--out", setup.root / "quirky.cms"]
    args += ["--cert", setup.vendor / "masa-signer.pem", "--key", setup.vendor / "masa-signer.key"]
    assert_fails(zerotouch(*args), "schema-error")
    assert zerotouch(*args, "--tolerant").returncode == 0
    ok = verify(setup, setup.root / "quirky.cms", "--expect-nonce=-_XE9zK9q8Ll1qylMtLKeg")
    assert ok.returncode == 0, ok.stderr
    assert_fails(verify(setup, setup.root / "quirky.cms", "--strict"), "schema-error")


# --- OpenSSL in both directions -------------------------------------------------------------


def openssl_sign(setup: Setup, payload: Path, out: Path, *extra: str) -> None:
    result = openssl(
        "cms", "-sign", "-binary", "-nodetach", "-outform", "DER", "-in", payload,
        "-signer", setup.vendor / "masa-signer.pem", "-inkey", setup.vendor / "masa-signer.key",
        "-out", out, *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


@needs_openssl
@pytest.mark.parametrize(
    ("extra", "content_type"),
    [
        (("-econtent_type", "1.2.840.113549.1.9.16.1.40"), "1.2.840.113549.1.9.16.1.40"),
        ((), "1.2.840.113549.1.7.1"),  # id-data, as in RFC 8995 Appendix C
    ],
)
def test_openssl_signed_voucher_verifies(
    setup: Setup, extra: tuple[str, ...], content_type: str
) -> None:
    out = setup.root / f"openssl-{len(extra)}.cms"
    openssl_sign(setup, setup.voucher_json, out, *extra)
    result = verify(setup, out, "--expect-serial", SERIAL, "--expect-nonce", NONCE)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(setup.voucher_json.read_text())
    assert content_type in zerotouch("voucher", "inspect", out).stdout
    if not extra:  # id-data is accepted only through its named tolerance
        assert_fails(verify(setup, out, "--strict"), "wrong-artifact")


@needs_openssl
def test_openssl_signed_payload_with_schema_error(setup: Setup) -> None:
    bad = json.loads(setup.voucher_json.read_text())
    del bad["ietf-voucher:voucher"]["serial-number"]
    payload = setup.write("no-serial.json", json.dumps(bad).encode())
    out = setup.root / "no-serial.cms"
    openssl_sign(setup, payload, out, "-econtent_type", "1.2.840.113549.1.9.16.1.40")
    result = verify(setup, out)
    assert_fails(result, "schema-error")
    assert "/ietf-voucher:voucher/serial-number" in result.stderr
    assert "missing mandatory" in result.stderr


@needs_openssl
def test_zerotouch_signed_voucher_verifies_in_openssl(setup: Setup, signed: Path) -> None:
    out = setup.root / "openssl-out.json"
    result = openssl(
        "cms", "-verify", "-binary", "-inform", "DER", "-in", signed, "-purpose", "any",
        "-CAfile", setup.pledge / "masa-ca.pem", "-out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Verification successful" in result.stderr
    payload = json.loads(out.read_bytes())
    assert payload == json.loads(setup.voucher_json.read_text())


# --- the partial demo -----------------------------------------------------------------------


def test_demo_runs_every_step_and_says_it_is_partial(tmp_path: Path) -> None:
    result = zerotouch("demo", "--workdir", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("PARTIAL DEMO")
    assert lines[-1].startswith("PARTIAL DEMO")
    assert "FAILED" not in result.stdout
    assert "steps held" in result.stdout
    assert (tmp_path / "voucher.cms").is_file()
    check = verify_with(tmp_path / "voucher.cms", tmp_path / "vendor-ca.pem")
    assert check.returncode == 0, check.stderr


def verify_with(path: Path, trust: Path) -> subprocess.CompletedProcess[str]:
    return zerotouch("voucher", "verify", path, "--trust", trust, "--expect-serial", "ZT-DEMO-0001")

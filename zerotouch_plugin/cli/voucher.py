"""``zerotouch voucher ...``: sign, verify and inspect CMS-signed vouchers and voucher-requests.

Thin: the library validates (YANG), signs and verifies (CMS); this module reads files and
prints. Failures surface as ``reason: message`` on one line through ``cli.main``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from zerotouch_plugin._json import bounded_loads
from zerotouch_plugin.artifacts import certs, cms
from zerotouch_plugin.artifacts.voucher import (
    DEFAULT_TOLERANCES,
    STRICT,
    format_datetime,
    load_artifact,
    parse_datetime,
    parse_signed_voucher,
    parse_signed_voucher_request,
)
from zerotouch_plugin.artifacts.yang import MEMBER_BY_KIND
from zerotouch_plugin.services import certfiles

__all__ = ["HELP", "register"]

HELP = "sign, verify and inspect CMS-signed vouchers and voucher-requests (RFC 8366, RFC 8995)"

# Dotted eContentType -> its name, for inspect.
_CONTENT_TYPE_NAMES = {
    cms.OID_ANIMA_JSON_VOUCHER: "id-ct-animaJSONVoucher (RFC 8366)",
    cms.OID_DATA: "id-data (as in RFC 8995 Appendix C)",
    cms.OID_SZTP_CONVEYED_INFO: "id-ct-sztpConveyedInfoJSON (RFC 8572)",
}


def _time(text: str) -> datetime:
    try:
        return parse_datetime(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (e.g. 2021-04-13T21:43:24Z)") from None


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)

    sign = sub.add_parser(
        "sign",
        help="validate a voucher or voucher-request JSON payload and sign it (CMS DER)",
        description="Validates the payload against its YANG schema, then writes CMS "
        "SignedData (eContentType id-ct-animaJSONVoucher, RFC 8366 §8.3) as DER.",
    )
    sign.add_argument("--payload", type=Path, required=True, help="RFC 7951 JSON file")
    sign.add_argument("--cert", type=Path, required=True, help="signer certificate (PEM)")
    sign.add_argument("--key", type=Path, required=True, help="signer private key (PEM)")
    sign.add_argument("--chain", type=Path, help="intermediate certificates to embed (PEM)")
    sign.add_argument("--out", type=Path, required=True, help="output file (CMS DER)")
    sign.add_argument(
        "--tolerant",
        action="store_true",
        help="accept the payload quirks real artifacts show (e.g. an opaque nonce)",
    )
    sign.add_argument("--at", type=_time, help="signing time, RFC 3339 (default: now)")
    sign.set_defaults(func=_sign)

    verify = sub.add_parser(
        "verify",
        help="verify a signed voucher; print its payload JSON on success",
        description="Checks the CMS signature, the message digest, the signer's path to "
        "--trust at --at, the YANG schema, and the expected serial-number / nonce. "
        "On success prints the payload JSON and exits 0; otherwise prints one line "
        "'reason: message' on stderr and exits 1.",
    )
    verify.add_argument("input", type=Path, metavar="IN", help="CMS as DER, PEM or base64")
    verify.add_argument("--trust", type=Path, required=True, help="trust anchor(s) (PEM)")
    verify.add_argument("--at", type=_time, help="verification time, RFC 3339 (default: now)")
    verify.add_argument("--expect-serial", metavar="SN", help="the pledge's serial-number")
    verify.add_argument(
        "--expect-nonce",
        metavar="N",
        help="the nonce sent (compared verbatim; one starting with - as --expect-nonce=N)",
    )
    verify.add_argument(
        "--request", action="store_true", help="expect a voucher-request, not a voucher"
    )
    verify.add_argument(
        "--strict", action="store_true", help="accept no tolerance (see docs/cli/voucher.md)"
    )
    verify.set_defaults(func=_verify)

    inspect = sub.add_parser(
        "inspect",
        help="show payload and signer of a signed artifact WITHOUT verifying anything",
    )
    inspect.add_argument("input", type=Path, metavar="IN", help="CMS as DER, PEM or base64")
    inspect.set_defaults(func=_inspect)


def _sign(args: argparse.Namespace) -> int:
    tolerances = DEFAULT_TOLERANCES if args.tolerant else STRICT
    artifact = load_artifact(args.payload.read_bytes(), tolerances=tolerances)
    identity = certfiles.load_identity(args.cert, args.key)
    if args.chain is not None:
        extra = tuple(certs.load_certs(args.chain.read_bytes()))
        identity = certs.Identity(identity.cert, identity.key, identity.chain + extra)
    now = args.at or datetime.now(UTC)
    der = cms.sign(artifact.to_json(), signer=identity, now=now)
    args.out.write_bytes(der)
    print(f"signed {artifact.KIND} for serial-number {artifact.serial_number!r} -> {args.out}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    data = args.input.read_bytes()
    anchors = certs.load_certs(args.trust.read_bytes())
    now = args.at or datetime.now(UTC)
    tolerances = STRICT if args.strict else DEFAULT_TOLERANCES
    parse = parse_signed_voucher_request if args.request else parse_signed_voucher
    artifact, signed = parse(data, trust_anchors=anchors, now=now, tolerances=tolerances)
    artifact.check(now=now, serial=args.expect_serial, nonce=args.expect_nonce)
    print(json.dumps(json.loads(signed.content), indent=2))
    return 0


def _describe_cert(cert: x509.Certificate) -> list[str]:
    return [
        f"  subject:    {cert.subject.rfc4514_string()}",
        f"  issuer:     {cert.issuer.rfc4514_string()}",
        f"  validity:   {format_datetime(cert.not_valid_before_utc)} .. "
        f"{format_datetime(cert.not_valid_after_utc)}",
        f"  serial:     {cert.serial_number:#x}",
        f"  sha256:     {certs.fingerprint(cert)}",
    ]


def _payload_text(content: bytes) -> str:
    try:
        obj: Any = bounded_loads(content)
    except ValueError:
        return f"(not JSON, {len(content)} bytes) {content[:64]!r}"
    kind = ""
    if isinstance(obj, dict) and len(obj) == 1:
        member = next(iter(obj))
        kinds = {v: k for k, v in MEMBER_BY_KIND.items()}
        kind = f"  [{kinds.get(member, 'not a voucher artifact')}]"
    return json.dumps(obj, indent=2) + kind


def _inspect(args: argparse.Namespace) -> int:
    signed = cms.inspect(args.input.read_bytes())
    name = _CONTENT_TYPE_NAMES.get(signed.content_type, "unknown")
    signing_time = (
        format_datetime(signed.signing_time) if signed.signing_time is not None else "(absent)"
    )
    lines = [
        "UNVERIFIED: parsed only; no signature, digest, trust or schema check was made.",
        f"eContentType: {signed.content_type} {name}",
        f"signing-time: {signing_time}",
        "signer (UNVERIFIED):",
        *_describe_cert(signed.signer),
        f"embedded certificates: {len(signed.certificates)}",
    ]
    for cert in signed.certificates:
        lines.append(f"  - {cert.subject.rfc4514_string()} (issuer {cert.issuer.rfc4514_string()})")
    lines += ["payload (UNVERIFIED):", _payload_text(signed.content)]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0

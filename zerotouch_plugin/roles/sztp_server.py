"""The SZTP bootstrap server's decisions (RFC 8572 §7.1, §7.3), sans-IO with ``now`` passed in.

``plan`` says, for one authenticated device and its get-bootstrapping-data input, which
response it gets, whether the conveyed information is signed, and where the ownership
voucher comes from. The service carries the plan out (signing, asking the MASA) and stores
what happened.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from zerotouch_plugin.artifacts import cms, sztp
from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.artifacts.voucher import (
    Assertion,
    Voucher,
    VoucherRequest,
    parse_signed_voucher,
)
from zerotouch_plugin.errors import ConfigError, NotFound, UpstreamInvalid, ZerotouchError

__all__ = [
    "DEFAULT_RESPONSE",
    "DeviceRecord",
    "Plan",
    "ProgressRecord",
    "Response",
    "VoucherSource",
    "check_obtained_voucher",
    "plan",
    "progress_record",
    "voucher_request",
]

DEFAULT_RESPONSE = "default"


@dataclass(frozen=True)
class Response:
    """A named response the operator configured: redirect or onboarding information."""

    name: str
    info: sztp.ConveyedInformation


@dataclass(frozen=True)
class DeviceRecord:
    """What the server knows about one device (by its IDevID serial number)."""

    serial: str
    response: str | None = None
    voucher: bytes | None = None  # ownership voucher CMS, imported or from the MASA
    voucher_expires: datetime | None = None  # its expires-on; None: no expiry known
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    hw_model: str | None = None
    os_name: str | None = None
    os_version: str | None = None
    last_progress: str | None = None
    password: str | None = None  # hash_password() value for HTTP basic, where configured


class VoucherSource(StrEnum):
    """Where the ownership voucher of a signed answer comes from."""

    STORED = "stored"  # imported or fetched earlier, still valid
    MASA_NONCELESS = "masa-nonceless"  # pre-staged: expires-on, no nonce
    MASA_NONCE = "masa-nonce"  # bound to the nonce the device sent (RFC 8572 §7.1)


@dataclass(frozen=True)
class Plan:
    """How to answer one get-bootstrapping-data request."""

    serial: str
    response: Response
    signed: bool
    voucher: VoucherSource | None  # None: unsigned answer, no voucher


def _response_for(
    serial: str, device: DeviceRecord | None, responses: Mapping[str, Response]
) -> Response:
    name = device.response if device is not None and device.response else DEFAULT_RESPONSE
    found = responses.get(name)
    if found is None:
        # RFC 8572 §7.1: a device the server has no data for gets an error (404).
        raise NotFound(f"no bootstrapping data for device {serial} (no response {name!r})")
    return found


def _voucher_source(
    serial: str,
    request: sztp.GetBootstrappingDataInput,
    device: DeviceRecord | None,
    *,
    masa: bool,
    now: datetime,
) -> VoucherSource:
    if request.nonce is not None and masa:
        return VoucherSource.MASA_NONCE
    stored = device.voucher if device is not None else None
    expires = device.voucher_expires if device is not None else None
    if stored is not None and (expires is None or expires > now):
        return VoucherSource.STORED
    if masa:
        return VoucherSource.MASA_NONCELESS
    raise NotFound(
        f"no valid ownership voucher for device {serial}: import one "
        "(zerotouch sztp devices --set SERIAL --voucher FILE) or configure a MASA"
    )


def plan(
    request: sztp.GetBootstrappingDataInput,
    *,
    serial: str,
    device: DeviceRecord | None,
    responses: Mapping[str, Response],
    trusted: bool,
    owner: bool,
    masa: bool,
    now: datetime,
) -> Plan:
    """The answer for ``serial``. Unsigned only when the server is configured as one the
    devices trust (RFC 8572 §5.1) and the device did not ask for signed data (§7.1
    ``signed-data-preferred``); otherwise signed by the owner with a voucher."""
    response = _response_for(serial, device, responses)
    signed = request.signed_data_preferred or not trusted
    if not signed:
        return Plan(serial, response, signed=False, voucher=None)
    if not owner:
        raise ConfigError(
            "signed conveyed information needs the owner certificate and key "
            "(owner.pem, owner.key in the server folder)"
        )
    source = _voucher_source(serial, request, device, masa=masa, now=now)
    return Plan(serial, response, signed=True, voucher=source)


@dataclass(frozen=True)
class ProgressRecord:
    """One report-progress call (RFC 8572 §7.3), as stored."""

    serial: str
    time: datetime
    progress_type: sztp.ProgressType
    message: str | None
    peer: str | None
    # with bootstrap-complete: what an NMS may trust the device by (RFC 8572 §7.3)
    ssh_host_keys: tuple[sztp.SshHostKey, ...] = ()
    trust_anchor_certs: tuple[bytes, ...] = ()


def progress_record(
    report: sztp.ReportProgressInput, *, serial: str, peer: str | None, now: datetime
) -> ProgressRecord:
    return ProgressRecord(
        serial,
        now,
        report.progress_type,
        report.message,
        peer,
        report.ssh_host_keys,
        report.trust_anchor_certs,
    )


# ---------------------------------------------------------------------------------------------
# ownership vouchers from the MASA (the bootstrap server asks as the owner's registrar)


def voucher_request(
    client: Identity,
    *,
    owner_root: x509.Certificate,
    serial: str,
    nonce: bytes | None,
    expires_on: datetime | None,
    now: datetime,
) -> bytes:
    """A registrar voucher-request (RFC 8995 §5.5) for a device that is not present:
    nonce-bound to the nonce the device sent (RFC 8572 §7.1), or nonceless with the expiry
    wanted (pre-staging, RFC 8366 §5.3). Signed by ``client`` with its chain up to the owner
    CA, which the MASA pins as the domain."""
    request = VoucherRequest(
        created_on=now,
        assertion=Assertion.VERIFIED,
        serial_number=serial,
        nonce=None if nonce is None else base64.b64encode(nonce).decode("ascii"),
        expires_on=None if nonce is not None else expires_on,
    )
    chain = client.chain if owner_root in client.chain else (*client.chain, owner_root)
    return cms.sign(request.to_json(), signer=Identity(client.cert, client.key, chain), now=now)


def check_obtained_voucher(
    data: bytes,
    *,
    serial: str,
    nonce: bytes | None,
    manufacturer_cas: Sequence[x509.Certificate],
    pinnable: Sequence[x509.Certificate],
    now: datetime,
) -> Voucher:
    """The MASA's voucher, checked as the device will check it (RFC 8572 §5.4: signed by the
    manufacturer, for this serial, nonce or expiry) and pinning the owner's chain; a bad one
    is never sent to a device."""
    try:
        voucher, _ = parse_signed_voucher(data, trust_anchors=manufacturer_cas, now=now)
        expected = None if nonce is None else base64.b64encode(nonce).decode("ascii")
        voucher.check(now=now, serial=serial, nonce=expected)
    except ZerotouchError as exc:
        raise UpstreamInvalid(f"the MASA's voucher was refused: {exc.one_line()}") from exc
    pins = {cert.public_bytes(Encoding.DER) for cert in pinnable}
    if voucher.pinned_domain_cert not in pins:
        raise UpstreamInvalid(
            "the MASA's voucher pins a certificate outside the owner certificate's chain, so "
            "the device could not verify the owner (RFC 8572 §5.4)"
        )
    return voucher

"""The SZTP bootstrap server's decisions (RFC 8572 §7.1, §7.3), sans-IO with ``now`` passed in.

``plan`` says, for one authenticated device and its get-bootstrapping-data input, which
response it gets, whether the conveyed information is signed, and where the ownership
voucher comes from. The service carries the plan out (signing, asking the MASA) and stores
what happened.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from zerotouch_plugin.artifacts import sztp
from zerotouch_plugin.errors import ConfigError, NotFound

__all__ = [
    "DEFAULT_RESPONSE",
    "DeviceRecord",
    "Plan",
    "ProgressRecord",
    "Response",
    "VoucherSource",
    "plan",
    "progress_record",
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


def progress_record(
    report: sztp.ReportProgressInput, *, serial: str, peer: str | None, now: datetime
) -> ProgressRecord:
    return ProgressRecord(serial, now, report.progress_type, report.message, peer)

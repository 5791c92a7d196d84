"""What an untrusted bootstrap server sends the SZTP device (RFC 8572 §5.4) under fuzzing:
mutants of the conveyed information, the owner certificate and the ownership voucher are
refused with the project's error, in budget, and a mutant that is accepted carries exactly
the conveyed information the owner signed (only unsigned parts were hit)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.mutate import mutated_bytes
from tests.fuzz.oracle import handled
from zerotouch_plugin.artifacts import certs, cms, sztp
from zerotouch_plugin.artifacts.sztp import (
    BootImage,
    ConfigurationHandling,
    GetBootstrappingDataOutput,
    ImageVerification,
    OnboardingInformation,
)
from zerotouch_plugin.artifacts.voucher import Assertion, Voucher, new_nonce
from zerotouch_plugin.errors import SchemaError
from zerotouch_plugin.roles.sztp_device import SztpDeviceConfig, Validated, validate_response

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
NONCE = bytes(range(16))
INFO = OnboardingInformation(
    boot_image=BootImage(
        os_name="VendorOS",
        os_version="2.0",
        download_uris=("https://images.example/os.bin",),
        image_verifications=(ImageVerification(bytes(32)),),
    ),
    configuration_handling=ConfigurationHandling.MERGE,
    configuration=b'{"ietf-system:system": {"hostname": "owned"}}',
)


@cache
def world() -> tuple[SztpDeviceConfig, bytes, bytes, bytes]:
    """(device config, conveyed information, owner certificate, voucher) all valid."""
    then = NOW - timedelta(days=1)
    vendor = certs.make_ca("vendor", now=then)
    masa = certs.issue_masa_signer(vendor, "MASA", now=then)
    idevid = certs.issue_idevid(vendor, "SN-F", masa_url=None, now=then)
    owner_ca = certs.make_ca("owner CA", now=then)
    owner = certs.issue_client(owner_ca, "owner", now=then)
    voucher = Voucher(
        created_on=NOW,
        assertion=Assertion.VERIFIED,
        serial_number="SN-F",
        pinned_domain_cert=certs.der(owner_ca.cert),
        nonce=new_nonce(NONCE),
    )
    config = SztpDeviceConfig(
        serial="SN-F", idevid=idevid.cert, manufacturer_anchors=(vendor.cert,)
    )
    return (
        config,
        sztp.sign_conveyed_information(INFO, owner=owner, now=NOW),
        sztp.encode_certs_only([owner.cert]),
        cms.sign(voucher.to_json(), signer=masa, now=NOW),
    )


def _judge(conveyed: bytes, owner: bytes, voucher: bytes, size: int) -> None:
    config = world()[0]
    try:
        output = GetBootstrappingDataOutput(
            conveyed_information=conveyed, owner_certificate=owner, ownership_voucher=voucher
        )
    except SchemaError:
        return  # not even a valid RPC output: the client refuses it before the machine
    result = handled(
        lambda: validate_response(
            output, config=config, server_trusted=False, nonce=NONCE, now=NOW
        ),
        size,
    )
    if isinstance(result, Validated):
        assert result.signed
        assert result.info == INFO


def test_the_seed_is_accepted() -> None:
    config, conveyed, owner, voucher = world()
    output = GetBootstrappingDataOutput(
        conveyed_information=conveyed, owner_certificate=owner, ownership_voucher=voucher
    )
    result = validate_response(output, config=config, server_trusted=False, nonce=NONCE, now=NOW)
    assert result.info == INFO


PART = st.sampled_from(["conveyed", "owner", "voucher"])


@given(PART, mutated_bytes([world()[1], world()[2], world()[3]]))
def test_mutants_are_refused_or_carry_what_the_owner_signed(
    part: str, case: tuple[int, bytes]
) -> None:
    _, data = case
    _, conveyed, owner, voucher = world()
    parts = {"conveyed": conveyed, "owner": owner, "voucher": voucher}
    parts[part] = data
    _judge(parts["conveyed"], parts["owner"], parts["voucher"], len(data))

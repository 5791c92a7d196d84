"""Voucher / VoucherRequest model: YANG validation, tolerances, and the pledge's checks."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from zerotouch_plugin.artifacts.voucher import (
    DEFAULT_TOLERANCES,
    STRICT,
    Assertion,
    Tolerance,
    Voucher,
    VoucherRequest,
    format_datetime,
    load_artifact,
    new_nonce,
    parse_datetime,
)
from zerotouch_plugin.artifacts.yang import validate_artifact
from zerotouch_plugin.errors import (
    ArtifactKindMismatch,
    Expired,
    InvalidInput,
    SchemaError,
    WrongNonce,
    WrongSerial,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CERT = b"\x30\x82\x01\x00fake-der"
RFC8995_NONCE = "-_XE9zK9q8Ll1qylMtLKeg"  # RFC 8995 Appendix C: unpadded base64url
V = "ietf-voucher:voucher"
VR = "ietf-voucher-request:voucher"


def voucher_json(**changes: Any) -> bytes:
    body: dict[str, Any] = {
        "created-on": "2026-11-26T12:00:00Z",
        "assertion": "logged",
        "serial-number": "SN-1",
        "pinned-domain-cert": base64.b64encode(CERT).decode(),
        "nonce": new_nonce(b"0123456789abcdef"),
    }
    body.update(changes)
    return json.dumps({V: {k: v for k, v in body.items() if v is not None}}).encode()


def request_json(**changes: Any) -> bytes:
    body: dict[str, Any] = {
        "created-on": "2026-11-26T12:00:00Z",
        "assertion": "proximity",
        "serial-number": "SN-1",
        "nonce": new_nonce(b"0123456789abcdef"),
        "proximity-registrar-cert": base64.b64encode(CERT).decode(),
    }
    body.update(changes)
    return json.dumps({VR: {k: v for k, v in body.items() if v is not None}}).encode()


def full_voucher(**changes: Any) -> Voucher:
    fields: dict[str, Any] = {
        "created_on": NOW,
        "assertion": Assertion.VERIFIED,
        "serial_number": "SN-1",
        "pinned_domain_cert": CERT,
        "expires_on": NOW + timedelta(days=14),
        "idevid_issuer": b"\x04\x14" + bytes(20),
        "domain_cert_revocation_checks": True,
        "last_renewal_date": NOW + timedelta(days=365),
    }
    fields.update(changes)
    return Voucher(**fields)


# --- building and round trips -------------------------------------------------------------


def test_voucher_round_trip_with_every_leaf() -> None:
    voucher = full_voucher()
    parsed = Voucher.from_json(voucher.to_json(), tolerances=STRICT)
    assert parsed == voucher
    body = json.loads(voucher.to_json())[V]
    assert list(body) == [
        "created-on",
        "expires-on",
        "assertion",
        "serial-number",
        "idevid-issuer",
        "pinned-domain-cert",
        "domain-cert-revocation-checks",
        "last-renewal-date",
    ]
    assert body["created-on"] == "2026-11-26T12:00:00Z"
    assert body["domain-cert-revocation-checks"] is True
    assert base64.b64decode(body["pinned-domain-cert"]) == CERT


def test_voucher_request_round_trip_with_every_leaf() -> None:
    request = VoucherRequest(
        created_on=NOW,
        assertion=Assertion.PROXIMITY,
        serial_number="SN-1",
        nonce=new_nonce(bytes(range(16))),
        idevid_issuer=b"aki-bytes",
        proximity_registrar_cert=CERT,
        prior_signed_voucher_request=b"\x30\x80cms",
    )
    parsed = VoucherRequest.from_json(request.to_json(), tolerances=STRICT)
    assert parsed == request
    assert parsed.prior_signed_voucher_request == b"\x30\x80cms"
    assert set(json.loads(request.to_json())[VR]) == {
        "created-on",
        "assertion",
        "serial-number",
        "idevid-issuer",
        "nonce",
        "prior-signed-voucher-request",
        "proximity-registrar-cert",
    }


def test_assertion_given_as_string_is_normalised() -> None:
    voucher = full_voucher(assertion="logged")
    assert voucher.assertion is Assertion.LOGGED


def test_objects_are_immutable() -> None:
    voucher = full_voucher()
    with pytest.raises(dataclasses.FrozenInstanceError):
        voucher.serial_number = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"serial_number": 42}, TypeError),
        ({"pinned_domain_cert": "not-bytes"}, TypeError),
        ({"created_on": "2026-11-26"}, TypeError),
        ({"domain_cert_revocation_checks": "true"}, TypeError),
        ({"created_on": datetime(2026, 1, 1)}, ValueError),  # naive
        ({"assertion": "trusted"}, ValueError),
        ({"expires_on": None, "last_renewal_date": NOW}, ValueError),  # must ../expires-on
        ({"nonce": new_nonce(bytes(8))}, ValueError),  # must not(../expires-on)
    ],
)
def test_building_an_invalid_voucher_fails(changes: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        full_voucher(**changes)


def test_building_with_a_non_rfc7951_nonce_needs_the_tolerance() -> None:
    with pytest.raises(ValueError, match="opaque-nonce"):
        full_voucher(expires_on=None, last_renewal_date=None, nonce=RFC8995_NONCE)
    voucher = full_voucher(
        expires_on=None,
        last_renewal_date=None,
        nonce=RFC8995_NONCE,
        tolerances=frozenset({Tolerance.OPAQUE_NONCE}),
    )
    assert json.loads(voucher.to_json())[V]["nonce"] == RFC8995_NONCE


def test_voucher_request_requires_serial_number() -> None:
    with pytest.raises(TypeError):
        VoucherRequest(assertion=Assertion.PROXIMITY)  # type: ignore[call-arg]


def test_new_nonce_is_rfc7951_binary() -> None:
    nonce = new_nonce(bytes(range(16)))
    assert base64.b64decode(nonce, validate=True) == bytes(range(16))
    with pytest.raises(ValueError):
        new_nonce(bytes(7))
    with pytest.raises(ValueError):
        new_nonce(bytes(33))
    with pytest.raises(TypeError):
        new_nonce("0123456789")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2021-04-13T17:43:24.589-04:00", datetime(2021, 4, 13, 21, 43, 24, 589000, tzinfo=UTC)),
        ("2016-10-07T19:31:42Z", datetime(2016, 10, 7, 19, 31, 42, tzinfo=UTC)),
        ("2016-10-07T19:31:42.1234567890+00:00", datetime(2016, 10, 7, 19, 31, 42, 123456, UTC)),
        ("2016-10-07T19:31:42-00:00", datetime(2016, 10, 7, 19, 31, 42, tzinfo=UTC)),
    ],
)
def test_parse_datetime(text: str, expected: datetime) -> None:
    assert parse_datetime(text) == expected


def test_format_datetime_keeps_offsets_and_writes_utc_as_z() -> None:
    east = timezone(timedelta(hours=5, minutes=30))
    assert (
        format_datetime(datetime(2026, 1, 2, 3, 4, 5, tzinfo=east)) == "2026-01-02T03:04:05+05:30"
    )
    assert format_datetime(datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == (
        "2026-01-02T03:04:05.000006Z"
    )


# --- parsing: negative cases, each with its named error -----------------------------------


@pytest.mark.parametrize(
    ("data", "path", "rule"),
    [
        (voucher_json(**{"serial-number": None}), f"/{V}/serial-number", "missing mandatory"),
        (voucher_json(**{"created-on": None}), f"/{V}/created-on", "missing mandatory"),
        (voucher_json(**{"pinned-domain-cert": None}), f"/{V}/pinned-domain-cert", "missing"),
        (voucher_json(assertion="trusted"), f"/{V}/assertion", "not in enumeration"),
        (voucher_json(**{"serial-number": 12}), f"/{V}/serial-number", "wrong type"),
        (voucher_json(extra="x"), f"/{V}/extra", "unknown member"),
        (voucher_json(**{"pinned-domain-cert": "%%%"}), f"/{V}/pinned-domain-cert", "binary"),
        (voucher_json(**{"created-on": "yesterday"}), f"/{V}/created-on", "invalid"),
        (voucher_json(**{"created-on": "2026-13-45T00:00:00Z"}), f"/{V}/created-on", "month"),
        (
            voucher_json(**{"expires-on": "2027-01-01T00:00:00Z"}),
            f"/{V}/",
            "mutually exclusive",
        ),
        (
            voucher_json(nonce=None, **{"last-renewal-date": "2027-01-01T00:00:00Z"}),
            f"/{V}/last-renewal-date",
            "requires expires-on",
        ),
    ],
)
def test_invalid_voucher_json_is_rejected_with_path_and_rule(
    data: bytes, path: str, rule: str
) -> None:
    with pytest.raises(SchemaError) as info:
        Voucher.from_json(data)
    assert info.value.path is not None
    assert info.value.path.startswith(path)
    assert rule in str(info.value)


@pytest.mark.parametrize(
    "data",
    [
        b'{"ietf-voucher-request:voucher": {"serial-number": "S", "x": ' + b"9" * 5000 + b"}}",
        b'{"ietf-voucher-request:voucher": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"ietf-voucher-request:voucher": ' + b"[" * 64 + b"]" * 64 + b"}",
    ],
    ids=["integer-of-5000-digits", "nested-5000-deep", "nested-65-deep"],
)
def test_json_the_parser_cannot_hold_is_invalid_input(data: bytes) -> None:
    """A pledge signs what it likes: an integer beyond Python's 4300 digits or nesting past
    the bound (which 3.13's parser alone would take up to 10,000 levels) is InvalidInput
    (400), not a 500."""
    with pytest.raises(InvalidInput, match="not JSON"):
        VoucherRequest.from_json(data)
    with pytest.raises(InvalidInput, match="not JSON"):
        load_artifact(data)


def test_nonce_length_is_enforced_without_the_tolerance() -> None:
    data = voucher_json(nonce=base64.b64encode(bytes(40)).decode())
    with pytest.raises(SchemaError, match="length") as info:
        Voucher.from_json(data, tolerances=STRICT)
    assert info.value.path == f"/{V}/nonce"


def test_voucher_request_where_a_voucher_is_expected() -> None:
    with pytest.raises(ArtifactKindMismatch, match="expected a voucher"):
        Voucher.from_json(request_json())


def test_voucher_where_a_voucher_request_is_expected() -> None:
    with pytest.raises(ArtifactKindMismatch, match="expected a voucher-request"):
        VoucherRequest.from_json(voucher_json())


@pytest.mark.parametrize(
    "data",
    [b"[]", b'{"a": 1, "b": 2}', b'{"ietf-voucher:voucher": [1]}', b'{"other:thing": {}}'],
)
def test_structurally_wrong_json_is_a_schema_error(data: bytes) -> None:
    with pytest.raises(SchemaError):
        Voucher.from_json(data)


def test_load_artifact_dispatches_on_the_top_level_member() -> None:
    assert isinstance(load_artifact(voucher_json()), Voucher)
    assert isinstance(load_artifact(request_json()), VoucherRequest)
    with pytest.raises(SchemaError, match="unknown top-level member"):
        load_artifact(b'{"ietf-sztp-conveyed-info:onboarding-information": {}}')
    with pytest.raises(InvalidInput):
        load_artifact(b"[")


def test_duplicate_members_are_refused() -> None:
    one = new_nonce(bytes(16))
    data = voucher_json(nonce=one).replace(b'"nonce"', b'"nonce": "AAAAAAAAAAA=", "nonce"')
    assert json.loads(data)[V]["nonce"] == one  # Python alone would keep the last one
    with pytest.raises(SchemaError, match="duplicate member 'nonce'"):
        Voucher.from_json(data)


@pytest.mark.parametrize("serial", ["SN-1\x00", "SN-1\ud800", "SN-\x1b[2J", "SN-\uffff"])
def test_serial_a_yang_string_cannot_hold_is_refused(serial: str) -> None:
    """RFC 7950 §9.4: JSON can escape NUL, controls and lone surrogates into a string, YANG
    strings exclude them; accepted, they would reach logs, rows and error bodies."""
    for parse, data in (
        (Voucher.from_json, voucher_json),
        (VoucherRequest.from_json, request_json),
    ):
        with pytest.raises(SchemaError, match="no YANG string may") as info:
            parse(data(**{"serial-number": serial}))
        assert info.value.path is not None and info.value.path.endswith("/serial-number")
    assert Voucher.from_json(voucher_json(**{"serial-number": "SN-\u00e9\u202e\t"}))


def test_binary_leaf_of_non_ascii_text_is_schema_error() -> None:
    """yangson decodes binary leaves with base64.b64decode, which raises a plain ValueError
    for non-ASCII text: a SchemaError (400), not an internal error."""
    with pytest.raises(SchemaError, match="binary leaf is not base64"):
        Voucher.from_json(voucher_json(**{"idevid-issuer": "AAé="}))


@pytest.mark.parametrize("data", [b"{not json", b"\xff\xfe", b""])
def test_non_json_is_invalid_input(data: bytes) -> None:
    with pytest.raises(InvalidInput):
        Voucher.from_json(data)


def test_validate_artifact_directly() -> None:
    validate_artifact(json.loads(request_json()), "voucher-request")
    with pytest.raises(SchemaError, match="missing mandatory leaf 'serial-number'"):
        validate_artifact({VR: {}}, "voucher-request")


# --- the pledge's checks -------------------------------------------------------------------


def test_check_accepts_matching_serial_and_nonce() -> None:
    nonce = new_nonce(b"fedcba9876543210")
    voucher = Voucher.from_json(voucher_json(nonce=nonce))
    voucher.check(now=NOW, serial="SN-1", nonce=nonce)


def test_check_wrong_serial() -> None:
    with pytest.raises(WrongSerial):
        Voucher.from_json(voucher_json()).check(now=NOW, serial="SN-2")


def test_check_wrong_nonce() -> None:
    with pytest.raises(WrongNonce):
        Voucher.from_json(voucher_json()).check(now=NOW, nonce=new_nonce(bytes(16)))


def test_check_nonce_expected_but_absent() -> None:
    voucher = full_voucher()
    with pytest.raises(WrongNonce, match="no nonce"):
        voucher.check(now=NOW, nonce=new_nonce(bytes(16)))


def test_check_expired() -> None:
    voucher = full_voucher()
    voucher.check(now=NOW + timedelta(days=13))
    with pytest.raises(Expired):
        voucher.check(now=NOW + timedelta(days=15))


def test_check_idevid_issuer_mismatch() -> None:
    voucher = full_voucher()
    voucher.check(now=NOW, idevid_issuer=b"\x04\x14" + bytes(20))
    with pytest.raises(WrongSerial, match="idevid-issuer"):
        voucher.check(now=NOW, idevid_issuer=b"\x04\x14" + bytes(19) + b"\x01")


def test_check_needs_aware_now() -> None:
    with pytest.raises(ValueError):
        full_voucher().check(now=datetime(2026, 1, 1))


def test_voucher_request_check() -> None:
    request = VoucherRequest.from_json(request_json(nonce=RFC8995_NONCE))
    request.check(now=NOW, serial="SN-1", nonce=RFC8995_NONCE)
    with pytest.raises(WrongSerial):
        request.check(now=NOW, serial="SN-9")
    with pytest.raises(WrongNonce):
        request.check(now=NOW, nonce="x" + RFC8995_NONCE[1:])


# --- tolerances: each one named, tested on and off, never weakening a check ----------------


def test_default_tolerances_cover_every_named_quirk() -> None:
    assert frozenset(Tolerance) == DEFAULT_TOLERANCES
    assert {t.value for t in Tolerance} == {
        "string-boolean",
        "opaque-nonce",
        "date-only-created-on",
        "missing-assertion",
        "id-data-content-type",
    }


def test_string_boolean() -> None:
    data = voucher_json(nonce=None, **{"domain-cert-revocation-checks": "true"})
    parsed = Voucher.from_json(data, tolerances=frozenset({Tolerance.STRING_BOOLEAN}))
    assert parsed.domain_cert_revocation_checks is True
    data_false = voucher_json(nonce=None, **{"domain-cert-revocation-checks": "false"})
    assert Voucher.from_json(data_false).domain_cert_revocation_checks is False
    with pytest.raises(SchemaError, match="wrong type"):
        Voucher.from_json(data, tolerances=STRICT)
    # Only the two exact words: anything else is still a type error.
    with pytest.raises(SchemaError, match="domain-cert-revocation-checks"):
        Voucher.from_json(voucher_json(**{"domain-cert-revocation-checks": "yes"}))
    # The object writes a real RFC 7951 boolean.
    assert json.loads(parsed.to_json())[V]["domain-cert-revocation-checks"] is True


def test_opaque_nonce_is_kept_and_compared_verbatim() -> None:
    data = voucher_json(nonce=RFC8995_NONCE)
    with pytest.raises(SchemaError, match="opaque-nonce") as info:
        Voucher.from_json(data, tolerances=STRICT)
    assert info.value.path == f"/{V}/nonce"
    voucher = Voucher.from_json(data, tolerances=frozenset({Tolerance.OPAQUE_NONCE}))
    assert voucher.nonce == RFC8995_NONCE
    assert json.loads(voucher.to_json())[V]["nonce"] == RFC8995_NONCE
    voucher.check(now=NOW, nonce=RFC8995_NONCE)
    # The same 16 bytes in padded standard base64 is a different string: no match.
    same_bytes = base64.b64encode(base64.urlsafe_b64decode(RFC8995_NONCE + "==")).decode()
    assert same_bytes != RFC8995_NONCE
    with pytest.raises(WrongNonce):
        voucher.check(now=NOW, nonce=same_bytes)


@pytest.mark.parametrize(
    "nonce", ["abcd1234", "62a2e7693d82fcda2624de58fb6722e5", "abcd12345", "Iopeer8hi0hi"]
)
def test_opaque_nonce_accepts_short_and_hex_nonces_seen_in_the_wild(nonce: str) -> None:
    assert Voucher.from_json(voucher_json(nonce=nonce)).nonce == nonce


@pytest.mark.parametrize("nonce", ["", "has space", "x" * 129, "nönce", "a\nb"])
def test_opaque_nonce_still_rejects_junk(nonce: str) -> None:
    with pytest.raises(SchemaError) as info:
        Voucher.from_json(voucher_json(nonce=nonce))
    assert info.value.path == f"/{V}/nonce"


def test_opaque_nonce_keeps_the_expires_on_exclusion() -> None:
    data = voucher_json(nonce=RFC8995_NONCE, **{"expires-on": "2027-01-01T00:00:00Z"})
    with pytest.raises(SchemaError, match="mutually exclusive"):
        Voucher.from_json(data)


def test_date_only_created_on() -> None:
    data = voucher_json(**{"created-on": "2017-09-01"})
    parsed = Voucher.from_json(data, tolerances=frozenset({Tolerance.DATE_ONLY_CREATED_ON}))
    assert parsed.created_on == datetime(2017, 9, 1, tzinfo=UTC)
    with pytest.raises(SchemaError) as info:
        Voucher.from_json(data, tolerances=STRICT)
    assert info.value.path == f"/{V}/created-on"


def test_date_only_is_not_tolerated_for_expires_on() -> None:
    data = voucher_json(nonce=None, **{"expires-on": "2027-01-01"})
    with pytest.raises(SchemaError) as info:
        Voucher.from_json(data)
    assert info.value.path == f"/{V}/expires-on"


def test_missing_assertion_in_voucher_request() -> None:
    data = request_json(assertion=None)
    parsed = VoucherRequest.from_json(data, tolerances=frozenset({Tolerance.MISSING_ASSERTION}))
    assert parsed.assertion is None
    with pytest.raises(SchemaError, match="missing assertion") as info:
        VoucherRequest.from_json(data, tolerances=STRICT)
    assert info.value.path == f"/{VR}/assertion"


def test_missing_assertion_is_never_tolerated_in_a_voucher() -> None:
    with pytest.raises(SchemaError, match="missing mandatory leaf 'assertion'"):
        Voucher.from_json(voucher_json(assertion=None), tolerances=DEFAULT_TOLERANCES)


def test_tolerances_do_not_change_equality() -> None:
    strict = Voucher.from_json(voucher_json(), tolerances=STRICT)
    lenient = Voucher.from_json(voucher_json())
    assert strict == lenient
    assert lenient.tolerances == DEFAULT_TOLERANCES

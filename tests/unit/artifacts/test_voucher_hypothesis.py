"""Hypothesis round trip: model -> JSON -> CMS -> verified model, for both artifact kinds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.artifacts.voucher import (
    STRICT,
    Assertion,
    Tolerance,
    Voucher,
    VoucherRequest,
    new_nonce,
    parse_signed_voucher,
    parse_signed_voucher_request,
    sign_artifact,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CA = certs.make_ca("hypothesis vendor CA", now=NOW - timedelta(days=1))
MASA = certs.issue_masa_signer(CA, "hypothesis MASA", now=NOW - timedelta(days=1))
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
moments = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 30), timezones=offsets
)
blobs = st.binary(min_size=1, max_size=300)
# What a YANG string may hold (RFC 7950 §9.4): no controls, no surrogates, no U+FFFE/U+FFFF.
texts = st.text(
    st.characters(exclude_categories=["Cc", "Cs"], exclude_characters="\ufffe\uffff"),
    max_size=40,
)
nonces = st.binary(min_size=8, max_size=32).map(new_nonce)
# Opaque nonces as real implementations send them (Tolerance.OPAQUE_NONCE).
opaque_nonces = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
    min_size=1,
    max_size=64,
)


@st.composite
def vouchers(draw: st.DrawFn) -> Voucher:
    expires_on = draw(st.none() | moments)
    opaque = draw(st.booleans())
    nonce = (
        None if expires_on is not None else draw(st.none() | (opaque_nonces if opaque else nonces))
    )
    return Voucher(
        created_on=draw(moments),
        assertion=draw(st.sampled_from(Assertion)),
        serial_number=draw(texts),
        pinned_domain_cert=draw(blobs),
        expires_on=expires_on,
        idevid_issuer=draw(st.none() | blobs),
        domain_cert_revocation_checks=draw(st.none() | st.booleans()),
        nonce=nonce,
        last_renewal_date=None if expires_on is None else draw(st.none() | moments),
        tolerances=frozenset({Tolerance.OPAQUE_NONCE}) if opaque else STRICT,
    )


@st.composite
def voucher_requests(draw: st.DrawFn) -> VoucherRequest:
    expires_on = draw(st.none() | moments)
    return VoucherRequest(
        created_on=draw(st.none() | moments),
        assertion=draw(st.sampled_from(Assertion)),
        serial_number=draw(texts),
        nonce=None if expires_on is not None else draw(st.none() | nonces),
        expires_on=expires_on,
        idevid_issuer=draw(st.none() | blobs),
        proximity_registrar_cert=draw(st.none() | blobs),
        prior_signed_voucher_request=draw(st.none() | blobs),
    )


@SETTINGS
@given(vouchers())
def test_voucher_round_trip_through_cms(voucher: Voucher) -> None:
    assert Voucher.from_json(voucher.to_json()) == voucher
    der = sign_artifact(voucher, signer=MASA, now=NOW)
    parsed, signed = parse_signed_voucher(der, trust_anchors=[CA.cert], now=NOW)
    assert parsed == voucher
    assert parsed.nonce == voucher.nonce  # verbatim, opaque or not
    assert signed.content == voucher.to_json()
    assert signed.signer == MASA.cert


@SETTINGS
@given(voucher_requests())
def test_voucher_request_round_trip_through_cms(request: VoucherRequest) -> None:
    der = sign_artifact(request, signer=MASA, now=NOW)
    parsed, _ = parse_signed_voucher_request(der, trust_anchors=[CA.cert], now=NOW)
    assert parsed == request
    assert parsed.to_json() == request.to_json()

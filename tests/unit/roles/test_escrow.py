"""Vouchers fetched ahead for escrow: the registrar's request (roles.escrow) as the MASA's
role judges it (claims only, the claimed domain only, expiry capped), the voucher verified as
escrow holds it, and which held vouchers are due for renewal."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.support.masa_world import NOW, SERIAL, World, der
from zerotouch_plugin.artifacts import cms
from zerotouch_plugin.errors import Expired, InvalidInput, PolicyRefused
from zerotouch_plugin.roles import escrow, masa
from zerotouch_plugin.roles.masa import MasaRules
from zerotouch_plugin.roles.records import ClaimRecord, DeviceState
from zerotouch_plugin.roles.registrar import RegistrarContext, check_escrow_voucher

CLAIMS = MasaRules(policy="claims", nonceless_allowed=True, escrow_max_lifetime=timedelta(days=60))


@pytest.fixture(scope="module")
def world() -> World:
    return World()


def context(world: World, name: str = "alpha") -> RegistrarContext:
    dom = world.domain(name)
    return RegistrarContext(
        registrar=dom.registrar, domain_ca=dom.ca, manufacturer_cas=(world.vendor_ca.cert,)
    )


def claimed(world: World) -> DeviceState:
    alpha = world.domain().ca.cert
    return DeviceState(
        SERIAL, None, None, None, ClaimRecord(SERIAL, masa.domain_id(alpha), der(alpha), NOW)
    )


def verified(world: World, body: bytes) -> masa.VerifiedRequest:
    return masa.verify_registrar_request(
        body,
        tls_client_cert=None,
        now=NOW,
        manufacturer_cas=[world.vendor_ca.cert],
        domain_trust=[world.domain().ca.cert],
    )


def request(world: World, days: int, name: str = "alpha") -> bytes:
    return escrow.build_escrow_request(
        context(world, name), SERIAL, expires_on=escrow.escrow_expiry(NOW, days), now=NOW
    )


def test_claimed_device_gets_a_nonceless_voucher_for_the_lifetime_asked(world: World) -> None:
    req = verified(world, request(world, 30))
    assert req.for_escrow and req.authenticated and req.idevid is None
    voucher = masa.decide(req, claimed(world), CLAIMS, now=NOW).voucher
    assert voucher.nonce is None and voucher.serial_number == SERIAL
    assert voucher.expires_on == NOW + timedelta(days=30)
    assert voucher.pinned_domain_cert == der(world.domain().ca.cert)
    signed = cms.sign(voucher.to_json(), signer=world.masa_signer, now=NOW)
    held = check_escrow_voucher(context(world), signed, serial=SERIAL, now=NOW)
    assert held.expires_on == NOW + timedelta(days=30)


def test_the_masa_caps_the_lifetime(world: World) -> None:
    voucher = masa.decide(verified(world, request(world, 365)), claimed(world), CLAIMS, now=NOW)
    assert voucher.voucher.expires_on == NOW + timedelta(days=60)


def test_refused_without_claims_policy_claim_or_the_claimed_domain(world: World) -> None:
    req = verified(world, request(world, 30))
    with pytest.raises(PolicyRefused, match="policy claims"):
        masa.decide(req, claimed(world), MasaRules(nonceless_allowed=True), now=NOW)
    with pytest.raises(PolicyRefused, match="not claimed by any domain"):
        masa.decide(req, DeviceState(SERIAL, None, None, None, None), CLAIMS, now=NOW)
    other = verified(world, request(world, 30, "beta"))
    with pytest.raises(PolicyRefused, match="claimed by domain"):
        masa.decide(other, claimed(world), CLAIMS, now=NOW)
    with pytest.raises(PolicyRefused, match="nonceless vouchers are not issued"):
        masa.decide(req, claimed(world), MasaRules(policy="claims"), now=NOW)


def test_an_expiry_already_past_is_refused(world: World) -> None:
    req = verified(world, request(world, 1))
    with pytest.raises(Expired, match="passed already"):
        masa.decide(req, claimed(world), CLAIMS, now=NOW + timedelta(days=2))


@pytest.mark.parametrize("days", [0, -1, escrow.MAX_LIFETIME_DAYS + 1, True])
def test_lifetime_bounds(days: int) -> None:
    with pytest.raises(InvalidInput, match="lifetime"):
        escrow.escrow_expiry(NOW, days)


def test_due_for_renewal() -> None:
    held = [
        escrow.Held("late", NOW - timedelta(days=1)),
        escrow.Held("soon", NOW + timedelta(days=10)),
        escrow.Held("fine", NOW + timedelta(days=100)),
    ]
    assert escrow.due_for_renewal(held, now=NOW, before=timedelta(days=30)) == ["late", "soon"]
    assert escrow.due_for_renewal(held, now=NOW, before=timedelta(0)) == ["late"]

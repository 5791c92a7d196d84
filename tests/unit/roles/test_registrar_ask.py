"""The registrar's policy decision with ``ask`` (RFC 8995 §5.5: 202 while it decides): deny
wins, then allow, then a held entry; without ``ask`` an unknown device is refused."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from zerotouch_plugin.errors import PolicyRefused
from zerotouch_plugin.roles.registrar import (
    PolicyDecision,
    PolicyRule,
    PolicyVerdict,
    decide_policy,
)

VENDOR = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Vendor")])


def verdict(*rules: PolicyRule, ask: bool = False, auto: bool = False) -> PolicyVerdict:
    return decide_policy(list(rules), serial="SN1", issuer=VENDOR, auto_accept=auto, ask=ask)


def test_an_unknown_device_is_held_with_ask_and_refused_without() -> None:
    assert verdict(ask=True) is PolicyVerdict.PENDING
    with pytest.raises(PolicyRefused, match="allow list"):
        verdict()


def test_a_held_entry_stays_held_after_ask_is_turned_off() -> None:
    held = PolicyRule("SN1", PolicyDecision.PENDING, "Vendor")
    assert verdict(held) is PolicyVerdict.PENDING


@pytest.mark.parametrize("ask", [True, False])
def test_deny_wins_and_allow_proceeds(ask: bool) -> None:
    held = PolicyRule("SN1", PolicyDecision.PENDING, "Vendor")
    allow = PolicyRule("SN1", PolicyDecision.ALLOW, None)
    deny = PolicyRule("SN1", PolicyDecision.DENY, "Vendor")
    assert verdict(held, allow, ask=ask) is PolicyVerdict.PROCEED
    assert verdict(ask=ask, auto=True) is PolicyVerdict.PROCEED
    with pytest.raises(PolicyRefused, match="deny list"):
        verdict(held, allow, deny, ask=ask)


def test_entries_of_another_serial_or_manufacturer_do_not_count() -> None:
    other = PolicyRule("SN2", PolicyDecision.ALLOW, None)
    elsewhere = PolicyRule("SN1", PolicyDecision.ALLOW, "Another vendor")
    assert verdict(other, elsewhere, ask=True) is PolicyVerdict.PENDING

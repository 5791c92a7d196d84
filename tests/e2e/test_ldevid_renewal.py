"""The pledge agent keeps the device's domain identity alive: ``zerotouch device run``
renews its short-lived LDevID by EST simplereenroll (RFC 7030 §4.2.2) at the configured
fraction of its lifetime, twice, while a NETCONF/TLS management session stays open; real
MASA, registrar and device processes on 127.0.0.1."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from lxml import etree

from tests.e2e.test_brski_flow import Lab
from tests.e2e.test_device_agent import (
    NS,
    agent_lab,
    events,
    make_device,
    poll,
    run_device,
    state_of,
    text,
    tls,
)
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.services import certfiles

LIFETIME = 20  # ldevid_lifetime_seconds of the registrar: renewals every ~10 s at 0.5


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    settings = f"ldevid_lifetime_seconds = {LIFETIME}\n"
    with agent_lab(tmp_path_factory.mktemp("renewal"), settings) as lab:
        yield lab


def _renewed(state: etree._Element) -> list[str]:
    """The serials of the renewed LDevIDs, in order (``ldevid-renewed`` event details)."""
    return [
        str(e.findtext(f"{{{NS}}}detail"))
        for e in state.findall(f"{{{NS}}}event")
        if e.findtext(f"{{{NS}}}event") == "ldevid-renewed"
    ]


def _presented(port: int, nms: Path) -> x509.Certificate:
    """The certificate the device presents to a new TLS connection now."""
    ctx = ssl.create_default_context(cafile=str(nms / "ca.pem"))
    ctx.check_hostname = False
    ctx.load_cert_chain(nms / "cert.pem", nms / "key.pem")
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw) as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_a_short_lived_ldevid_is_renewed_twice_without_dropping_sessions(lab: Lab) -> None:
    serial, folder = make_device(lab)
    toml = folder / "device.toml"
    toml.write_text("renew_fraction = 0.5\n" + toml.read_text())  # before its [[users]]
    nms = lab.root / "nms"
    process = run_device(folder)
    try:
        assert process.wait_for("enrolled ") == f"enrolled {serial}"
        first = certfiles.load_cert_file(folder / "ldevid.pem")
        lifetime = first.not_valid_after_utc - first.not_valid_before_utc
        assert lifetime.total_seconds() <= LIFETIME * 1.1 + 1  # backdated by a tenth at most
        with tls(process, nms / "cert.pem", nms / "key.pem", nms / "ca.pem") as session:
            assert text(state_of(session), "phase") == "enrolled"
            state = poll(process, lambda s: len(_renewed(s)) >= 2, timeout=4 * LIFETIME)
            # the session opened under the first LDevID still answers
            assert text(state_of(session), "phase") == "enrolled"

        renewed = _renewed(state)
        current = certfiles.load_cert_file(folder / "ldevid.pem")
        assert len(set(renewed)) == len(renewed) >= 2
        assert format(first.serial_number, "x") not in renewed
        assert format(current.serial_number, "x") == renewed[-1] or len(renewed) > 2
        assert current.subject == first.subject
        assert current.public_key() != first.public_key()  # a fresh key each time
        assert text(state, "phase") == "enrolled"
        assert "renewal-failed" not in events(state)
        # new connections see the newest LDevID, and it chains to the same domain CA
        presented = _presented(process.ports["netconf-tls"], nms)
        assert presented == certfiles.load_cert_file(folder / "ldevid.pem")
        domain_ca = certs.load_certs((nms / "ca.pem").read_bytes())
        certs.verify_chain(presented, trust_anchors=domain_ca, purpose="any",
                           now=presented.not_valid_before_utc)  # fmt: skip
        # the registrar kept the device's state through the renewals
        assert lab.state(serial) == "enroll-confirmed"
    finally:
        process.stop()

"""Client certificate -> username (RFC 7589 §7, RFC 7407 cert-to-name)."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtensionOID, NameOID

from zerotouch_plugin.artifacts.certs import (
    Identity,
    generate_key,
    issue_client,
    issue_from_csr,
    issue_intermediate_ca,
    issue_tls_server,
    make_ca,
    make_csr,
)
from zerotouch_plugin.config import CertToName, normalise_fingerprint
from zerotouch_plugin.errors import AccessDenied
from zerotouch_plugin.roles.registrar import ldevid_subject
from zerotouch_plugin.services._tls import client_context, server_context
from zerotouch_plugin.services.netconf.certmap import map_certificate, peer_certificates

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def _print(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


@pytest.fixture(scope="module")
def pki() -> tuple[Identity, Identity, Identity]:
    ca = make_ca("Domain CA", now=NOW)
    other = make_ca("Other CA", now=NOW)
    return ca, other, issue_client(ca, "alice", now=NOW)


def test_fingerprint_forms_are_normalised() -> None:
    digest = "ab" * 32
    assert normalise_fingerprint(f"sha256:{digest}") == digest
    assert normalise_fingerprint(":".join(["04", *["AB"] * 32])) == digest  # tls-fingerprint
    assert normalise_fingerprint("*") == "*"
    with pytest.raises(ValueError):
        normalise_fingerprint("sha256:abcd")


def test_rules_validate_themselves() -> None:
    with pytest.raises(ValueError):
        CertToName("*", "specified")  # needs a name
    with pytest.raises(ValueError):
        CertToName("*", "subject-dn")
    with pytest.raises(ValueError):
        CertToName("*", "common-name", name="x")


def test_ca_fingerprint_rule_maps_common_name(pki: tuple[Identity, Identity, Identity]) -> None:
    ca, other, alice = pki
    rules = [CertToName(f"sha256:{_print(ca.cert)}", "common-name")]
    assert map_certificate(alice.cert, rules, [other.cert, ca.cert]) == "alice"
    with pytest.raises(AccessDenied):
        map_certificate(alice.cert, rules, [other.cert])  # the CA that matches did not issue it
    with pytest.raises(AccessDenied):  # TLS reported it, but it is no trust anchor
        map_certificate(alice.cert, rules, [other.cert], [ca.cert])


# -- any certificate of the chain (RFC 7589 §7, RFC 7407 §5) ---------------------------------


@pytest.fixture(scope="module")
def chain() -> tuple[Identity, Identity, Identity]:
    """root -> intermediate -> client (the intermediate in the client's chain)."""
    root = make_ca("Chain Root", now=NOW)
    intermediate = issue_intermediate_ca(root, "Chain Intermediate", now=NOW)
    return root, intermediate, issue_client(intermediate, "carol", now=NOW)


@pytest.mark.parametrize("named", ["intermediate", "root", "client"])
def test_a_rule_may_name_any_certificate_of_the_chain(
    chain: tuple[Identity, Identity, Identity], named: str
) -> None:
    root, intermediate, carol = chain
    cert = {"root": root, "intermediate": intermediate, "client": carol}[named].cert
    rules = [CertToName(_print(cert), "common-name")]
    # as OpenSSL verifies it (intermediate, root) and as a resumed session reports it
    for reported in ([intermediate.cert, root.cert], [intermediate.cert]):
        assert map_certificate(carol.cert, rules, [root.cert], reported) == "carol"


def test_chain_rules_fail_closed(
    chain: tuple[Identity, Identity, Identity], pki: tuple[Identity, Identity, Identity]
) -> None:
    root, intermediate, carol = chain
    unrelated, _, _ = pki
    to_root = [CertToName(_print(root.cert), "common-name")]
    to_intermediate = [CertToName(_print(intermediate.cert), "common-name")]
    with pytest.raises(AccessDenied):  # a rule naming a CA outside the chain maps nothing
        map_certificate(
            carol.cert, [CertToName(_print(unrelated.cert), "common-name")], [root.cert],
            [intermediate.cert, root.cert],
        )  # fmt: skip
    with pytest.raises(AccessDenied):  # no intermediate reported: no path to the root
        map_certificate(carol.cert, to_root, [root.cert])
    with pytest.raises(AccessDenied):  # a path that ends at no configured trust anchor
        map_certificate(carol.cert, to_intermediate, [unrelated.cert], [intermediate.cert])
    # an impostor: same name as the intermediate, another key; it signed nothing of carol's
    impostor = issue_intermediate_ca(root, "Chain Intermediate", now=NOW)
    rules = [CertToName(_print(impostor.cert), "common-name")]
    with pytest.raises(AccessDenied):
        map_certificate(carol.cert, rules, [root.cert], [impostor.cert, intermediate.cert])
    # a leaf cannot issue: a client certificate listed "above" carol is no link
    dave = issue_client(intermediate, "dave", now=NOW)
    with pytest.raises(AccessDenied):
        map_certificate(carol.cert, [CertToName(_print(dave.cert), "common-name")],
                        [root.cert], [dave.cert, intermediate.cert])  # fmt: skip


def test_device_identity_is_not_mapped_by_a_chain_rule(
    chain: tuple[Identity, Identity, Identity],
) -> None:
    root, intermediate, _ = chain
    peer = _device(intermediate, "SN-CHAIN")
    rules = [CertToName(_print(root.cert), "common-name")]
    with pytest.raises(AccessDenied, match="device identity"):
        map_certificate(peer, rules, [root.cert], [intermediate.cert, root.cert])


async def test_peer_certificates_over_a_real_handshake() -> None:
    """What the TLS listeners see: OpenSSL's verified chain, leaf first, root last."""
    now = datetime.now(UTC) - timedelta(minutes=5)
    root_now = make_ca("Live Root", now=now)
    inter_now = issue_intermediate_ca(root_now, "Live Intermediate", now=now)
    client_id = issue_client(inter_now, "erin", now=now)
    server_id = issue_tls_server(root_now, "device", hosts=["127.0.0.1"], now=now)
    got: asyncio.Future[list[x509.Certificate]] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.set_result(peer_certificates(writer.get_extra_info("ssl_object")))
        writer.close()

    ctx = server_context(server_id, client_cas=[root_now.cert], require_client_cert=True)
    srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    port = srv.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_context(client_id, trust=[root_now.cert])
    )
    certs = await asyncio.wait_for(got, 10)
    writer.close()
    srv.close()
    assert certs == [client_id.cert, inter_now.cert, root_now.cert]
    rules = [CertToName(_print(inter_now.cert), "common-name")]
    assert map_certificate(certs[0], rules, [root_now.cert], certs[1:]) == "erin"


class _Resumed:
    """An ssl object of a resumed session: no verified chain, the presented one only."""

    def __init__(self, leaf: x509.Certificate, presented: list[x509.Certificate]) -> None:
        self._leaf = leaf.public_bytes(serialization.Encoding.DER)
        self._presented = [c.public_bytes(serialization.Encoding.DER) for c in presented]

    def getpeercert(self, binary_form: bool = False) -> bytes:
        return self._leaf

    def get_verified_chain(self) -> list[bytes]:
        return []

    def get_unverified_chain(self) -> list[bytes]:
        return [self._leaf, *self._presented]


def test_peer_certificates_without_a_verified_chain(
    chain: tuple[Identity, Identity, Identity],
) -> None:
    root, intermediate, carol = chain
    got = peer_certificates(_Resumed(carol.cert, [intermediate.cert]))  # type: ignore[arg-type]
    assert got == [carol.cert, intermediate.cert]
    rules = [CertToName(_print(root.cert), "common-name")]
    assert map_certificate(got[0], rules, [root.cert], got[1:]) == "carol"


def test_leaf_fingerprint_with_specified_name_and_order(
    pki: tuple[Identity, Identity, Identity],
) -> None:
    _, _, alice = pki
    rules = [
        CertToName(f"sha256:{_print(alice.cert)}", "specified", "admin"),
        CertToName("*", "common-name"),
    ]
    assert map_certificate(alice.cert, rules) == "admin"


def test_missing_name_falls_through_to_next_rule(pki: tuple[Identity, Identity, Identity]) -> None:
    _, _, alice = pki
    rules = [CertToName("*", "san-rfc822-name"), CertToName("*", "common-name")]
    assert map_certificate(alice.cert, rules) == "alice"
    with pytest.raises(AccessDenied):
        map_certificate(alice.cert, rules[:1])


def test_no_rule_refuses(pki: tuple[Identity, Identity, Identity]) -> None:
    _, _, alice = pki
    with pytest.raises(AccessDenied, match="RFC 7589"):
        map_certificate(alice.cert, [])


def _device(ca: Identity, serial: str) -> x509.Certificate:
    """An LDevID as the registrar issues it (subject CN and serialNumber, RFC 8995 §2.3.1)."""
    key = generate_key("p256")
    return issue_from_csr(
        ca, make_csr(key, common_name=serial), subject=ldevid_subject(serial), san=[],
        now=NOW, days=30, client_auth=True, server_auth=True,
    )  # fmt: skip


def test_device_identity_needs_a_rule_naming_its_own_certificate(
    pki: tuple[Identity, Identity, Identity],
) -> None:
    ca, _, alice = pki
    peer = _device(ca, "SN-PEER")
    broad = [CertToName("*", "common-name"), CertToName(f"sha256:{_print(ca.cert)}", "san-any")]
    # the default and CA rules map operators, not the other devices of the domain
    assert map_certificate(alice.cert, broad, [ca.cert]) == "alice"
    with pytest.raises(AccessDenied, match="device identity") as refused:
        map_certificate(peer, broad, [ca.cert])
    assert _print(peer) in str(refused.value) and "serialNumber 'SN-PEER'" in str(refused.value)
    # the opt-in: a rule with that certificate's fingerprint, wherever it stands
    opt_in = [*broad, CertToName(f"sha256:{_print(peer)}", "specified", "peer-manager")]
    assert map_certificate(peer, opt_in, [ca.cert]) == "peer-manager"
    assert map_certificate(peer, [CertToName(_print(peer), "common-name")]) == "SN-PEER"
    with pytest.raises(AccessDenied, match="device identity"):  # another device's rule
        map_certificate(_device(ca, "SN-OTHER"), opt_in, [ca.cert])


def test_a_malformed_subject_alt_name_refuses_instead_of_failing(
    pki: tuple[Identity, Identity, Identity],
) -> None:
    """A CA-signed client certificate whose SAN holds a 5-byte iPAddress passes TLS
    verification; a SAN rule refuses it (RESTCONF 401 like NETCONF's closed session), it is
    not a ValueError (RESTCONF answered 500)."""
    ca, _, _ = pki
    bad_san = bytes([0x30, 0x07, 0x87, 0x05, 192, 0, 2, 1, 9])  # SEQUENCE { [7] 5 bytes }
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "odd")]))
        .issuer_name(ca.cert.subject)
        .public_key(generate_key("p256").public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(
            x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, bad_san), False
        )
    )
    odd = builder.sign(ca.key, hashes.SHA256())  # type: ignore[arg-type]
    with pytest.raises(AccessDenied, match="malformed extension"):
        map_certificate(odd, [CertToName("*", "san-any")], [ca.cert])
    assert map_certificate(odd, [CertToName("*", "common-name")], [ca.cert]) == "odd"

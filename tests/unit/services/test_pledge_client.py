"""The pledge client's pure helpers: folder loading, result writing, Retry-After, refusals."""

from __future__ import annotations

import re
import ssl
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tests.support.calls import recorded
from zerotouch_plugin.artifacts import certs, cms
from zerotouch_plugin.artifacts.certs import pem
from zerotouch_plugin.artifacts.certs.keys import PublicKey
from zerotouch_plugin.artifacts.signer import SignatureAlgorithm, Signer, SoftwareSigner
from zerotouch_plugin.artifacts.voucher import Assertion, Voucher
from zerotouch_plugin.errors import ConfigError
from zerotouch_plugin.roles.pledge import Enrollment
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services import pledge_client as client
from zerotouch_plugin.services.pledge_client import (
    ClosedBeforeHandshake,
    HandshakeRefused,
    PledgeClient,
    load_pledge_config,
    write_enrollment,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _pledge_folder(folder: Path) -> certs.Identity:
    vendor = certs.make_ca("vendor", now=NOW)
    idevid = certs.issue_idevid(vendor, "SN-H1", masa_url=None, now=NOW)
    certfiles.write_certs(folder / "idevid.pem", [idevid.cert, vendor.cert])
    certfiles.write_key(folder / "idevid.key", idevid.key)
    certfiles.write_certs(folder / "masa-ca.pem", [vendor.cert])
    return vendor


def test_load_pledge_config_reads_the_folder(tmp_path: Path) -> None:
    vendor = _pledge_folder(tmp_path)
    config = load_pledge_config(tmp_path)
    assert config.serial == "SN-H1"
    assert config.masa_anchors == (vendor.cert,)
    assert config.idevid.chain == ()  # the root after the leaf is not an intermediate


@pytest.mark.parametrize("name", ["idevid.pem", "idevid.key", "masa-ca.pem"])
def test_missing_pledge_files_name_the_file(tmp_path: Path, name: str) -> None:
    _pledge_folder(tmp_path)
    (tmp_path / name).unlink()
    with pytest.raises(ConfigError, match=rf"{re.escape(name)} is missing"):
        load_pledge_config(tmp_path)
    (tmp_path / name).mkdir()  # not a file either
    with pytest.raises(ConfigError, match=rf"{re.escape(name)} is missing"):
        load_pledge_config(tmp_path)


def test_load_pledge_config_reads_each_certificate_and_the_key_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The vendor CA after the IDevID is the MASA anchor read from masa-ca.pem (not read a
    second time), and the identity is checked once (the root after the leaf is not built
    into a first identity to be dropped)."""
    vendor = _pledge_folder(tmp_path)
    read = recorded(monkeypatch, pem, "read_eagerly")
    checked = recorded(monkeypatch, certs.Identity, "__post_init__")
    config = load_pledge_config(tmp_path)
    assert read == [vendor.cert, config.idevid.cert]
    assert len(checked) == 1 and checked[0] is config.idevid
    assert config.masa_anchors == (vendor.cert,)


def test_an_intermediate_in_the_idevid_file_stays_in_the_chain(tmp_path: Path) -> None:
    vendor = certs.make_ca("vendor", now=NOW)
    intermediate = certs.issue_intermediate_ca(vendor, "vendor issuing CA", now=NOW)
    idevid = certs.issue_idevid(intermediate, "SN-H2", masa_url=None, now=NOW)
    certfiles.write_certs(tmp_path / "idevid.pem", [idevid.cert, intermediate.cert, vendor.cert])
    certfiles.write_key(tmp_path / "idevid.key", idevid.key)
    certfiles.write_certs(tmp_path / "masa-ca.pem", [vendor.cert])
    config = load_pledge_config(tmp_path)
    assert config.idevid.cert == idevid.cert
    assert config.idevid.chain == (intermediate.cert,)


def test_a_key_that_is_not_the_idevids_is_a_config_error(tmp_path: Path) -> None:
    _pledge_folder(tmp_path)
    certfiles.write_key(tmp_path / "idevid.key", certs.generate_key())
    with pytest.raises(ConfigError, match=r"idevid\.pem / .*idevid\.key: the private key"):
        load_pledge_config(tmp_path)


class _SealedSigner:
    """A Signer whose key does not leave it (a TPM, a secure element)."""

    def __init__(self, key: certs.PrivateKey) -> None:
        self._signer = SoftwareSigner(key)

    def public_key(self) -> PublicKey:
        return self._signer.public_key()

    def sign(self, data: bytes, algorithm: SignatureAlgorithm) -> bytes:
        return self._signer.sign(data, algorithm)


def _enrollment(
    signer: Callable[[certs.PrivateKey], Signer],
) -> tuple[Enrollment, certs.Identity, certs.Identity]:
    """An enrollment whose LDevID key is held by ``signer``; the domain CA and the LDevID."""
    domain = certs.make_ca("domain", now=NOW)
    leaf = certs.issue_client(domain, "SN-H1", now=NOW)
    masa = certs.issue_masa_signer(domain, "masa", now=NOW)
    voucher = Voucher(
        created_on=NOW,
        assertion=Assertion.LOGGED,
        serial_number="SN-H1",
        pinned_domain_cert=domain.cert.public_bytes(Encoding.DER),
        nonce="AAAAAAAAAAA=",
    )
    enrollment = Enrollment(
        serial="SN-H1",
        voucher_cms=cms.sign(voucher.to_json(), signer=masa, now=NOW),
        voucher=voucher,
        registrar_cert=leaf.cert,
        domain_anchors=(domain.cert,),
        ldevid=leaf.cert,
        ldevid_chain=(),
        ldevid_key=signer(leaf.key),
    )
    return enrollment, domain, leaf


def test_write_enrollment_writes_all_files_with_modes(tmp_path: Path) -> None:
    enrollment, domain, leaf = _enrollment(SoftwareSigner)
    write_enrollment(tmp_path, enrollment)
    assert (tmp_path / "voucher.cms").read_bytes() == enrollment.voucher_cms
    assert certs.load_certs((tmp_path / "domain-ca.pem").read_bytes()) == [domain.cert]
    identity = certfiles.load_identity(tmp_path / "ldevid.pem", tmp_path / "ldevid.key")
    assert identity.cert == leaf.cert
    assert stat.S_IMODE((tmp_path / "ldevid.key").stat().st_mode) == 0o600
    assert not list(tmp_path.glob(".*.tmp"))  # nothing staged is left behind


def test_write_enrollment_of_a_key_that_stays_in_its_signer_is_refused(tmp_path: Path) -> None:
    """Only a software key can be written to ldevid.key; any other signer is refused as
    ``tls_identity`` refuses it, and nothing is written."""
    enrollment, _, _ = _enrollment(_SealedSigner)
    with pytest.raises(ConfigError, match="needs its private key in OpenSSL"):
        write_enrollment(tmp_path, enrollment)
    assert list(tmp_path.iterdir()) == []


def test_contexts_share_one_watching_class_and_keep_their_own_watch() -> None:
    """One SSLObject class serves every client's context (none is made per pledge); each
    context tells its own client's watch."""
    first, second = client._HandshakeWatch(), client._HandshakeWatch()
    a = client._watching(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), first)
    b = client._watching(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), second)
    assert a.sslobject_class is b.sslobject_class is client._WatchedSSLObject
    assert client._WATCHES[a] is first and client._WATCHES[b] is second


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        (" 12 ", 12.0),
        ("Thu, 26 Nov 2026 12:00:30 GMT", 30.0),
        ("Thu, 26 Nov 2026 11:00:00 GMT", 0.0),  # in the past: retry now
        ("soon", None),
        ("\xb2", None),  # a superscript two (latin-1) is not a number of seconds
        ("-5", None),
    ],
)
def test_retry_after_header(header: str | None, expected: float | None) -> None:
    assert client._retry_after(header, NOW) == expected


def test_tls_refusals_are_told_apart_from_outages() -> None:
    alert = ssl.SSLError(1, "[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca")
    assert client._tls_refusal(alert)
    assert client._tls_refusal(HandshakeRefused("cut"))
    wrapped = ConnectionResetError()
    wrapped.__cause__ = alert
    assert client._tls_refusal(wrapped)
    assert not client._tls_refusal(ConnectionRefusedError(111, "Connection refused"))
    assert not client._tls_refusal(ConnectionResetError(104, "Connection reset by peer"))
    assert not client._tls_refusal(ClosedBeforeHandshake("busy"))
    assert not client._tls_refusal(TimeoutError())


@pytest.mark.parametrize("url", ["http://127.0.0.1:8443", "127.0.0.1:8443", "https://"])
def test_registrar_url_must_be_https(tmp_path: Path, url: str) -> None:
    _pledge_folder(tmp_path)
    with pytest.raises(ConfigError, match="https://HOST"):
        PledgeClient(load_pledge_config(tmp_path), url, timeout=5)


def test_timeout_must_be_positive(tmp_path: Path) -> None:
    _pledge_folder(tmp_path)
    with pytest.raises(ConfigError):
        PledgeClient(load_pledge_config(tmp_path), "https://127.0.0.1:1", timeout=0)


def test_retry_after_date_is_relative_to_the_given_now() -> None:
    # Retry-After dates are compared with the clock the caller passes in
    later = NOW + timedelta(seconds=10)
    assert client._retry_after("Thu, 26 Nov 2026 12:00:30 GMT", later) == 20.0

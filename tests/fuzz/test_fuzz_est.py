"""EST bodies (RFC 7030 §4, read as RFC 8951 §3 allows) under fuzzing: PKCS#10 requests,
certs-only PKCS#7 responses and CsrAttrs, as raw DER, base64 with line breaks or armour, parse
or raise a 4xx zerotouch error in budget; a mutated CSR is never accepted with a request its
key did not sign."""

from __future__ import annotations

import base64
from collections.abc import Callable

from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.mutate import mutated_bytes
from tests.fuzz.oracle import handled
from tests.fuzz.seeds import certs_only_ders, csr_ders, csrattrs_ders
from zerotouch_plugin.artifacts import est

CSRS = csr_ders()
SIGNED_REQUESTS = frozenset(x509.load_der_x509_csr(der).tbs_certrequest_bytes for der in CSRS)


def _body(der: bytes, form: str) -> bytes:
    """The body a client might send for ``der``: what RFC 7030 says, what RFC 8951 tolerates,
    or the raw DER some clients send with a binary transfer encoding."""
    encoded = base64.b64encode(der)
    return {
        "der": der,
        "base64": encoded,
        "lines": base64.encodebytes(der).replace(b"\n", b"\r\n"),
        "unpadded": encoded.rstrip(b"="),
        "urlsafe": base64.urlsafe_b64encode(der),
        "armoured": b"-----BEGIN CERTIFICATE REQUEST-----\n"
        + encoded
        + b"\n-----END CERTIFICATE REQUEST-----\n",
    }[form]


def _reader(cert: x509.Certificate) -> Callable[[], object]:
    """Touch what a pledge reads from a returned certificate (parsed lazily by cryptography)."""
    return lambda: (cert.subject, cert.issuer, cert.extensions, cert.public_key())


forms = st.sampled_from(["der", "base64", "lines", "unpadded", "urlsafe", "armoured"])


@given(mutated_bytes(CSRS + certs_only_ders()), forms)
def test_csr_mutants_parse_or_refuse(case: tuple[int, bytes], form: str) -> None:
    body = _body(case[1], form)
    result = handled(lambda: est.parse_csr(body), len(body))
    if isinstance(result, x509.CertificateSigningRequest):
        assert result.tbs_certrequest_bytes in SIGNED_REQUESTS
        handled(lambda: (result.subject, result.extensions, result.public_key()), len(body))


@given(mutated_bytes(certs_only_ders() + CSRS), forms)
def test_certs_only_mutants_parse_or_refuse(case: tuple[int, bytes], form: str) -> None:
    body = _body(case[1], form)
    result = handled(lambda: est.decode_certs_only(body), len(body))
    if isinstance(result, list):
        for cert in result:
            handled(_reader(cert), len(body))


@given(mutated_bytes(csrattrs_ders()), forms)
def test_csrattrs_mutants_parse_or_refuse(case: tuple[int, bytes], form: str) -> None:
    body = _body(case[1], form)
    handled(lambda: est.decode_csrattrs(body), len(body))
    handled(lambda: est.parse_csrattrs(body), len(body))


@given(
    st.binary(max_size=1024)
    | st.text("ABCDEFabcdef0123456789+/=_-\r\n ", max_size=256).map(str.encode)
)
def test_raw_bodies_parse_or_refuse(body: bytes) -> None:
    handled(lambda: est.decode_base64_body(body), len(body))
    handled(lambda: est.parse_csr(body), len(body))
    handled(lambda: est.decode_certs_only(body), len(body))
    handled(lambda: est.parse_csrattrs(body), len(body))

"""CMS SignedData (RFC 5652) under fuzzing: every input decodes, inspects and verifies or
raises a zerotouch error with a 4xx code, within the oracle's budgets, and no mutation of a
signed artifact is ever accepted with content other than what was signed."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.mutate import mutated_bytes
from tests.fuzz.oracle import handled
from tests.fuzz.seeds import (
    NOW,
    own_signed,
    own_signed_other_keys,
    pki,
    signer_key,
    vector_cms,
    verified_content,
)
from zerotouch_plugin.artifacts import cms

OWN = own_signed() + own_signed_other_keys()
VECTORS = vector_cms()
SEEDS = OWN + VECTORS
CA = pki()[0]
# (content, signer) pairs some seed's signer really signed: splicing two seeds may yield one of
# these again, but any other pair that verifies would be a forgery.
SIGNED = frozenset(pair for pair in map(verified_content, SEEDS) if pair is not None)


def test_seeds_are_valid() -> None:
    """The harnesses below are only as good as their seeds: all own ones verify, and the
    vectors give a dozen more real-world encodings."""
    assert all(verified_content(der) is not None for der in OWN)
    assert len(VECTORS) >= 10
    assert sum(verified_content(der) is not None for der in VECTORS) >= 5


@given(mutated_bytes(SEEDS))
def test_mutants_decode_or_refuse(case: tuple[int, bytes]) -> None:
    _, data = case
    handled(lambda: cms.decode(data), len(data))
    handled(lambda: cms.inspect(data), len(data))


@given(mutated_bytes(SEEDS))
def test_mutants_never_verify_with_other_content(case: tuple[int, bytes]) -> None:
    """Signature with the embedded signer only: a mutant that verifies carries content its
    signer really signed (only unsigned parts, such as an unused certificate, were hit)."""
    _, data = case
    result = handled(lambda: cms.verify(data, trust_anchors=None, now=None), len(data))
    if isinstance(result, cms.SignedContent):
        assert (result.content, signer_key(result.signer)) in SIGNED


@given(mutated_bytes(OWN))
def test_own_mutants_never_verify_as_forgery(case: tuple[int, bytes]) -> None:
    """With the vendor CA as trust anchor: accepted means content a MASA key signed."""
    _, data = case
    result = handled(lambda: cms.verify(data, trust_anchors=[CA.cert], now=NOW), len(data))
    if isinstance(result, cms.SignedContent):
        assert (result.content, signer_key(result.signer)) in SIGNED


@given(mutated_bytes(SEEDS), st.sampled_from(["pem", "base64", "urlsafe"]))
def test_text_forms_decode_or_refuse(case: tuple[int, bytes], form: str) -> None:
    _, data = case
    encoded = base64.b64encode(data)
    text = {
        "pem": b"-----BEGIN CMS-----\n" + encoded + b"\n-----END CMS-----\n",
        "base64": encoded,
        "urlsafe": base64.urlsafe_b64encode(data).rstrip(b"="),
    }[form]
    handled(lambda: cms.inspect(text), len(text))


@given(st.binary(max_size=2048) | st.binary(max_size=512).map(lambda body: b"\x30" + body))
def test_raw_bytes_decode_or_refuse(data: bytes) -> None:
    handled(lambda: cms.decode(data), len(data))
    handled(lambda: cms.verify(data, trust_anchors=None, now=None), len(data))

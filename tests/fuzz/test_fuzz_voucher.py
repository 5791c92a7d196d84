"""Vouchers and voucher-requests (RFC 8366, RFC 8995 §3) under fuzzing, as JSON and signed: a
document parses into a model that survives its own round trip, or raises a 4xx zerotouch
error; a mutated signed artifact is never accepted as anything but what the MASA signed."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.mutate import mutated_bytes, mutated_json
from tests.fuzz.oracle import handled
from tests.fuzz.seeds import NOW, own_artifacts, own_signed, pki, vector_json
from zerotouch_plugin.artifacts import cms
from zerotouch_plugin.artifacts.voucher import (
    DEFAULT_TOLERANCES,
    STRICT,
    Tolerance,
    Voucher,
    VoucherRequest,
    load_artifact,
    parse_signed_voucher,
    parse_signed_voucher_request,
)

Artifact = Voucher | VoucherRequest
SignedParser = Callable[..., tuple[Artifact, cms.SignedContent]]
JSON_SEEDS = tuple(artifact.to_dict() for artifact in own_artifacts()) + vector_json()
PARSERS: dict[str, SignedParser] = {
    "voucher": parse_signed_voucher,
    "voucher-request": parse_signed_voucher_request,
}
tolerance_sets = st.sampled_from([STRICT, DEFAULT_TOLERANCES])


def test_seeds_parse() -> None:
    """Own seeds parse strictly and most vectors parse with the tolerances: the mutants start
    from documents that reach every check."""
    assert len(JSON_SEEDS) >= 10
    parsed = [_parse_seed(doc) for doc in JSON_SEEDS]
    assert all(isinstance(p, Artifact) for p in parsed[: len(own_artifacts())])
    assert sum(isinstance(p, Artifact) for p in parsed) >= len(JSON_SEEDS) // 2


def _parse_seed(document: object) -> Artifact | Exception:
    data = json.dumps(document).encode()
    return handled(lambda: load_artifact(data), len(data))


# RFC 7950 §9.4: the characters a YANG string may hold (no other controls, no surrogates).
YANG_STRING = re.compile("[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")


def _round_trip(artifact: Artifact) -> None:
    """What was accepted serializes to JSON that parses back to the same artifact: the model
    holds nothing its own writer cannot express, and no text a YANG string cannot hold (it
    ends up in logs, database rows and error messages)."""
    again = type(artifact).from_json(artifact.to_json(), tolerances=artifact.tolerances)
    assert again == artifact
    assert YANG_STRING.fullmatch(artifact.serial_number)


@given(mutated_json(JSON_SEEDS), tolerance_sets)
def test_json_mutants_parse_or_refuse(data: bytes, tolerances: frozenset[Tolerance]) -> None:
    result = handled(lambda: load_artifact(data, tolerances=tolerances), len(data))
    if isinstance(result, Artifact):
        _round_trip(result)
        handled(lambda: result.check(now=NOW, serial="FUZZ-0001"), len(data))


@given(mutated_json(JSON_SEEDS), st.sampled_from([Voucher, VoucherRequest]))
def test_json_mutants_by_kind(data: bytes, model: type[Voucher] | type[VoucherRequest]) -> None:
    result = handled(lambda: model.from_json(data), len(data))
    if isinstance(result, Voucher):
        handled(result.pinned_domain_certificate, len(data))
    elif isinstance(result, VoucherRequest):
        handled(result.proximity_registrar_certificate, len(data))


@given(st.binary(max_size=1024) | st.text(max_size=256).map(str.encode))
def test_raw_bytes_parse_or_refuse(data: bytes) -> None:
    handled(lambda: load_artifact(data), len(data))


@given(mutated_json(JSON_SEEDS), st.sampled_from(sorted(PARSERS)), tolerance_sets)
def test_signed_json_mutants_parse_or_refuse(
    data: bytes, kind: str, tolerances: frozenset[Tolerance]
) -> None:
    """Whatever JSON the MASA key signs, the verifying parser answers with a model or a 4xx
    error: a signed body is as hostile as an unsigned one once a peer's key signs junk."""
    ca, masa, _ = pki()
    der = cms.sign(data, signer=masa, now=NOW)
    handled(
        lambda: PARSERS[kind](der, trust_anchors=[ca.cert], now=NOW, tolerances=tolerances),
        len(der),
    )


@given(mutated_bytes(own_signed()), st.sampled_from(sorted(PARSERS)))
def test_signed_mutants_are_never_forgeries(case: tuple[int, bytes], kind: str) -> None:
    """A mutated signed artifact that verifies against the vendor CA is one the MASA signed."""
    _, data = case
    ca = pki()[0]
    result = handled(lambda: PARSERS[kind](data, trust_anchors=[ca.cert], now=NOW), len(data))
    if isinstance(result, tuple):
        assert result[0] in own_artifacts()

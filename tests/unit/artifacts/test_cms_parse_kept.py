"""cms keeps the parse of signed bytes it has read (RFC 5652 SignedData), never a verdict:
the same bytes are decoded once, every check still runs on each call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from zerotouch_plugin.artifacts import _cms, certs, cms
from zerotouch_plugin.errors import Expired

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the SignedData decodes, starting with nothing kept."""
    cms._parse_kept.cache_clear()
    counted: list[int] = []
    real = _cms.parse_signed_data

    def counting(der: bytes) -> _cms.ParsedSignedData:
        counted.append(len(der))
        return real(der)

    monkeypatch.setattr(_cms, "parse_signed_data", counting)
    return counted


def _identity() -> certs.Identity:
    return certs.issue_masa_signer(certs.make_ca("Kept CA", now=NOW), "Kept MASA", now=NOW)


def test_the_same_bytes_are_decoded_once_and_checked_each_time(decodes: list[int]) -> None:
    signed = cms.sign(b'{"a": 1}', signer=_identity(), now=NOW)
    assert cms.inspect(signed).content == b'{"a": 1}'
    assert cms.verify(bytes(signed), trust_anchors=None, now=NOW).content == b'{"a": 1}'
    with pytest.raises(Expired):  # the kept parse carries no verdict
        cms.verify(signed, trust_anchors=None, now=NOW + timedelta(days=10000))
    assert len(decodes) == 1


def test_large_signed_data_is_not_kept(decodes: list[int]) -> None:
    content = b"x" * (cms._PARSE_KEPT_MAX_BYTES + 1)
    signed = cms.sign(content, signer=_identity(), now=NOW)
    for _ in range(2):
        assert cms.verify(signed, trust_anchors=None, now=NOW).content == content
    assert len(decodes) == 2

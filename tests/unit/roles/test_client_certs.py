"""The revoked-client set a registrar process decides on: it refuses what it holds, and
decides only while it is at most ``REVOCATIONS_MAX_AGE`` old."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from zerotouch_plugin.roles.client_certs import REVOCATIONS_MAX_AGE, RevokedClients

LOADED = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_set_decides_while_current() -> None:
    known = RevokedClients(frozenset({"sha256:aa"}), LOADED)
    assert known.revoked("sha256:aa") and not known.revoked("sha256:bb")
    assert known.current(LOADED + REVOCATIONS_MAX_AGE)
    assert not known.current(LOADED + REVOCATIONS_MAX_AGE * 1.01)


def test_the_set_is_validated() -> None:
    with pytest.raises(TypeError):
        RevokedClients({"sha256:aa"}, LOADED)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RevokedClients(frozenset(), datetime(2026, 1, 1))

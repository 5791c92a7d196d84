"""The bootstrap state renders each history event once, however often the whole state is
published and saved, and every rendering is what a fresh one would be."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from zerotouch_plugin.errors import UpstreamUnavailable
from zerotouch_plugin.roles import bootstrap
from zerotouch_plugin.roles.bootstrap import BootstrapState

NOW = datetime(2026, 12, 6, 1, 0, tzinfo=UTC)
URI = "https://registrar.example:8443"


def _busy_state(steps: int, history: int = 8) -> BootstrapState:
    state = BootstrapState(history_size=history)
    state.run_started(now=NOW)
    for i in range(steps):
        state.attempt(URI, now=NOW + timedelta(seconds=i))
        state.attempt_failed(URI, UpstreamUnavailable("refused"), now=NOW + timedelta(seconds=i))
    return state


def _fresh(state: BootstrapState) -> list[dict[str, Any]]:
    return [e.to_json() for e in state.events]


def test_each_event_is_rendered_once_over_many_publishes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rendered: list[int] = []
    to_json = bootstrap._Event.to_json

    def counted(event: Any) -> dict[str, Any]:
        rendered.append(event.sequence)
        return to_json(event)

    monkeypatch.setattr(bootstrap._Event, "to_json", counted)
    state = BootstrapState(history_size=8)
    for i in range(20):
        state.record("retrying", now=NOW + timedelta(seconds=i), detail=f"try {i}")
        state.to_yang()
        state.persisted_json()
    assert sorted(rendered) == list(range(1, 21))  # once each, the evicted ones included


def test_renderings_are_what_a_fresh_one_is() -> None:
    state = _busy_state(10)
    state.to_yang()  # rendered and kept
    state.failed(UpstreamUnavailable("gone"), now=NOW + timedelta(minutes=1))
    body = state.to_yang()["zerotouch-bootstrap:bootstrap"]
    assert body["event"] == _fresh(state)
    assert [e["sequence"] for e in body["event"]] == list(range(15, 23))
    saved = json.loads(state.persisted_json())
    assert saved == state.persisted()
    assert saved["events"] == _fresh(state) and saved["last-error"]["message"] == "gone"


def test_a_restored_history_renders_as_it_was_saved() -> None:
    before = _busy_state(3)
    again = BootstrapState(history_size=8)
    again.restore(json.loads(before.persisted_json()))
    assert json.loads(again.persisted_json())["events"] == _fresh(before)
    assert again.to_yang()["zerotouch-bootstrap:bootstrap"]["event"] == _fresh(before)

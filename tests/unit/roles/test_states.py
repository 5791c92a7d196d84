"""The pledge transition table: reachability, illegal transitions, the generated diagram."""

from __future__ import annotations

from pathlib import Path

import pytest

from zerotouch_plugin.errors import Conflict
from zerotouch_plugin.roles.states import (
    PLEDGE_TRANSITIONS,
    PledgeEvent,
    PledgeState,
    render_mermaid,
    transition,
)

TERMINAL = {PledgeState.ENROLLED, PledgeState.FAILED}


def _reachable(start: PledgeState) -> set[PledgeState]:
    seen, todo = {start}, [start]
    while todo:
        state = todo.pop()
        for (source, _), target in PLEDGE_TRANSITIONS.items():
            if source is state and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_every_state_is_reachable_from_idle() -> None:
    assert _reachable(PledgeState.IDLE) == set(PledgeState)


def test_every_state_can_end() -> None:
    for state in PledgeState:
        assert _reachable(state) & TERMINAL, state


def test_terminal_states_have_no_way_out() -> None:
    assert not [key for key in PLEDGE_TRANSITIONS if key[0] in TERMINAL]


def test_every_event_is_used() -> None:
    assert {event for _, event in PLEDGE_TRANSITIONS} == set(PledgeEvent)


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (PledgeState.IDLE, PledgeEvent.VOUCHER_VALID),
        (PledgeState.CONNECTING, PledgeEvent.CERT_VALID),
        (PledgeState.REQUESTING_VOUCHER, PledgeEvent.CACERTS_VALID),
        (PledgeState.ENROLLING, PledgeEvent.VOUCHER_VALID),
        (PledgeState.ENROLLED, PledgeEvent.START),
        (PledgeState.FAILED, PledgeEvent.RETRY),
        (PledgeState.REPORTING_VOUCHER, PledgeEvent.REFUSED),
    ],
)
def test_illegal_transitions_raise(state: PledgeState, event: PledgeEvent) -> None:
    with pytest.raises(Conflict, match="not expected"):
        transition(PLEDGE_TRANSITIONS, state, event)


def test_legal_transition() -> None:
    assert (
        transition(PLEDGE_TRANSITIONS, PledgeState.REQUESTING_VOUCHER, PledgeEvent.VOUCHER_INVALID)
        is PledgeState.REPORTING_VOUCHER_FAILURE
    )
    # a failed voucher step starts over with a new connection and a new request (§5.2)
    assert (
        transition(PLEDGE_TRANSITIONS, PledgeState.REQUESTING_VOUCHER, PledgeEvent.RETRY)
        is PledgeState.CONNECTING
    )


def _diagram() -> str:
    return render_mermaid(
        PLEDGE_TRANSITIONS,
        initial=[PledgeState.IDLE],
        final=[PledgeState.ENROLLED, PledgeState.FAILED],
    )


def test_mermaid_diagram_names_every_state_and_event() -> None:
    text = _diagram()
    assert text.startswith("stateDiagram-v2\n    [*] --> idle\n")
    for state in PledgeState:
        assert str(state).replace("-", "_") in text
    for event in PledgeEvent:
        assert f" {event}" in text
    assert "    requesting_voucher --> reporting_voucher_failure: voucher-invalid\n" in text
    assert "    enrolled --> [*]\n" in text


def test_docs_show_the_generated_pledge_diagram(repo_root: Path) -> None:
    page = (repo_root / "docs" / "state-machines.md").read_text()
    section = page.split("## Pledge", 1)[1]
    assert f"```mermaid\n{_diagram()}```" in section

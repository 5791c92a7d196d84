"""The discovery machine (RFC 8995 §4.1.1) driven in memory: search order, candidates kept
once in method order, failed candidates set aside with growing backoff, cycles, giving up;
its transition table and the diagram of docs/state-machines.md generated from it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from zerotouch_plugin.errors import Conflict, UpstreamUnavailable
from zerotouch_plugin.roles.discovery import (
    Candidate,
    CandidateState,
    Discovery,
    DiscoveryConfig,
    GiveUp,
    Method,
    Role,
    Search,
    Try,
    Wait,
    candidate_from_url,
)
from zerotouch_plugin.roles.pledge import RetryPolicy
from zerotouch_plugin.roles.states import (
    DISCOVERY_TRANSITIONS,
    DiscoveryEvent,
    DiscoveryState,
    render_mermaid,
    transition,
)

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
NO_JITTER = RetryPolicy(base_delay=1.0, max_delay=8.0, jitter=0.0)


def zero(n: int) -> bytes:
    return bytes(n)


def proxy(n: int, method: Method = Method.GRASP) -> Candidate:
    return Candidate(method, Role.PROXY, f"fe80::{n}", 443, "eth0", f"AN_Proxy from fe80::{n}")


def machine(*methods: Method, cycles: int = 0) -> Discovery:
    config = DiscoveryConfig(
        methods, timeout=2.0, timeouts={Method.MDNS: 3.0}, backoff=NO_JITTER, cycles=cycles
    )
    return Discovery(config, random_bytes=zero)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_methods_are_searched_in_order_with_their_timeouts() -> None:
    d = machine(Method.GRASP, Method.MDNS, Method.DNS_SD)
    assert d.start(now=T0) == Search(Method.GRASP, 2.0)
    assert d.search_done(Method.GRASP, now=T0) == Search(Method.MDNS, 3.0)
    assert d.search_done(Method.MDNS, now=T0) == Search(Method.DNS_SD, 2.0)
    action = d.search_done(Method.DNS_SD, now=T0)
    assert isinstance(action, Wait)
    assert "nothing found" in action.reason
    assert d.state is DiscoveryState.WAITING


def test_candidates_are_tried_as_found_and_a_failed_one_is_set_aside() -> None:
    d = machine(Method.GRASP, Method.MDNS)
    d.start(now=T0)
    d.found(Method.GRASP, [proxy(1), proxy(2)])
    assert d.search_done(Method.GRASP, now=T0) == Try(proxy(1))
    assert d.candidates[0].state is CandidateState.TRYING
    error = UpstreamUnavailable("the proxy's registrar does not answer")
    # RFC 8995 §4.1.1: the next candidate after a failure
    assert d.candidate_failed(proxy(1), error, now=at(1)) == Try(proxy(2))
    first = d.candidates[0]
    assert first.state is CandidateState.FAILED
    assert first.failures == 1
    assert first.until == at(2)  # first backoff: base_delay, no jitter
    assert first.error is not None and "does not answer" in first.error
    d.enrolled(proxy(2), now=at(2))
    assert d.state is DiscoveryState.ENROLLED
    assert d.enrolled_by == proxy(2)
    assert [s.state for s in d.candidates] == [CandidateState.FAILED, CandidateState.ENROLLED]


def test_the_same_place_is_one_candidate_whoever_announced_it() -> None:
    d = machine(Method.GRASP, Method.MDNS)
    d.start(now=T0)
    d.found(Method.GRASP, [proxy(1), proxy(1)])
    d.search_done(Method.GRASP, now=T0)
    d.candidate_failed(proxy(1), UpstreamUnavailable("down"), now=T0)
    again = Candidate(Method.MDNS, Role.PROXY, "FE80:0::1", 443, "eth0", "mDNS")
    other_zone = Candidate(Method.MDNS, Role.PROXY, "fe80::1", 443, "eth1", "mDNS")
    d.found(Method.MDNS, [again, other_zone])
    assert [s.candidate for s in d.candidates] == [proxy(1), other_zone]
    # the candidate set aside is not tried again in this cycle; the new one is
    assert d.search_done(Method.MDNS, now=T0) == Try(other_zone)


def test_candidates_keep_method_order_whatever_the_arrival() -> None:
    d = machine(Method.CONFIGURED, Method.VENDOR)
    d.start(now=T0)
    configured = candidate_from_url("https://registrar.example:8443", Method.CONFIGURED)
    vendor = candidate_from_url("https://cloud.vendor.example", Method.VENDOR)
    d.found(Method.CONFIGURED, [configured])
    assert d.search_done(Method.CONFIGURED, now=T0) == Try(configured)
    assert d.candidate_failed(configured, UpstreamUnavailable("x"), now=T0) == Search(
        Method.VENDOR, 2.0
    )
    d.found(Method.VENDOR, [vendor])
    assert d.search_done(Method.VENDOR, now=T0) == Try(vendor)
    assert [s.candidate.method for s in d.candidates] == [Method.CONFIGURED, Method.VENDOR]
    assert vendor.port == 443 and vendor.role is Role.REGISTRAR


def test_backoff_grows_per_failure_and_the_cycle_waits_for_the_first_ready() -> None:
    d = machine(Method.GRASP)
    d.start(now=T0)
    d.found(Method.GRASP, [proxy(1)])
    d.search_done(Method.GRASP, now=T0)
    wait = d.candidate_failed(proxy(1), UpstreamUnavailable("x"), now=T0)
    # set aside until T0+1 s; the cycle's own backoff (1 s) is not longer
    assert wait == Wait(1.0, wait.reason if isinstance(wait, Wait) else "")
    assert isinstance(wait, Wait) and "1 candidate(s), none enrolled" in wait.reason
    assert d.wait_over(now=at(1)) == Search(Method.GRASP, 2.0)
    assert d.cycle == 2
    d.found(Method.GRASP, [proxy(1)])
    assert d.search_done(Method.GRASP, now=at(1)) == Try(proxy(1))
    d.candidate_failed(proxy(1), UpstreamUnavailable("x"), now=at(1))
    assert d.candidates[0].failures == 2
    assert d.candidates[0].until == at(3)  # second failure: 2 s


def test_a_candidate_still_set_aside_is_skipped_in_the_next_cycle() -> None:
    d = Discovery(
        DiscoveryConfig(
            (Method.GRASP,), backoff=RetryPolicy(base_delay=10, max_delay=60, jitter=0)
        ),
        random_bytes=zero,
    )
    d.start(now=T0)
    d.found(Method.GRASP, [proxy(1)])
    d.search_done(Method.GRASP, now=T0)
    d.candidate_failed(proxy(1), UpstreamUnavailable("x"), now=T0)
    d.wait_over(now=at(5))  # a new cycle before the 10 s are over
    d.found(Method.GRASP, [proxy(1), proxy(2)])
    assert d.search_done(Method.GRASP, now=at(5)) == Try(proxy(2))


def test_gives_up_after_the_configured_cycles_with_the_last_error() -> None:
    d = machine(Method.CONFIGURED, cycles=1)
    d.start(now=T0)
    c = candidate_from_url("https://[fe80::1%25eth0]:8443", Method.CONFIGURED)
    assert c.scope == "eth0" and c.url == "https://[fe80::1%25eth0]:8443"
    d.found(Method.CONFIGURED, [c])
    d.search_done(Method.CONFIGURED, now=T0)
    error = UpstreamUnavailable("registrar unreachable")
    action = d.candidate_failed(c, error, now=T0)
    assert isinstance(action, GiveUp)
    assert action.error is error
    assert "gave up after 1 round(s) through configured" in action.reason
    assert d.state is DiscoveryState.FAILED


def test_inputs_out_of_turn_are_refused() -> None:
    d = machine(Method.GRASP, Method.MDNS)
    with pytest.raises(ValueError, match="not expected"):
        d.search_done(Method.GRASP, now=T0)
    d.start(now=T0)
    with pytest.raises(ValueError, match="no mdns search"):
        d.found(Method.MDNS, [])
    with pytest.raises(ValueError, match="not a grasp candidate"):
        d.found(Method.GRASP, [proxy(1, Method.MDNS)])
    d.found(Method.GRASP, [proxy(1)])
    d.search_done(Method.GRASP, now=T0)
    with pytest.raises(ValueError, match="not the candidate being tried"):
        d.candidate_failed(proxy(2), UpstreamUnavailable("x"), now=T0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"methods": ()}, "one or more"),
        ({"methods": (Method.GRASP, Method.GRASP)}, "once"),
        ({"methods": (Method.GRASP,), "timeout": 0}, "positive"),
        ({"methods": (Method.GRASP,), "timeouts": {Method.MDNS: -1}}, "positive"),
        ({"methods": (Method.GRASP,), "cycles": -1}, "cycles"),
    ],
)
def test_config_is_validated(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DiscoveryConfig(**kwargs)  # type: ignore[arg-type]


def test_a_url_that_is_not_https_is_no_candidate() -> None:
    with pytest.raises(ValueError, match="https"):
        candidate_from_url("http://registrar.example", Method.CONFIGURED)


def test_transition_table() -> None:
    assert (
        transition(DISCOVERY_TRANSITIONS, DiscoveryState.TRYING, DiscoveryEvent.TRY)
        is DiscoveryState.TRYING
    )
    with pytest.raises(Conflict, match="not expected"):
        transition(DISCOVERY_TRANSITIONS, DiscoveryState.ENROLLED, DiscoveryEvent.TRY)


def _diagram() -> str:
    return render_mermaid(
        DISCOVERY_TRANSITIONS,
        initial=[DiscoveryState.IDLE],
        final=[DiscoveryState.ENROLLED, DiscoveryState.FAILED],
    )


def test_every_state_and_event_is_in_the_diagram() -> None:
    text = _diagram()
    for state in DiscoveryState:
        assert str(state) in text
    for event in DiscoveryEvent:
        assert f" {event}" in text


def test_docs_show_the_generated_discovery_diagram(repo_root: Path) -> None:
    page = (repo_root / "docs" / "state-machines.md").read_text()
    section = page.split("## Discovery", 1)[1]
    assert f"```mermaid\n{_diagram()}```" in section


def test_a_neighbour_announcing_new_addresses_every_cycle_cannot_grow_the_table() -> None:
    d = machine(Method.GRASP)
    action = d.start(now=T0)
    seconds = 0.0
    for cycle in range(20):
        assert isinstance(action, Search)
        d.found(Method.GRASP, [proxy(cycle * 100 + i + 1) for i in range(50)])
        action = d.search_done(Method.GRASP, now=at(seconds))
        while isinstance(action, Try):
            failure = UpstreamUnavailable("no registrar")
            action = d.candidate_failed(action.candidate, failure, now=at(seconds))
        assert isinstance(action, Wait) and len(d.candidates) <= 64  # MAX_CANDIDATES
        seconds += 100.0
        action = d.wait_over(now=at(seconds))
    real = proxy(9999)
    assert isinstance(action, Search)
    d.found(Method.GRASP, [real])
    assert real in [status.candidate for status in d.candidates]

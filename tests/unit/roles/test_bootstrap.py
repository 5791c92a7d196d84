"""The agent's bootstrap state model in memory: phases, notifications, the bounded history,
persistence, and YANG validity of what it publishes (zerotouch-bootstrap)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from yangson.enumerations import ContentType, ValidationScope
from yangson.exceptions import YangTypeError

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.artifacts.voucher import Assertion, Voucher
from zerotouch_plugin.device.schema import DeviceSchema, load_device_schema
from zerotouch_plugin.errors import PolicyRefused, StorageError, UpstreamUnavailable
from zerotouch_plugin.roles.bootstrap import (
    PHASE_OF_STATE,
    SZTP_SOURCE,
    BootstrapPath,
    BootstrapState,
    Phase,
    trust_anchor_summaries,
)
from zerotouch_plugin.roles.discovery import (
    Candidate,
    CandidateState,
    CandidateStatus,
    Method,
    Role,
)
from zerotouch_plugin.roles.states import PledgeEvent, PledgeState

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
URI = "https://registrar.example:8443"
DOMAIN = certs.make_ca("domain CA", now=NOW - timedelta(days=1))
LDEVID = certs.issue_client(DOMAIN, "SN-1", now=NOW - timedelta(days=1))
VOUCHER = Voucher(
    created_on=NOW,
    assertion=Assertion.LOGGED,
    serial_number="SN-1",
    pinned_domain_cert=DOMAIN.cert.public_bytes(Encoding.DER),
    nonce="AAECAwQFBgc=",
)


@pytest.fixture(scope="module")
def schema() -> DeviceSchema:
    return load_device_schema()


def valid(schema: DeviceSchema, tree: dict[str, Any]) -> None:
    """Raises unless ``tree`` is valid state data of zerotouch-bootstrap (types, patterns,
    keys): the subtree alone, as the operational datastore does not validate state."""
    instance = schema.data_model.from_raw(tree)
    instance["zerotouch-bootstrap:bootstrap"].validate(ValidationScope.all, ContentType.all)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def enrolled_state() -> BootstrapState:
    state = BootstrapState(history_size=8)
    state.run_started(now=at(0))
    state.attempt(URI, now=at(1))
    state.machine_step(PledgeEvent.CONNECTED, PledgeState.REQUESTING_VOUCHER, now=at(2))
    state.voucher_accepted(VOUCHER)
    state.machine_step(PledgeEvent.VOUCHER_VALID, PledgeState.REPORTING_VOUCHER, now=at(3))
    state.enrolled(URI, ldevid=LDEVID.cert, anchors=[DOMAIN.cert], voucher=VOUCHER, now=at(4))
    return state


def test_a_run_goes_through_the_phases_and_notifies_each_change() -> None:
    state = BootstrapState()
    assert state.phase is Phase.FACTORY_DEFAULT
    change = state.run_started(now=at(0))
    assert change is not None and change.notification() == {
        "phase": "discovering",
        "previous-phase": "factory-default",
        "time": "2026-11-26T12:00:00Z",
        "detail": "bootstrap-started",
    }
    assert state.attempt(URI, now=at(1)) is not None
    assert state.phase is Phase.REQUESTING_VOUCHER
    # a step within the same phase is an event but no phase change
    assert (
        state.machine_step(PledgeEvent.CONNECTED, PledgeState.REQUESTING_VOUCHER, now=at(2)) is None
    )
    # start and retry of the machine are not events of their own
    before = state.sequence
    assert state.machine_step(PledgeEvent.RETRY, PledgeState.CONNECTING, now=at(2)) is None
    assert state.sequence == before
    wait = state.waiting(2.5, "registrar unreachable", now=at(3))
    assert wait is not None and wait.phase is Phase.WAITING_RETRY
    assert state.next_attempt == at(5.5)
    assert state.retrying(PledgeState.CONNECTING, now=at(5.5)) is not None
    assert state.next_attempt is None and state.phase is Phase.REQUESTING_VOUCHER
    change = state.enrolled(
        URI, ldevid=LDEVID.cert, anchors=[DOMAIN.cert], voucher=VOUCHER, now=at(9)
    )
    assert change is not None and change.phase is Phase.ENROLLED
    assert state.completed == at(9) and state.registrar_used == URI


def test_every_machine_state_has_a_phase_entry() -> None:
    assert set(PHASE_OF_STATE) == set(PledgeState)


def test_published_tree_is_valid_yang(schema: DeviceSchema) -> None:
    state = enrolled_state()
    state.attempt_failed("https://other.example", UpstreamUnavailable("down"), now=at(5))
    state.waiting(1, "again", now=at(6))
    tree = state.to_yang()
    valid(schema, tree)
    body = tree["zerotouch-bootstrap:bootstrap"]
    assert body["voucher"]["serial-number"] == "SN-1"
    assert body["voucher"]["nonce"] == "AAECAwQFBgc="
    assert body["voucher"]["nonceless"] is False
    assert body["voucher"]["pinned-domain-cert-fingerprint"] == certs.fingerprint(DOMAIN.cert)
    assert body["ldevid"]["fingerprint"] == certs.fingerprint(LDEVID.cert)
    assert body["trust-anchor"][0]["source"] == "pinned-domain-cert"
    tried = {t["uri"]: t for t in body["registrar"]["tried"]}
    assert tried[URI]["outcome"] == "ok"
    assert tried["https://other.example"]["outcome"] == "upstream-unavailable"
    assert body["last-error"]["reason"] == "upstream-unavailable"
    assert body["next-attempt"] == "2026-11-26T12:00:07Z"


def test_nonceless_voucher_is_shown_as_such(schema: DeviceSchema) -> None:
    """A voucher accepted without nonce (RFC 8995 §7.2, --allow-nonceless) says so, with
    the expires-on that made it acceptable."""
    nonceless = Voucher(
        created_on=NOW,
        assertion=Assertion.LOGGED,
        serial_number="SN-1",
        pinned_domain_cert=DOMAIN.cert.public_bytes(Encoding.DER),
        expires_on=NOW + timedelta(minutes=20),
    )
    state = BootstrapState()
    state.run_started(now=at(0))
    state.enrolled(URI, ldevid=LDEVID.cert, anchors=[DOMAIN.cert], voucher=nonceless, now=at(1))
    tree = state.to_yang()
    valid(schema, tree)
    voucher = tree["zerotouch-bootstrap:bootstrap"]["voucher"]
    assert voucher["nonceless"] is True and "nonce" not in voucher
    assert voucher["expires-on"] == "2026-11-26T12:20:00Z"


def test_failed_keeps_the_reason_and_a_note(schema: DeviceSchema) -> None:
    state = BootstrapState()
    state.run_started(now=at(0))
    state.attempt(URI, now=at(1))
    state.attempt_failed(URI, PolicyRefused("not on the allow list"), now=at(2))
    change = state.failed(PolicyRefused("not on the allow list"), now=at(3), note="gave up")
    assert change is not None and change.phase is Phase.FAILED
    body = state.to_yang()["zerotouch-bootstrap:bootstrap"]
    assert body["last-error"] == {
        "time": "2026-11-26T12:00:03Z",
        "reason": "policy-refused",
        "message": "gave up: not on the allow list",
    }
    valid(schema, state.to_yang())
    # a new run clears the error and the summaries
    state.run_started(now=at(4))
    assert state.last_error is None and state.phase is Phase.DISCOVERING


def test_history_is_bounded_and_numbered() -> None:
    state = BootstrapState(history_size=3)
    for second in range(5):
        state.record("attempt-started", now=at(second))
    body = state.to_yang()["zerotouch-bootstrap:bootstrap"]
    assert [e["sequence"] for e in body["event"]] == [3, 4, 5]
    assert body["event-history-size"] == 3


def test_persisted_history_survives_and_marks_an_interrupted_run() -> None:
    state = BootstrapState()
    state.run_started(now=at(0))
    state.attempt(URI, now=at(1))
    state.attempt_failed(URI, StorageError("disk"), now=at(2))
    saved = json.loads(json.dumps(state.persisted()))
    again = BootstrapState()
    again.restore(saved)
    assert again.interrupted is Phase.REQUESTING_VOUCHER
    assert [e.event for e in again.events] == [e.event for e in state.events]
    assert again.last_error == state.last_error
    change = again.agent_started(now=at(10))
    assert change is None  # the phase is factory-default until the agent decides
    assert "interrupted in phase requesting-voucher" in str(again.events[-1].detail)
    assert again.sequence == state.sequence + 1


def test_enrolled_run_is_not_interrupted() -> None:
    again = BootstrapState()
    again.restore(enrolled_state().persisted())
    assert again.interrupted is None


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"version": 2, "phase": "enrolled", "sequence": 1, "events": []},
        {"version": 1, "phase": "nonsense", "sequence": 1, "events": []},
        {"version": 1, "phase": "enrolled", "sequence": -1, "events": []},
        {"version": 1, "phase": "enrolled", "sequence": 1, "events": [{"sequence": 1}]},
    ],
)
def test_a_damaged_saved_state_is_refused_and_changes_nothing(data: dict[str, object]) -> None:
    state = BootstrapState()
    with pytest.raises(ValueError):
        state.restore(data)
    assert state.sequence == 0 and not state.events


def test_already_enrolled_rebuilds_summaries_without_a_voucher(schema: DeviceSchema) -> None:
    state = BootstrapState()
    state.failed(StorageError("disk"), now=NOW)
    change = state.already_enrolled(
        ldevid=LDEVID.cert, anchors=[DOMAIN.cert], voucher=None, now=NOW
    )
    assert change is not None and change.phase is Phase.ENROLLED
    body = state.to_yang()["zerotouch-bootstrap:bootstrap"]
    assert "voucher" not in body and "last-error" not in body
    assert body["trust-anchor"][0]["source"] == "est-cacerts"  # nothing pinned to compare
    valid(schema, state.to_yang())
    state.forgotten(now=at(1))
    assert state.phase is Phase.FACTORY_DEFAULT and state.ldevid is None


def test_trust_anchor_sources() -> None:
    other = certs.make_ca("other CA", now=NOW)
    summaries = trust_anchor_summaries([DOMAIN.cert, other.cert], DOMAIN.cert)
    assert [s["source"] for s in summaries] == ["pinned-domain-cert", "est-cacerts"]


def test_history_size_is_validated() -> None:
    with pytest.raises(ValueError):
        BootstrapState(history_size=0)
    with pytest.raises(TypeError):
        BootstrapState(history_size=True)


def test_the_validity_check_can_fail(schema: DeviceSchema) -> None:
    tree = enrolled_state().to_yang()
    tree["zerotouch-bootstrap:bootstrap"]["ldevid"]["fingerprint"] = "sha1:00"
    with pytest.raises(Exception, match="pattern"):
        valid(schema, tree)


def test_discovery_shows_methods_candidates_and_who_enrolled(schema: DeviceSchema) -> None:
    """RFC 8995 §4.1.1: the method searching, every candidate with its state, the one that
    enrolled the device; all valid against the module."""
    failed = Candidate(Method.GRASP, Role.PROXY, "fe80::1", 443, "eth0", "AN_Proxy from fe80::1")
    good = Candidate(Method.MDNS, Role.PROXY, "fe80::2", 8443, "eth0", "_brski-proxy._tcp")
    state = BootstrapState()
    state.run_started(now=at(0))
    state.search_started(Method.GRASP, 2.0, now=at(0))
    state.candidate_found(failed, now=at(1))
    state.attempt(failed.url, now=at(1), source=Method.GRASP)
    state.attempt_failed(failed.url, UpstreamUnavailable("registrar down"), now=at(2))
    state.attempt(good.url, now=at(3), source=Method.MDNS)
    statuses = [
        CandidateStatus(failed, CandidateState.FAILED, 1, at(4), "upstream-unavailable: down"),
        CandidateStatus(good, CandidateState.ENROLLED),
    ]
    state.discovery_seen(
        methods=(Method.GRASP, Method.MDNS),
        cycle=1,
        searching=None,
        candidates=statuses,
        enrolled_by=good,
    )
    state.enrolled(good.url, ldevid=LDEVID.cert, anchors=[DOMAIN.cert], voucher=VOUCHER, now=at(5))
    tree = state.to_yang()
    valid(schema, tree)
    body = tree["zerotouch-bootstrap:bootstrap"]
    found = body["discovery"]
    assert found["methods"] == ["grasp", "mdns"]
    first, second = found["candidate"]
    assert first["address"] == "fe80::1%eth0" and first["interface"] == "eth0"
    assert first["state"] == "failed" and first["set-aside-until"] == "2026-11-26T12:00:04Z"
    assert first["role"] == "proxy" and first["source"] == "AN_Proxy from fe80::1"
    assert second["state"] == "enrolled" and second["uri"] == "https://[fe80::2%25eth0]:8443"
    assert found["enrolled-by"]["method"] == "mdns"
    assert body["registrar"]["used"] == good.url
    sources = {t["uri"]: t["source"] for t in body["registrar"]["tried"]}
    assert sources == {failed.url: "grasp", good.url: "mdns"}
    assert [e["event"] for e in body["event"]][:3] == [
        "bootstrap-started",
        "search-started",
        "candidate-found",
    ]


def test_a_bad_candidate_state_is_refused_by_the_module(schema: DeviceSchema) -> None:
    state = BootstrapState()
    state.run_started(now=at(0))
    good = Candidate(Method.DNS_SD, Role.REGISTRAR, "registrar.example", 443)
    state.discovery_seen(
        methods=(Method.DNS_SD,),
        cycle=1,
        searching=Method.DNS_SD,
        candidates=[CandidateStatus(good, CandidateState.UNTRIED)],
        enrolled_by=None,
    )
    tree = state.to_yang()
    valid(schema, tree)
    tree["zerotouch-bootstrap:bootstrap"]["discovery"]["candidate"][0]["state"] = "maybe"
    with pytest.raises(YangTypeError):
        valid(schema, tree)


def test_the_path_taken_is_shown_once_a_protocol_onboards(schema: DeviceSchema) -> None:
    """bootstrap-path: brski after an enrollment (or a start with an identity), sztp after
    SZTP completed (or a start after it), gone with a new run or a factory reset."""
    brski = enrolled_state()
    body = brski.to_yang()["zerotouch-bootstrap:bootstrap"]
    assert body["bootstrap-path"] == "brski"
    valid(schema, brski.to_yang())
    brski.forgotten(now=at(5))
    assert "bootstrap-path" not in brski.to_yang()["zerotouch-bootstrap:bootstrap"]
    brski.already_enrolled(ldevid=LDEVID.cert, anchors=[DOMAIN.cert], voucher=None, now=at(6))
    assert brski.to_yang()["zerotouch-bootstrap:bootstrap"]["bootstrap-path"] == "brski"

    sztp = BootstrapState()
    sztp.run_started(now=at(0))
    server = "https://sztp.example:8443"
    sztp.attempt(server, now=at(1), source=SZTP_SOURCE)
    assert "bootstrap-path" not in sztp.to_yang()["zerotouch-bootstrap:bootstrap"]
    change = sztp.sztp_complete(server, now=at(2))
    assert change is not None and change.phase is Phase.ENROLLED
    body = sztp.to_yang()["zerotouch-bootstrap:bootstrap"]
    assert body["bootstrap-path"] == "sztp"
    assert body["registrar"] == {
        "used": server,
        "tried": [
            {"uri": server, "source": "sztp", "last-attempt": "2026-11-26T12:00:01Z",
             "outcome": "ok"}
        ],
    }  # fmt: skip
    valid(schema, sztp.to_yang())
    sztp.run_started(now=at(3))
    assert sztp.path is None
    assert sztp.already_bootstrapped(server, now=at(4)) is not None
    assert sztp.path is BootstrapPath.SZTP and sztp.events[-1].event == "already-bootstrapped"


def test_the_module_refuses_an_unknown_path(schema: DeviceSchema) -> None:
    tree = enrolled_state().to_yang()
    tree["zerotouch-bootstrap:bootstrap"]["bootstrap-path"] = "netconf-call-home"
    with pytest.raises(YangTypeError):
        valid(schema, tree)

"""Day-0 hand-off decisions (roles/handoff.py), in memory: targets, certificate check, RPC
plan, retry schedule and outcome."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.errors import (
    CertificateError,
    Conflict,
    InvalidInput,
    NotFound,
    UnsupportedOperation,
    UntrustedSigner,
)
from zerotouch_plugin.roles.handoff import (
    HANDOFF_TRANSITIONS,
    STARTUP_CAPABILITY,
    WRITABLE_RUNNING_CAPABILITY,
    AttemptFailure,
    FailureKind,
    HandoffEvent,
    HandoffPolicy,
    HandoffState,
    Plan,
    Target,
    after_attempt,
    backoff_delay,
    check_device_certificate,
    handoff_rpcs,
    management_target,
    parse_address,
    plan_after_enrollstatus,
    plan_repush,
    reported_management,
    unusable_ports,
)
from zerotouch_plugin.roles.records import ManagementRow
from zerotouch_plugin.roles.registrar import ldevid_subject
from zerotouch_plugin.roles.states import transition

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
REPORTED = ("netconf-tls-port", "restconf-port")
REPORT = {"status": True, "reason-context": {"zerotouch-management": {"netconf-tls-port": 8300}}}


# -- where to connect --------------------------------------------------------------------------


def test_target_from_enrollstatus_peer_and_reported_port() -> None:
    target = management_target(override=None, peer_host="192.0.2.7", document=REPORT)
    assert target == Target("192.0.2.7", 8300)
    v6 = management_target(override=None, peer_host="2001:db8::1", document=REPORT)
    assert str(v6) == "[2001:db8::1]:8300"


def test_override_wins_over_the_peer() -> None:
    target = management_target(override="[2001:db8::9]:830", peer_host="192.0.2.7", document=REPORT)
    assert target == Target("2001:db8::9", 830)


@pytest.mark.parametrize(
    "document",
    [
        {"status": True},
        {"reason-context": {"zerotouch-management": {"netconf-tls-port": "8300"}}},
        {"reason-context": {"zerotouch-management": {"netconf-tls-port": 0}}},
        {"reason-context": {"zerotouch-management": {"netconf-tls-port": True}}},
        {"reason-context": {"zerotouch-management": {"restconf-port": 8443}}},
        {"reason-context": "zerotouch-management"},
    ],
)
def test_no_usable_port_and_no_override_is_an_error_naming_both_ways(document: dict) -> None:
    with pytest.raises(InvalidInput, match=r"netconf-tls-port.*--address"):
        management_target(override=None, peer_host="192.0.2.7", document=document)


def test_reported_management_is_the_peer_with_the_ports_it_reported() -> None:
    both = {"reason-context": {"zerotouch-management": {"netconf-tls-port": 6513,
                                                        "restconf-port": 8443}}}  # fmt: skip
    got = reported_management(peer_host="2001:db8::1", document=both, now=NOW)
    assert got == ManagementRow("2001:db8::1", 6513, 8443, NOW)
    assert got is not None and got.address == "[2001:db8::1]:6513"
    bare = reported_management(peer_host="192.0.2.7", document={"status": True}, now=NOW)
    assert bare == ManagementRow("192.0.2.7", None, None, NOW) and bare.address is None
    assert reported_management(peer_host="device.example", document=both, now=NOW) is None
    assert reported_management(peer_host=None, document=both, now=NOW) is None


def test_reported_management_keeps_the_netconf_ssh_port() -> None:
    """Issue 9 item 14: every management listener of the reason-context, SSH included."""
    three = {"reason-context": {"zerotouch-management": {
        "netconf-tls-port": 6513, "netconf-ssh-port": 830, "restconf-port": 8443}}}  # fmt: skip
    got = reported_management(peer_host="192.0.2.7", document=three, now=NOW)
    assert got == ManagementRow("192.0.2.7", 6513, 8443, NOW, netconf_ssh_port=830)
    assert got is not None and got.to_json_dict()["netconf_ssh_port"] == 830
    bad = {"reason-context": {"zerotouch-management": {"netconf-ssh-port": "830"}}}
    assert unusable_ports(bad) == ("netconf-ssh-port",)
    got = reported_management(peer_host="192.0.2.7", document=bad, now=NOW)
    assert got is not None and got.netconf_ssh_port is None


@pytest.mark.parametrize(
    ("ports", "unusable"),
    [
        ({"netconf-tls-port": 6513, "restconf-port": 8443}, ()),
        ({"netconf-tls-port": 65536, "restconf-port": -1}, ("netconf-tls-port", "restconf-port")),
        ({"netconf-tls-port": "6513"}, ("netconf-tls-port",)),
        ({"restconf-port": 8443.0, "netconf-tls-port": None}, REPORTED),
        ({"netconf-tls-port": False, "restconf-port": [8443]}, REPORTED),
        ({"netconf-tls-port": 10**40, "other": "x"}, ("netconf-tls-port",)),
        ({}, ()),
    ],
)
def test_reported_ports_that_are_no_tcp_port_are_ignored_and_named(
    ports: dict, unusable: tuple[str, ...]
) -> None:
    document = {"status": True, "reason-context": {"zerotouch-management": ports}}
    assert unusable_ports(document) == unusable
    got = reported_management(peer_host="192.0.2.7", document=document, now=NOW)
    assert got is not None
    assert (got.netconf_tls_port is None) == ("netconf-tls-port" not in ports or
                                              "netconf-tls-port" in unusable)  # fmt: skip
    assert (got.restconf_port is None) == ("restconf-port" not in ports or
                                           "restconf-port" in unusable)  # fmt: skip


def test_peer_must_be_an_ip_address() -> None:
    with pytest.raises(InvalidInput, match="not an IP address"):
        management_target(override=None, peer_host="device.example", document=REPORT)


@pytest.mark.parametrize(
    "text",
    [
        "host", "host:", ":830", "h:0", "h:65536", "h:80a", "[::1]",
        "h:\u00b2", "h:\u0668\u0663\u0660", "h:" + "1" * 5000, "[::1:830", "[h]]:830",
        "h\nx:830", "a b:830", "<b>:830", "[192.0.2.1]:830", "-h.example:830",
    ],
)  # fmt: skip
def test_bad_addresses(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_address(text)


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("192.0.2.7:830", Target("192.0.2.7", 830)),
        ("[2001:db8::7]:830", Target("2001:db8::7", 830)),
        ("[fe80::1%eth0]:6513", Target("fe80::1%eth0", 6513)),
        ("Router-1.Example.net.:22", Target("Router-1.Example.net.", 22)),
    ],
)
def test_good_addresses(text: str, target: Target) -> None:
    assert parse_address(text) == target
    assert parse_address(str(target)) == target


def test_plan_after_enrollstatus() -> None:
    def plan(**kw: object) -> object:
        args: dict[str, object] = dict(
            status=True, configured=True, override=None, peer_host="127.0.0.1", document=REPORT
        )
        return plan_after_enrollstatus(**{**args, **kw})  # type: ignore[arg-type]

    assert plan(status=False) is None  # §5.9.4 failure: the device has no usable LDevID
    assert plan(configured=False) is None
    queued = plan()
    assert queued.state is HandoffState.PENDING and queued.target == Target("127.0.0.1", 8300)  # type: ignore[attr-defined]
    failed = plan(document={"status": True})
    assert failed.state is HandoffState.FAILED and failed.target is None  # type: ignore[attr-defined]
    assert "no management address" in failed.error  # type: ignore[attr-defined]


# -- who answers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def domain() -> certs.Identity:
    return certs.make_ca("domain CA", now=NOW)


def _ldevid(ca: certs.Identity, serial: str) -> certs.Identity:
    key = certs.generate_key("p256")
    cert = certs.issue_from_csr(
        ca, certs.make_csr(key, common_name=serial), subject=ldevid_subject(serial), san=[],
        now=NOW, days=30, client_auth=True, server_auth=True,
    )  # fmt: skip
    return certs.Identity(cert, key, ())


def test_device_certificate_must_be_our_ldevid_of_that_serial(domain: certs.Identity) -> None:
    mine = _ldevid(domain, "SN1")
    issued = {certs.fingerprint(mine.cert)}
    check_device_certificate(
        mine.cert, serial="SN1", domain_ca=domain.cert, issued_fingerprints=issued, now=NOW
    )
    with pytest.raises(CertificateError, match="certificate of SN1, not the LDevID of SN2"):
        check_device_certificate(
            mine.cert, serial="SN2", domain_ca=domain.cert, issued_fingerprints=issued, now=NOW
        )
    # same serial, right CA, but not a certificate this registrar issued (e.g. a stolen CA
    # key would be another matter; an unrecorded one is refused all the same)
    with pytest.raises(CertificateError, match="not an LDevID this registrar issued"):
        check_device_certificate(
            _ldevid(domain, "SN1").cert, serial="SN1", domain_ca=domain.cert,
            issued_fingerprints=issued, now=NOW,
        )  # fmt: skip
    foreign = _ldevid(certs.make_ca("other CA", now=NOW), "SN1")
    with pytest.raises(UntrustedSigner):
        check_device_certificate(
            foreign.cert, serial="SN1", domain_ca=domain.cert,
            issued_fingerprints={certs.fingerprint(foreign.cert)}, now=NOW,
        )  # fmt: skip
    with pytest.raises(CertificateError, match="sent no certificate"):
        check_device_certificate(
            None, serial="SN1", domain_ca=domain.cert, issued_fingerprints=issued, now=NOW
        )


# -- what to send -----------------------------------------------------------------------------


def test_rpcs_merge_into_running_then_copy_to_startup() -> None:
    rpcs = handoff_rpcs({WRITABLE_RUNNING_CAPABILITY, STARTUP_CAPABILITY}, "<x/>")
    assert len(rpcs) == 2
    assert rpcs[0].startswith("<edit-config><target><running/></target>")
    assert "<default-operation>merge</default-operation>" in rpcs[0] and "<x/></config>" in rpcs[0]
    assert rpcs[1] == (
        "<copy-config><target><startup/></target><source><running/></source></copy-config>"
    )


def test_without_startup_running_is_persistent_and_no_copy_is_sent() -> None:
    assert len(handoff_rpcs({WRITABLE_RUNNING_CAPABILITY}, "<x/>")) == 1


def test_without_writable_running_nothing_is_sent() -> None:
    with pytest.raises(UnsupportedOperation, match="writable-running"):
        handoff_rpcs({STARTUP_CAPABILITY}, "<x/>")


# -- retry schedule ---------------------------------------------------------------------------


def test_backoff_doubles_is_capped_and_jittered() -> None:
    policy = HandoffPolicy(max_attempts=10, base_delay=2.0, max_delay=20.0)
    assert [backoff_delay(policy, n, 0.0) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert backoff_delay(policy, 1, 0.999) == pytest.approx(2.0, abs=0.01)
    assert backoff_delay(policy, 9, 0.5) == 15.0
    with pytest.raises(ValueError):
        backoff_delay(policy, 1, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_attempts": 0}, ValueError),
        ({"max_attempts": True}, TypeError),
        ({"base_delay": 0}, ValueError),
        ({"base_delay": "1"}, TypeError),
        ({"base_delay": 10.0, "max_delay": 5.0}, ValueError),
        ({"max_delay": float("inf")}, ValueError),
        ({"base_delay": float("nan")}, ValueError),
    ],
)
def test_policy_is_validated(kwargs: dict, error: type[Exception]) -> None:
    with pytest.raises(error):
        HandoffPolicy(**kwargs)


POLICY = HandoffPolicy(max_attempts=3, base_delay=1.0, max_delay=4.0)
UNREACHABLE = AttemptFailure(FailureKind.UNREACHABLE, "connection refused")


def test_success_is_applied_and_counts_the_attempt() -> None:
    decision = after_attempt(POLICY, attempts=1, failure=None, now=NOW, rand=0.5)
    assert (decision.state, decision.attempts, decision.next_at, decision.error) == (
        HandoffState.APPLIED, 2, None, None,
    )  # fmt: skip


def test_transient_failures_retry_until_the_limit() -> None:
    first = after_attempt(POLICY, attempts=0, failure=UNREACHABLE, now=NOW, rand=0.0)
    assert first.state is HandoffState.PENDING and first.attempts == 1
    assert first.next_at == NOW + timedelta(seconds=0.5)
    assert first.error == "attempt 1/3: unreachable: connection refused"
    last = after_attempt(POLICY, attempts=2, failure=UNREACHABLE, now=NOW, rand=0.0)
    assert last.state is HandoffState.FAILED and last.next_at is None and last.attempts == 3


@pytest.mark.parametrize(
    ("failure", "retried"),
    [
        (AttemptFailure(FailureKind.PROTOCOL, "bad chunk"), True),
        (AttemptFailure(FailureKind.RPC_ERROR, "in use", "in-use"), True),
        (AttemptFailure(FailureKind.RPC_ERROR, "locked", "lock-denied"), True),
        (AttemptFailure(FailureKind.RPC_ERROR, "busy", "resource-denied"), True),
        (AttemptFailure(FailureKind.RPC_ERROR, "bad", "invalid-value"), False),
        (AttemptFailure(FailureKind.RPC_ERROR, "what", "unknown-element"), False),
        (AttemptFailure(FailureKind.UNTRUSTED, "foreign CA"), False),
        (AttemptFailure(FailureKind.UNSUPPORTED, "no :writable-running"), False),
        (AttemptFailure(FailureKind.NO_CONFIG, "removed"), False),
    ],
)
def test_which_failures_are_retried(failure: AttemptFailure, retried: bool) -> None:
    decision = after_attempt(POLICY, attempts=0, failure=failure, now=NOW, rand=0.5)
    assert decision.state is (HandoffState.PENDING if retried else HandoffState.FAILED)
    assert failure.message in (decision.error or "")


def test_rpc_error_failures_carry_their_tag() -> None:
    with pytest.raises(ValueError):
        AttemptFailure(FailureKind.RPC_ERROR, "no tag")
    with pytest.raises(ValueError):
        AttemptFailure(FailureKind.UNREACHABLE, "tag", "in-use")


def test_transition_table() -> None:
    for state in HandoffState:  # a new successful enrollstatus starts over from anywhere
        assert transition(HANDOFF_TRANSITIONS, state, HandoffEvent.QUEUED) is HandoffState.PENDING
    with pytest.raises(Conflict):
        transition(HANDOFF_TRANSITIONS, HandoffState.APPLIED, HandoffEvent.RETRY)


def repush(**changes: object) -> object:
    args: dict[str, object] = {
        "serial": "SN-1",
        "device_state": "enroll-confirmed",
        "handoff_state": "applied",
        "configured": True,
        "override": None,
        "reported": None,
        "known_target": "192.0.2.7:830",
    }
    args.update(changes)
    return plan_repush(**args)  # type: ignore[arg-type]


def test_repush_goes_to_the_override_or_the_last_target() -> None:
    for state in HandoffState:  # from any state back to pending
        plan = repush(handoff_state=str(state))
        assert plan == Plan(HandoffState.PENDING, Target("192.0.2.7", 830), None)
    plan = repush(override="[2001:db8::1]:6513", handoff_state="none", known_target=None)
    assert plan == Plan(HandoffState.PENDING, Target("2001:db8::1", 6513), None)


def test_repush_without_a_past_handoff_goes_to_the_reported_address() -> None:
    """A device that enrolled with no configuration has no hand-off yet: the NETCONF/TLS
    address its enrollstatus reported is the target, unless an override is set."""
    plan = repush(handoff_state="none", reported="192.0.2.8:6513", known_target=None)
    assert plan == Plan(HandoffState.PENDING, Target("192.0.2.8", 6513), None)
    newer = repush(reported="192.0.2.8:6513")  # newer than the last hand-off's target
    assert newer.target == Target("192.0.2.8", 6513)  # type: ignore[attr-defined]
    override = repush(reported="192.0.2.8:6513", override="10.0.0.1:830")
    assert override.target == Target("10.0.0.1", 830)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("changes", "error", "words"),
    [
        ({"device_state": None}, NotFound, "not known"),
        ({"device_state": "enrolled"}, Conflict, "is enrolled, not enroll-confirmed"),
        ({"device_state": "enroll-failed"}, Conflict, "not enroll-confirmed"),
        ({"configured": False}, NotFound, "no day-0 configuration for SN-1"),
        ({"known_target": None}, Conflict, "no management address known for SN-1"),
        ({"override": "nowhere"}, InvalidInput, "is not HOST:PORT"),
    ],
)
def test_repush_refusals_say_why(
    changes: dict[str, object], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        repush(**changes)

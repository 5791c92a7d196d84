"""GRASP flood reception, sans-IO (roles/grasp.py): loop count, duplicates, TTL, the cache
rules of RFC 8990 §2.8.11, bounded tables, relaying and candidates; all driven by ``now``."""

from __future__ import annotations

import ipaddress

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zerotouch_plugin.artifacts.grasp import (
    AN_JOIN_REGISTRAR,
    AN_PROXY,
    GRASP_DEF_MAX_SIZE,
    IPPROTO_UDP,
    O_FQDN_LOCATOR,
    O_URI_LOCATOR,
    Flood,
    Locator,
    Objective,
)
from zerotouch_plugin.roles.discovery import Method, Role
from zerotouch_plugin.roles.grasp import (
    ROLE_BY_OBJECTIVE,
    Announcement,
    FloodListener,
    candidate_for,
    relay,
)

PROXY_LL = "fe80::1"
OTHER_LL = "fe80::2"
ULA = "fd00::7"


def flood(
    session: int = 1,
    *,
    name: str = AN_PROXY,
    loop_count: int = 1,
    ttl: int = 180000,
    host: str = PROXY_LL,
    port: int = 4443,
    initiator: str = PROXY_LL,
    extra: tuple[tuple[Objective, Locator | None], ...] = (),
) -> bytes:
    entries = ((Objective(name, 4, loop_count, "BRSKI"), Locator.ip(host, port=port)), *extra)
    return Flood(session, ipaddress.ip_address(initiator), ttl, entries).encode()


def test_accepts_a_link_local_flood_and_caches_it() -> None:
    listener = FloodListener()
    verdict = listener.receive(flood(), sender=f"{PROXY_LL}%eth0", interface="eth0", now=10.0)
    assert verdict.dropped is None
    (announcement,) = verdict.fresh
    assert announcement.sender == PROXY_LL and announcement.interface == "eth0"
    assert announcement.received == 10.0 and announcement.expires == 190.0
    assert listener.announcements(11.0) == [announcement]
    assert listener.counters.snapshot() == {"received": 1, "accepted": 1, "dropped": {}}


@pytest.mark.parametrize("loop_count", [0, 2, 255])
def test_link_local_flood_with_loop_count_other_than_one_is_dropped(loop_count: int) -> None:
    listener = FloodListener()
    verdict = listener.receive(flood(loop_count=loop_count), sender=PROXY_LL, now=0)
    assert verdict.dropped == "loop-count"
    assert "RFC 8990 §2.5.6.2" in verdict.detail or "loop count 0" in verdict.detail
    assert listener.announcements(0) == []
    assert listener.counters.dropped == {"loop-count": 1}


def test_any_objective_with_a_bad_loop_count_drops_the_flood() -> None:
    second = ((Objective("AN_ACP", 4, 6, "IKEv2"), None),)
    verdict = FloodListener().receive(flood(extra=second), sender=PROXY_LL, now=0)
    assert verdict.dropped == "loop-count" and "AN_ACP" in verdict.detail


def test_routable_sender_may_use_a_higher_loop_count() -> None:
    # RFC 8995 §4.3: AN_join_registrar floods across the ACP with loop count 255
    data = flood(name=AN_JOIN_REGISTRAR, loop_count=255, host=ULA, initiator=ULA)
    verdict = FloodListener().receive(data, sender=ULA, now=0)
    assert verdict.dropped is None
    assert FloodListener().receive(flood(loop_count=0), sender=ULA, now=0).dropped == "loop-count"


def test_duplicate_session_and_initiator_is_suppressed_for_the_window() -> None:
    listener = FloodListener(duplicate_window=120)
    assert listener.receive(flood(7), sender=PROXY_LL, now=0).dropped is None
    again = listener.receive(flood(7), sender=PROXY_LL, now=119.9)
    assert again.dropped == "duplicate"
    # another initiator with the same session id is another session (RFC 8990 §2.7)
    other = listener.receive(flood(7, initiator=OTHER_LL), sender=OTHER_LL, now=119.9)
    assert other.dropped is None
    # after the window the session is forgotten
    assert listener.receive(flood(7), sender=PROXY_LL, now=120.0).dropped is None
    assert listener.counters.dropped == {"duplicate": 1}


def test_ttl_expires_announcements() -> None:
    listener = FloodListener()
    listener.receive(flood(1, ttl=300), sender=PROXY_LL, interface="eth0", now=100.0)
    (held,) = listener.announcements(100.299)
    assert held.alive(100.299) and not held.alive(100.3)
    assert listener.announcements(100.3) == []
    assert listener.sizes["entries"] == 0  # forgotten, not just hidden


def test_ttl_zero_is_indefinite() -> None:
    listener = FloodListener()
    listener.receive(flood(1, ttl=0), sender=PROXY_LL, now=0)
    (held,) = listener.announcements(10**9)
    assert held.expires is None and held.alive(10**12)


def test_refresh_with_the_same_locator_overwrites_a_new_locator_adds() -> None:
    listener = FloodListener()
    listener.receive(flood(1, ttl=1000), sender=PROXY_LL, now=0)
    listener.receive(flood(2, ttl=5000), sender=PROXY_LL, now=0.5)
    (held,) = listener.announcements(0.6)
    assert (held.session_id, held.expires) == (2, 5.5)
    listener.receive(flood(3, port=8443), sender=PROXY_LL, now=1.0)
    assert [a.locator.port for a in listener.announcements(1.0) if a.locator] == [4443, 8443]


def test_objectives_not_listened_for_are_dropped() -> None:
    listener = FloodListener(objectives={AN_PROXY})
    verdict = listener.receive(flood(name=AN_JOIN_REGISTRAR), sender=PROXY_LL, now=0)
    assert verdict.dropped == "objective" and AN_JOIN_REGISTRAR in verdict.detail
    mixed = ((Objective(AN_JOIN_REGISTRAR, 4, 1, "BRSKI"), Locator.ip(PROXY_LL, port=1)),)
    verdict = listener.receive(flood(2, extra=mixed), sender=PROXY_LL, now=0)
    assert [a.objective.name for a in verdict.fresh] == [AN_PROXY]
    assert [a.objective.name for a in listener.announcements(0)] == [AN_PROXY]


def test_malformed_datagrams_are_counted_by_kind() -> None:
    listener = FloodListener()
    listener.receive(b"\xff", sender=PROXY_LL, now=0)
    listener.receive(b"\x80" * (GRASP_DEF_MAX_SIZE + 1), sender=PROXY_LL, now=0)
    listener.receive(cbor2.dumps([1, 2, b"x" * 16, []]), sender=PROXY_LL, now=0)
    listener.receive(cbor2.dumps([9, "session"]), sender=PROXY_LL, now=0)
    listener.receive(b"\x81" * 40 + b"\x00", sender=PROXY_LL, now=0)
    listener.receive(flood(), sender="not an address", now=0)
    assert listener.counters.snapshot() == {
        "received": 6,
        "accepted": 0,
        "dropped": {
            "cbor": 1,
            "limits": 1,
            "message-type": 1,
            "oversized": 1,
            "sender": 1,
            "structure": 1,
        },
    }


def test_tables_stay_bounded_under_a_flood_of_floods() -> None:
    listener = FloodListener(max_sessions=100, max_entries=20, max_per_sender=3)
    for n in range(5000):
        sender = f"fe80::{n % 50 + 1:x}"
        data = flood(n, host=sender, port=1 + n, initiator=sender)
        assert listener.receive(data, sender=sender, now=n / 1000).dropped is None
        assert listener.sizes["sessions"] <= 100 and listener.sizes["entries"] <= 20
    held = listener.announcements(5.0)
    assert len(held) == 20
    # the most recent announcements are the ones kept, at most three per sender
    assert max(a.session_id for a in held) == 4999
    per_sender: dict[str, int] = {}
    for announcement in held:
        per_sender[announcement.sender] = per_sender.get(announcement.sender, 0) + 1
    assert max(per_sender.values()) <= 3


def test_one_sender_cannot_push_the_others_out() -> None:
    listener = FloodListener(max_entries=64, max_per_sender=4)
    listener.receive(flood(1), sender=PROXY_LL, now=0)
    for n in range(2, 1000):
        listener.receive(flood(n, host=OTHER_LL, port=n, initiator=OTHER_LL), sender=OTHER_LL,
                         now=0)  # fmt: skip
    senders = [a.sender for a in listener.announcements(0)]
    assert senders.count(PROXY_LL) == 1 and senders.count(OTHER_LL) == 4


def test_rejects_nonpositive_table_sizes() -> None:
    with pytest.raises(ValueError):
        FloodListener(max_entries=0)


# ---------------------------------------------------------------------------------------------
# relaying (RFC 8990 §2.5.6.2)


def test_relay_decrements_and_stops_at_zero() -> None:
    original = Flood(
        5,
        ipaddress.IPv6Address(ULA),
        1000,
        (
            (Objective(AN_JOIN_REGISTRAR, 4, 3, "BRSKI"), Locator.ip(ULA, port=8443)),
            (Objective("EX", 4, 1), None),
        ),
    )
    relayed = relay(original)
    assert relayed is not None
    assert (relayed.session_id, relayed.initiator, relayed.ttl) == (5, original.initiator, 1000)
    assert [(o.name, o.loop_count) for o in relayed.objectives] == [(AN_JOIN_REGISTRAR, 2)]
    again = relay(relayed)
    assert again is not None and again.objectives[0].loop_count == 1
    assert relay(again) is None  # loop count 1 arrived: not relayed further


# ---------------------------------------------------------------------------------------------
# candidates


def announcement(
    locator: Locator | None,
    *,
    name: str = AN_PROXY,
    sender: str = PROXY_LL,
    interface: str | None = "eth0",
) -> Announcement:
    return Announcement(
        objective=Objective(name, 4, 1, "BRSKI"),
        locator=locator,
        sender=sender,
        interface=interface,
        session_id=1,
        initiator=ipaddress.IPv6Address(sender),
        received=0.0,
        expires=None,
    )


def test_link_local_locator_is_scoped_to_the_interface_it_came_in_on() -> None:
    candidate = candidate_for(announcement(Locator.ip(PROXY_LL, port=4443)))
    assert (candidate.method, candidate.role) == (Method.GRASP, Role.PROXY)
    assert (candidate.host, candidate.port, candidate.scope) == (PROXY_LL, 4443, "eth0")
    assert candidate.source == "GRASP AN_Proxy from fe80::1%eth0"
    assert candidate.url == "https://[fe80::1%25eth0]:4443"


def test_registrar_role_and_routable_locators() -> None:
    ann = announcement(Locator.ip(ULA, port=8443), name=AN_JOIN_REGISTRAR, sender=ULA)
    candidate = candidate_for(ann)
    assert (candidate.role, candidate.scope, candidate.source) == (
        Role.REGISTRAR,
        None,
        f"GRASP AN_join_registrar from {ULA}",
    )
    assert candidate_for(announcement(Locator.ip("192.0.2.9", port=443))).host == "192.0.2.9"
    fqdn = Locator(O_FQDN_LOCATOR, "reg.example.net", 6, 443)
    assert candidate_for(announcement(fqdn), role=Role.REGISTRAR).host == "reg.example.net"
    assert ROLE_BY_OBJECTIVE[AN_JOIN_REGISTRAR] is Role.REGISTRAR


@pytest.mark.parametrize(
    ("locator", "says"),
    [
        (None, "null locator"),
        (Locator.ip(PROXY_LL, protocol=IPPROTO_UDP, port=4443), "protocol 17"),
        (Locator(103, PROXY_LL, 6, None), "no port"),
        (Locator(103, PROXY_LL, 6, 0), "no port"),
        (Locator(103, PROXY_LL, None, 443), "protocol None"),
        (Locator.ip("::", port=443), "not a unicast"),
        (Locator.ip("ff02::13", port=443), "not a unicast"),
        (Locator.ip("::1", port=443), "not a unicast"),
        (Locator.ip("127.0.0.1", port=443), "not a unicast"),
        (Locator.ip("255.255.255.255", port=443), "not a unicast"),
        (Locator(O_URI_LOCATOR, "https://x", 6, 443), "not usable"),
    ],
)
def test_unusable_locators(locator: Locator | None, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        candidate_for(announcement(locator))


@pytest.mark.parametrize(
    "mapped", ["::ffff:127.0.0.1", "::ffff:127.1.2.3", "::ffff:0.0.0.0", "::ffff:224.0.0.1"]
)
def test_ipv4_mapped_loopback_or_unspecified_locator_is_not_a_candidate(mapped: str) -> None:
    # Linux connects ::ffff:127.0.0.1 (and ::ffff:0.0.0.0) to the host's own loopback: a
    # neighbour's flood must not turn a pledge or proxy towards the host's own services.
    with pytest.raises(ValueError, match="not a unicast"):
        candidate_for(announcement(Locator.ip(mapped, port=830), name=AN_JOIN_REGISTRAR))


@pytest.mark.parametrize(
    "fqdn",
    [
        "localhost",
        "registrar.localhost.",
        "127.0.0.1",
        "127.1",
        "0x7f000001",
        "2130706433",
        "reg.example:1@127.0.0.1",
        "reg.example/path?",
        "reg\nexample",
        "-reg.example",
        "a" * 64 + ".example",
    ],
)
def test_fqdn_locator_that_is_no_remote_host_name_is_not_a_candidate(fqdn: str) -> None:
    # An O_FQDN_LOCATOR is text from anyone on the link: it must not reach the host itself
    # (an IP literal or localhost past the unicast check) nor rewrite the candidate's URL.
    fqdn_locator = Locator(O_FQDN_LOCATOR, fqdn, 6, 8443)
    with pytest.raises(ValueError, match="not a host name"):
        candidate_for(announcement(fqdn_locator, name=AN_JOIN_REGISTRAR))


def test_link_local_locator_needs_the_interface() -> None:
    with pytest.raises(ValueError, match="interface unknown"):
        candidate_for(announcement(Locator.ip(PROXY_LL, port=1), interface=None))


def test_unknown_objective_needs_a_role() -> None:
    with pytest.raises(ValueError, match="no role"):
        candidate_for(announcement(Locator.ip(ULA, port=1), name="EX1"))
    assert candidate_for(announcement(Locator.ip(ULA, port=1), name="EX1"), role=Role.PROXY)


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=GRASP_DEF_MAX_SIZE + 8)
    | st.sampled_from([flood(), flood(loop_count=2), flood(name=AN_JOIN_REGISTRAR)]),
    sender=st.sampled_from([PROXY_LL, f"{PROXY_LL}%eth0", ULA, "192.0.2.1", "", "junk"]),
    now=st.floats(min_value=0, max_value=1e9),
)
def test_fuzz_receive_never_raises(data: bytes, sender: str, now: float) -> None:
    listener = FloodListener()
    verdict = listener.receive(data, sender=sender, interface="eth0", now=now)
    assert (verdict.dropped is None) == bool(verdict.fresh)
    assert listener.counters.received == 1
    assert listener.counters.accepted + sum(listener.counters.dropped.values()) == 1

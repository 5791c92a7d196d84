"""GRASP sockets (services/discovery/grasp.py) driven over IPv6 loopback: the listener counts
and logs (rate-limited) what it drops, keeps the event loop responsive under a flood of
datagrams, the finder returns at the first usable batch or the timeout, the announcer builds
link-local floods. Real multicast across links is tests/e2e/test_grasp_netns.py."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Iterator

import cbor2
import pytest

from zerotouch_plugin.artifacts.grasp import (
    AN_JOIN_REGISTRAR,
    AN_PROXY,
    GRASP_DEF_MAX_SIZE,
    IPPROTO_UDP,
    Flood,
    Locator,
    Objective,
    decode_flood,
)
from zerotouch_plugin.errors import ConfigError
from zerotouch_plugin.roles.discovery import Method, Role
from zerotouch_plugin.services.discovery import grasp
from zerotouch_plugin.services.discovery.grasp import (
    GraspAnnouncer,
    GraspFinder,
    GraspListener,
    _DropLog,
)

PROXY_LL = "fe80::1"


def valid(session: int, *, name: str = AN_PROXY, port: int = 4443, value: str = "BRSKI") -> bytes:
    objective = Objective(name, 4, 1, value)
    locator = Locator.ip(PROXY_LL, port=port)
    return Flood(session, ipaddress.IPv6Address(PROXY_LL), 60000, ((objective, locator),)).encode()


HOSTILE = [
    b"\xff",
    b"\x9f\x09",
    b"\x80" * (GRASP_DEF_MAX_SIZE + 100),  # oversized (and truncated by the read to 2049)
    b"\x81" * 200 + b"\x00",
    cbor2.dumps([1, 5, b"\0" * 16, [AN_PROXY, 4, 1]]),  # M_DISCOVERY
    cbor2.dumps([9, "x", b"\0" * 16, 0, [[AN_PROXY, 4, 1], []]]),
    cbor2.dumps([9, 1, b"\0" * 16, 0, [["other", 4, 1], []]]),
]


@pytest.fixture
def loopback() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A bound non-blocking receiver on [::1] and a sender connected to it."""
    try:
        receiver = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        receiver.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    receiver.setblocking(False)
    sender = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sender.connect(receiver.getsockname())
    yield receiver, sender
    receiver.close()
    sender.close()


async def _until(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_listener_counts_drops_and_keeps_the_valid(
    loopback: tuple[socket.socket, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    receiver, sender = loopback
    seen: list[str] = []
    listener = GraspListener(
        "lo",
        objectives={AN_PROXY},
        sock=receiver,
        on_announcement=lambda a: seen.append(a.objective.name),
    )
    caplog.set_level(logging.DEBUG, logger="zerotouch_plugin.services.discovery.grasp")
    async with listener:
        for _ in range(20):
            for data in HOSTILE:
                sender.send(data)
            await asyncio.sleep(0.002)
        sender.send(valid(1))
        sender.send(valid(1))  # the same session again: a duplicate
        await _until(lambda: listener.counters.received == 20 * len(HOSTILE) + 2)
    counters = listener.counters.snapshot()
    assert counters["accepted"] == 1
    assert counters["dropped"] == {
        "cbor": 40,
        "oversized": 20,
        "limits": 20,
        "message-type": 20,
        "structure": 20,
        "objective": 1,  # the other 19 copies repeat its session id and initiator:
        "duplicate": 20,  # duplicates, as is the second valid(1)
    }
    assert seen == [AN_PROXY]
    (held,) = listener.announcements()
    assert held.sender == "::1" and held.interface == "lo"
    # one line per reason for the whole burst: warnings for hostile input, debug for benign
    lines = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(lines) == 7
    levels = {r.getMessage().split("dropped ")[1].split(" ")[0]: r.levelno for r in lines}
    assert levels["cbor"] == levels["oversized"] == levels["structure"] == logging.WARNING
    assert levels["message-type"] == levels["objective"] == logging.DEBUG
    assert all(r.getMessage().startswith("grasp lo: dropped") for r in lines)


async def test_a_flood_of_datagrams_does_not_starve_the_event_loop(
    loopback: tuple[socket.socket, socket.socket],
) -> None:
    receiver, sender = loopback
    listener = GraspListener("lo", sock=receiver, objectives={AN_PROXY})
    lateness: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            started = time.monotonic()
            await asyncio.sleep(0.005)
            lateness.append(time.monotonic() - started - 0.005)

    def blast() -> None:
        for n in range(20000):
            try:
                sender.send(HOSTILE[n % len(HOSTILE)])
            except OSError:  # ENOBUFS and the like: the kernel drops, so may we
                time.sleep(0.001)

    async with listener:
        tick = asyncio.create_task(ticker())
        thread = threading.Thread(target=blast)
        thread.start()
        await asyncio.to_thread(thread.join)
        await asyncio.sleep(0.2)
        sender.send(valid(99))
        await _until(lambda: listener.counters.accepted == 1)
        stop.set()
        await tick
    assert listener.counters.received > 1000
    assert max(lateness) < 0.5, max(lateness)
    assert listener.flood.sizes["sessions"] <= listener.flood.max_sessions


async def test_objective_names_from_the_link_cannot_forge_log_lines(
    loopback: tuple[socket.socket, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    receiver, sender = loopback
    forged = "AN_Proxy\n2026-12-08 00:00:00 CRITICAL zerotouch: registrar compromised"
    caplog.set_level(logging.DEBUG, logger="zerotouch_plugin.services.discovery.grasp")
    async with GraspListener("lo", objectives={AN_PROXY}, sock=receiver) as listener:
        for session, loop_count in ((1, 0), (2, 1)):  # a bad loop count; not listened for
            objective = [forged, 4, loop_count, "BRSKI"]
            sender.send(cbor2.dumps([9, session, b"\0" * 16, 0, [objective, []]]))
        await _until(lambda: listener.counters.received == 2)
    lines = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert {line.split("dropped ")[1].split(" ")[0] for line in lines} == {
        "loop-count",
        "objective",
    }
    assert all("\n" not in line and "\\n" in line for line in lines), lines


def test_drop_log_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="zerotouch_plugin.services.discovery.grasp")
    log = _DropLog("eth0", every=10)
    for n in range(100):
        log("cbor", f"bad {n}", "fe80::9", n / 10)  # 0 .. 9.9 s
    log("cbor", "bad again", "fe80::9", 10.0)
    log("duplicate", "seen", "fe80::9", 10.0)
    log("locator", "AN_Proxy locator protocol 17, not 6", "fe80::9", 10.0)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "grasp eth0: dropped cbor from fe80::9: bad 0",
        "grasp eth0: dropped cbor from fe80::9: bad again (99 more dropped for this reason "
        "since the last report)",
        "grasp eth0: dropped duplicate from fe80::9: seen",
        "grasp eth0: dropped locator from fe80::9: AN_Proxy locator protocol 17, not 6",
    ]
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.WARNING, logging.WARNING, logging.DEBUG, logging.INFO]


# ---------------------------------------------------------------------------------------------
# the finder, over a loopback socket instead of ff02::13


@pytest.fixture
def finder_socket(
    loopback: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> socket.socket:
    receiver, sender = loopback
    # each find() opens (and closes) its own descriptor of the same socket
    monkeypatch.setattr(GraspListener, "_open", lambda self: receiver.dup())
    return sender


async def test_finder_returns_the_first_batch(finder_socket: socket.socket) -> None:
    finder = GraspFinder("lo")
    assert finder.method is Method.GRASP and finder.role is Role.PROXY

    async def send_later() -> None:
        await asyncio.sleep(0.1)
        for data in HOSTILE:
            finder_socket.send(data)
        finder_socket.send(valid(1))
        finder_socket.send(valid(2, port=8443))  # same burst: returned too

    started = time.monotonic()
    sending = asyncio.create_task(send_later())
    found = await finder.find(timeout=5)
    await sending
    assert time.monotonic() - started < 1.0
    assert [(c.host, c.port, c.scope, c.role) for c in found] == [
        (PROXY_LL, 4443, "lo", Role.PROXY),
        (PROXY_LL, 8443, "lo", Role.PROXY),
    ]
    assert found[0].source == "GRASP AN_Proxy from ::1"
    assert finder.counters.accepted == 2 and sum(finder.counters.dropped.values()) == 7


async def test_finder_times_out_with_nothing(finder_socket: socket.socket) -> None:
    finder = GraspFinder("lo")
    for data in HOSTILE:
        finder_socket.send(data)
    started = time.monotonic()
    assert await finder.find(timeout=0.3) == []
    assert 0.3 <= time.monotonic() - started < 1.0
    assert finder.counters.received == len(HOSTILE)


async def test_finder_counts_unusable_and_unwanted_announcements(
    finder_socket: socket.socket,
) -> None:
    finder = GraspFinder("lo", AN_JOIN_REGISTRAR, values=["BRSKI"])
    assert finder.role is Role.REGISTRAR
    udp = Flood(
        3,
        ipaddress.IPv6Address(PROXY_LL),
        0,
        (
            (
                Objective(AN_JOIN_REGISTRAR, 4, 1, "BRSKI"),
                Locator.ip(PROXY_LL, protocol=IPPROTO_UDP, port=5683),
            ),
        ),
    )
    finder_socket.send(udp.encode())
    finder_socket.send(valid(4, name=AN_JOIN_REGISTRAR, value="EST-TLS"))
    finder_socket.send(valid(5, name=AN_JOIN_REGISTRAR, port=8443))
    found = await finder.find(timeout=2)
    assert [(c.role, c.port) for c in found] == [(Role.REGISTRAR, 8443)]
    assert finder.counters.dropped == {"locator": 1, "value": 1}


async def test_a_batch_of_crowded_floods_gives_a_bounded_number_of_candidates(
    finder_socket: socket.socket,
) -> None:
    # 64 datagrams of 44 AN_join_registrar entries each, all read in one wake-up: a proxy
    # would otherwise take 2816 registrars and try each for every pledge connection.
    for session in range(1, 65):
        entries = tuple(
            (
                Objective(AN_JOIN_REGISTRAR, 4, 1),
                Locator.ip(f"fd00::{session:x}:{i:x}", port=8443),
            )
            for i in range(1, 45)
        )
        finder_socket.send(Flood(session, ipaddress.IPv6Address(PROXY_LL), 0, entries).encode())
    found = await GraspFinder("lo", AN_JOIN_REGISTRAR).find(timeout=2)
    assert 0 < len(found) <= 64  # roles.discovery.MAX_CANDIDATES


async def test_finder_on_a_missing_interface_finds_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    finder = GraspFinder("zt-no-such-if0")
    assert await finder.find(timeout=5) == []
    assert "no network interface 'zt-no-such-if0'" in caplog.text


# ---------------------------------------------------------------------------------------------
# the announcer


def test_announcer_builds_link_local_floods(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grasp, "link_local_address", lambda interface: "fe80::42")
    announcer = GraspAnnouncer(AN_PROXY, port=4443, interface="eth0", ttl=2.5)
    first, second = announcer.flood(), announcer.flood()
    assert first.session_id != second.session_id
    assert first.initiator == ipaddress.IPv6Address("fe80::42")
    assert first.ttl == 2500
    ((objective, locator),) = first.entries
    assert (objective.name, objective.flags, objective.loop_count, objective.value) == (
        AN_PROXY,
        4,
        1,
        "BRSKI",
    )
    assert locator == Locator.ip("fe80::42", port=4443)
    assert decode_flood(first.encode()) == first
    # a routable address is announced as is, and is the initiator
    routable = GraspAnnouncer(AN_JOIN_REGISTRAR, "", host="fd00::7", port=8443, interface="eth0")
    flood = routable.flood()
    assert str(flood.initiator) == "fd00::7"
    assert flood.entries[0][1] == Locator.ip("fd00::7", port=8443)
    ipv4 = GraspAnnouncer(AN_PROXY, host="192.0.2.4", port=443, interface="eth0").flood()
    assert ipv4.entries[0][1] == Locator.ip("192.0.2.4", port=443)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"port": 0},
        {"port": 65536},
        {"port": 443, "interval": 0},
        {"port": 443, "ttl": -1},
        {"port": 443, "host": "reg.example.net"},
        {"port": 443, "protocol": 256},
        {"port": 443, "interface": ""},
    ],
)
def test_announcer_validates(kwargs: dict[str, object]) -> None:
    arguments: dict[str, object] = {"interface": "eth0", **kwargs}
    with pytest.raises(ValueError):
        GraspAnnouncer(AN_PROXY, **arguments)  # type: ignore[arg-type]


async def test_announcer_on_a_missing_interface_is_a_config_error() -> None:
    announcer = GraspAnnouncer(AN_PROXY, port=443, interface="zt-no-such-if0")
    with pytest.raises(ConfigError, match="no network interface"):
        await announcer.start()
    await announcer.close()

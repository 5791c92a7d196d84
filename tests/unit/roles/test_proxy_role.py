"""Join proxy policy (roles/proxy.py): limits, admission bursts, registrar choice and backoff,
listen and registrar address parsing."""

from __future__ import annotations

import pytest

from zerotouch_plugin.errors import ConfigError
from zerotouch_plugin.roles.discovery import Candidate, Method, Role
from zerotouch_plugin.roles.proxy import (
    FORGET_AFTER,
    TRIES_PER_CONNECTION,
    Admission,
    Endpoint,
    ProxyLimits,
    Refusal,
    RegistrarPool,
    parse_endpoint,
    registrar_from_url,
)


def registrar(host: str, port: int = 8443, scope: str | None = None) -> Candidate:
    return Candidate(Method.GRASP, Role.REGISTRAR, host, port, scope)


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("max_connections", 0, ValueError),
        ("max_connections", 1.5, TypeError),
        ("max_connections", True, TypeError),
        ("max_connections_per_ip", 0, ValueError),
        ("idle_timeout", 0, ValueError),
        ("connect_timeout", -1, ValueError),
        ("buffer_size", 0, ValueError),
        ("backoff", "1", TypeError),
        ("max_backoff", 0.5, ValueError),  # below backoff 1.0
    ],
)
def test_limits_refuse_bad_values(field: str, value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        ProxyLimits(**{field: value})  # type: ignore[arg-type]


def test_admission_refuses_above_the_limit_and_logs_once_per_burst() -> None:
    admission = Admission(2)
    assert admission.admit() == 0
    assert admission.admit() == 0
    refusals = [admission.admit() for _ in range(5)]
    assert refusals == [Refusal(log=True, active=2)] + [Refusal(log=False, active=2)] * 4
    assert admission.refused_total == 5
    admission.release()
    assert admission.admit() == 5  # the next admitted one reports the burst
    assert admission.admit() == Refusal(log=True, active=2)  # a new burst is logged again
    admission.release()
    admission.release()
    assert admission.active == 0
    with pytest.raises(ValueError, match="release without admit"):
        admission.release()


def test_admission_limits_each_address_to_its_share() -> None:
    admission = Admission(10, 2)
    assert [admission.admit("fe80::66%eth0") for _ in range(3)] == [
        0,
        0,
        Refusal(log=True, active=2, source=2),
    ]
    assert "from that address (--max-connections-per-ip)" in Refusal(True, 2, 2).reason
    assert admission.admit("fe80::1%eth0") == 1  # another pledge still gets in
    admission.release("fe80::66%eth0")
    assert admission.admit("fe80::66%eth0") == 0
    with pytest.raises(ValueError, match="release without admit"):
        admission.release("fe80::2%eth0")


def test_pool_sets_a_failed_registrar_aside_with_growing_backoff() -> None:
    a, b = registrar("fe80::1", scope="eth1"), registrar("fe80::2", scope="eth1")
    pool = RegistrarPool(ProxyLimits(backoff=1.0, max_backoff=3.0), (a, b))
    assert pool.usable(0.0) == [a, b]
    assert pool.failed(a, 10.0) == 1.0
    assert pool.usable(10.5) == [b]
    assert pool.set_aside_until(10.5) == 11.0
    assert pool.usable(11.0) == [a, b]
    assert pool.failed(a, 11.0) == 2.0
    assert pool.failed(a, 13.0) == 3.0  # capped at max_backoff
    assert pool.failed(b, 13.0) == 1.0
    assert pool.usable(13.5) == []
    pool.succeeded(a)
    assert pool.usable(13.5) == [a]
    assert pool.failed(a, 14.0) == 1.0  # success resets the count


def test_pool_offers_one_connection_a_bounded_number_of_registrars() -> None:
    many = tuple(registrar(f"fd00::{i:x}") for i in range(1, 65))
    pool = RegistrarPool(ProxyLimits(), many)
    assert pool.usable(0.0) == list(many[:TRIES_PER_CONNECTION])
    for candidate in many[:TRIES_PER_CONNECTION]:
        pool.failed(candidate, 0.0)
    assert pool.usable(0.5) == list(many[TRIES_PER_CONNECTION : 2 * TRIES_PER_CONNECTION])


def test_pool_update_keeps_backoff_of_registrars_still_announced() -> None:
    a, b, c = registrar("fe80::1", scope="e"), registrar("fe80::2", scope="e"), registrar("::1")
    pool = RegistrarPool(ProxyLimits(), (a, b))
    pool.failed(a, 0.0)
    pool.failed(b, 0.0)
    pool.update([a, c, c])
    assert pool.candidates == (a, c)
    assert pool.usable(0.5) == [c]  # a still set aside, b forgotten, c once
    pool.update([b])
    assert pool.usable(0.5) == [b]  # b came back without its old backoff


def test_pool_keeps_what_earlier_searches_heard_until_it_goes_silent() -> None:
    # each GRASP search returns its first batch: one registrar, not every one on the link
    a, b = registrar("fe80::1", scope="e"), registrar("fe80::2", scope="e")
    pool = RegistrarPool(ProxyLimits())
    pool.heard([b], 0.0)
    pool.heard([a], 6.0)
    pool.heard([a], 12.0)
    pool.failed(a, 12.0)
    assert pool.candidates == (b, a)
    assert pool.usable(12.5) == [b]  # a is set aside: b, heard earlier, is still there
    pool.heard([a], FORGET_AFTER + 1.0)
    assert pool.candidates == (a,)  # b went silent and dropped out
    many = [registrar(f"fd00::{i:x}") for i in range(1, 200)]
    pool.heard(many, FORGET_AFTER + 2.0)
    assert len(pool.candidates) <= 64


def test_pool_knows_a_registrar_by_its_address_not_its_announcement() -> None:
    first = Candidate(Method.GRASP, Role.REGISTRAR, "fe80::1", 8443, "e", source="session 1")
    again = Candidate(Method.GRASP, Role.REGISTRAR, "fe80::1", 8443, "e", source="session 2")
    other_port = Candidate(Method.GRASP, Role.REGISTRAR, "fe80::1", 9443, "e")
    pool = RegistrarPool(ProxyLimits(), (first,))
    pool.failed(first, 0.0)
    pool.update([again, first, other_port])
    assert pool.candidates == (again, other_port)  # one per address, first seen kept
    assert pool.usable(0.5) == [other_port]  # the re-announced one is still set aside


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8443", Endpoint("127.0.0.1", 8443)),
        ("[::]:0", Endpoint("::", 0)),
        ("[fe80::1%eth0]:4443", Endpoint("fe80::1", 4443, "eth0")),
    ],
)
def test_parse_endpoint(text: str, expected: Endpoint) -> None:
    endpoint = parse_endpoint(text)
    assert endpoint == expected
    assert endpoint.shown() == text


@pytest.mark.parametrize(
    "text",
    ["8443", "::1:8443", "[::1]:port", "[::1]:70000", "host.example:80", "[2001:db8::1%e]:1", ""],
)
def test_parse_endpoint_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match="listen"):
        parse_endpoint(text)


@pytest.mark.parametrize(
    ("url", "host", "port", "scope"),
    [
        ("https://127.0.0.1:8443", "127.0.0.1", 8443, None),
        ("https://[fe80::1%25eth1]:8443/", "fe80::1", 8443, "eth1"),
        ("https://[2001:db8::1]", "2001:db8::1", 443, None),
        ("https://registrar.example:9443", "registrar.example", 9443, None),
    ],
)
def test_registrar_from_url(url: str, host: str, port: int, scope: str | None) -> None:
    candidate = registrar_from_url(url)
    assert (candidate.host, candidate.port, candidate.scope) == (host, port, scope)
    assert (candidate.method, candidate.role) == (Method.CONFIGURED, Role.REGISTRAR)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8443",
        "https://127.0.0.1:8443/.well-known/brski",
        "https://127.0.0.1:99999",
        "https://[2001:db8::1%25eth0]:1",
        "https://",
    ],
)
def test_registrar_from_url_refuses(url: str) -> None:
    with pytest.raises(ConfigError, match="registrar URL"):
        registrar_from_url(url)

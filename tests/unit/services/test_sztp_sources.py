"""DHCP lease files as ISC dhclient writes them, read for RFC 8572 §8 URIs."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest

from tests.support.dhcp_replies import MAC, reply4, reply6
from zerotouch_plugin.artifacts.dhcp import (
    dhcp4_discover,
    dhcp4_reply_uris,
    dhcp6_information_request,
    dhcp6_reply_uris,
    encode_uri_list,
)
from zerotouch_plugin.errors import InvalidInput, NotFound, UpstreamUnavailable
from zerotouch_plugin.services.sztp_sources import _exchange, lease_uris

URI = "https://sztp.example:8443"
OTHER = "https://attacker.example"


def _lease(option: str) -> str:
    return (
        'lease {\n  interface "eth0";\n  fixed-address 192.0.2.9;\n'
        f"  option {option};\n  renew 4 2026/12/03 10:00:00;\n}}\n"
    )


def test_the_last_lease_with_the_option_counts(tmp_path: Path) -> None:
    old = encode_uri_list(["https://old.example"]).hex(":")
    new = encode_uri_list([URI]).hex(":")
    path = tmp_path / "dhclient.leases"
    path.write_text(_lease(f"sztp-redirect {old}") + _lease(f"unknown-143 {new}"))
    assert lease_uris(path) == (URI,)


def test_quoted_and_dhcpv6_values(tmp_path: Path) -> None:
    raw = encode_uri_list([URI])
    quoted = "".join(chr(b) if 32 <= b < 127 and b != 34 else f"\\{b:03o}" for b in raw)
    path = tmp_path / "dhclient6.leases"
    path.write_text(_lease(f'dhcp6.unknown-136 "{quoted}"'))
    assert lease_uris(path) == (URI,)


def test_a_lease_without_the_option_or_file(tmp_path: Path) -> None:
    path = tmp_path / "l"
    path.write_text(_lease("routers 192.0.2.1"))
    with pytest.raises(NotFound, match="no SZTP redirect option"):
        lease_uris(path)
    path.write_text(_lease("sztp-redirect what;ever"))
    with pytest.raises(InvalidInput, match="unreadable"):
        lease_uris(path)
    with pytest.raises(UpstreamUnavailable):
        lease_uris(tmp_path / "missing")


@pytest.mark.parametrize("value", ['"\\999"', '"\\777"', "0:zz", '"'])
def test_unreadable_values_are_refused(tmp_path: Path, value: str) -> None:
    path = tmp_path / "l"
    path.write_text(_lease(f"sztp-redirect {value}"))
    with pytest.raises(InvalidInput):
        lease_uris(path)


def _udp(family: socket.AddressFamily = socket.AF_INET) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1" if family is socket.AF_INET else "::1", 0))
    return sock


def test_a_malformed_reply_is_ignored_and_the_next_one_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Replies to our xid with a malformed option 143 (here an http URI, §8.3) come first,
    over real UDP: they are ignored, logged once and counted, and the exchange waits for
    the good one."""
    server, client = _udp(), _udp()
    with server:
        bad = reply4(7, 2, (143, encode_uri_list(["http://evil.example"])))
        good = reply4(7, 2, (143, encode_uri_list([URI])))
        for packet in (bad, bad, bad, good):
            server.sendto(packet, client.getsockname())
        uris = _exchange(
            client,
            lambda xid: dhcp4_discover(xid, MAC),
            dhcp4_reply_uris,
            server.getsockname(),
            lambda: 7,
            timeout=2.0,
            attempts=1,
        )
    assert uris == (URI,)
    assert caplog.text.count("not an https") == 1  # one line, not one per packet
    assert "3 malformed DHCP replies ignored in all" in caplog.text


def test_a_dhcpv6_reply_for_another_client_is_not_taken() -> None:
    """RFC 8415 §16.10 over real UDP on ::1: a Reply to our transaction-id that names another
    client's DUID (a guess of the xid, or a reply meant for a neighbour) comes first and is
    discarded; the Reply that echoes our DUID-LL counts."""
    server, client = _udp(socket.AF_INET6), _udp(socket.AF_INET6)
    ours = struct.pack("!HH", 3, 1) + MAC
    with server:
        forged = reply6(7, (2, b"s"), (1, ours[:-1] + b"\xff"), (136, encode_uri_list([OTHER])))
        good = reply6(7, (2, b"s"), (1, ours), (136, encode_uri_list([URI])))
        for packet in (forged, good):
            server.sendto(packet, client.getsockname())
        uris = _exchange(
            client,
            lambda xid: dhcp6_information_request(xid, MAC),
            lambda packet, xid: dhcp6_reply_uris(packet, xid, MAC),
            server.getsockname(),
            lambda: 7,
            timeout=2.0,
            attempts=1,
        )
    assert uris == (URI,)

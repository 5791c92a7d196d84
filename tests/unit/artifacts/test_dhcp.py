"""RFC 8572 §8 option values and the DHCPv4 messages of the device's own exchange."""

from __future__ import annotations

import struct

import pytest

from tests.support.dhcp_replies import MAC
from tests.support.dhcp_replies import reply4 as _reply
from tests.support.dhcp_replies import reply6 as _reply6
from zerotouch_plugin.artifacts.dhcp import (
    OPTION_V4_SZTP_REDIRECT,
    decode_uri_list,
    dhcp4_discover,
    dhcp4_reply_uris,
    dhcp6_information_request,
    dhcp6_reply_uris,
    encode_uri_list,
)
from zerotouch_plugin.errors import InvalidInput

URIS = ("https://sztp1.example.net:8443", "https://[2001:db8::1]")


def test_uri_list_round_trips() -> None:
    data = encode_uri_list(URIS)
    assert data[:2] == struct.pack("!H", len(URIS[0]))
    assert decode_uri_list(data) == URIS
    assert decode_uri_list(b"") == ()


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x00", "truncated"),
        (b"\x00\x20https://short", "shorter"),
        (b"\x00\x00", "shorter"),
        (encode_uri_list(["http://plain.example"]), "not an https"),
        (b"\x00\x0ahttps://\xff\xfe", "not ASCII"),
        (encode_uri_list(["https://h.example"] * 33), "more than 32"),
        (encode_uri_list(["https://Z2001:db8::1]:443"]), "not an https"),
        (encode_uri_list(["https://h.example:99999"]), "not an https"),
        (encode_uri_list(["https://h.example/\n"]), "not an https"),
    ],
)
def test_bad_uri_lists_are_refused(data: bytes, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        decode_uri_list(data)


def test_discover_asks_for_option_143() -> None:
    packet = dhcp4_discover(0x1234, MAC)
    assert packet[0] == 1 and packet[28:34] == MAC
    options = packet[240:]
    assert options[:3] == bytes([53, 1, 1])
    assert OPTION_V4_SZTP_REDIRECT in options[5 : 5 + options[4]]


def test_offer_carries_the_uris_split_over_two_instances() -> None:
    value = encode_uri_list(URIS)
    half = len(value) // 2
    offer = _reply(7, 2, (143, value[:half]), (143, value[half:]))
    assert dhcp4_reply_uris(offer, 7) == URIS
    assert dhcp4_reply_uris(_reply(7, 5), 7) == ()  # an ack without the option


@pytest.mark.parametrize(
    "packet",
    [
        _reply(8, 2, (143, encode_uri_list(URIS))),  # another client's transaction
        _reply(7, 6, (143, encode_uri_list(URIS))),  # a NAK
        _reply(7, 2, op=1),  # a request, not a reply
        b"\x02" * 100,  # too short
        _reply(7, 2)[:-1] + b"\x8f\x40",  # an option longer than the packet
    ],
)
def test_other_packets_are_not_answers(packet: bytes) -> None:
    assert dhcp4_reply_uris(packet, 7) is None


def test_information_request_asks_for_option_136() -> None:
    packet = dhcp6_information_request(0xABCDEF, MAC)
    assert packet[0] == 11 and packet[1:4] == bytes.fromhex("abcdef")
    assert struct.pack("!HHH", 6, 2, 136) in packet  # ORO
    assert struct.pack("!HHHH", 1, 10, 3, 1) + MAC in packet  # DUID-LL client identifier
    with pytest.raises(ValueError):
        dhcp6_information_request(1 << 24, MAC)


CLIENT = (1, struct.pack("!HH", 3, 1) + MAC)  # our DUID-LL, as the request carries it
SERVER = (2, b"server-duid")


def test_dhcpv6_reply_carries_the_uris() -> None:
    value = encode_uri_list(URIS)
    reply = _reply6(5, SERVER, CLIENT, (136, value[:7]), (136, value[7:]))
    assert dhcp6_reply_uris(reply, 5, MAC) == URIS
    assert dhcp6_reply_uris(_reply6(5, CLIENT, (2, b"s")), 5, MAC) == ()
    assert dhcp6_reply_uris(_reply6(6, SERVER, CLIENT, (136, value)), 5, MAC) is None  # xid
    assert dhcp6_reply_uris(_reply6(5, SERVER, CLIENT, (136, value), kind=2), 5, MAC) is None
    assert dhcp6_reply_uris(_reply6(5, SERVER, CLIENT, (136, value))[:-1], 5, MAC) is None
    with pytest.raises(InvalidInput):
        dhcp6_reply_uris(_reply6(5, SERVER, CLIENT, (136, b"\x00\x05http:")), 5, MAC)


@pytest.mark.parametrize(
    "options",
    [
        (SERVER,),  # no client identifier
        (SERVER, (1, struct.pack("!HH", 3, 1) + bytes(6))),  # another client's
        (SERVER, CLIENT, (1, b"x")),  # ours and another
        (CLIENT,),  # no server identifier
    ],
)
def test_dhcpv6_reply_not_for_our_duid_is_discarded(options: tuple[tuple[int, bytes], ...]) -> None:
    """RFC 8415 §16.10: a Reply whose Client Identifier is missing or not ours, or without a
    Server Identifier, is discarded whatever it carries."""
    reply = _reply6(5, *options, (136, encode_uri_list(URIS)))
    assert dhcp6_reply_uris(reply, 5, MAC) is None

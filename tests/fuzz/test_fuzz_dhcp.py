"""DHCP for SZTP (RFC 8572 §8) under fuzzing: the bootstrap-server list of option 143/136 and
the DHCPv4 replies the device reads from the link decode or are refused with the project's
error (a reply: None when it is not one), in budget, and what decodes is https URIs only."""

from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.mutate import mutated_bytes
from tests.fuzz.oracle import handled
from tests.support.dhcp_replies import MAC, reply6
from zerotouch_plugin.artifacts.dhcp import (
    decode_uri_list,
    dhcp4_discover,
    dhcp4_reply_uris,
    dhcp6_reply_uris,
    encode_uri_list,
)
from zerotouch_plugin.errors import InvalidInput
from zerotouch_plugin.services.sztp_sources import lease_uris

URI_LISTS = [
    encode_uri_list(["https://sztp.example:8443"]),
    encode_uri_list(["https://[2001:db8::1]:443", "https://192.0.2.1"]),
]
XID = 0x5A17


def _offer(value: bytes) -> bytes:
    request = dhcp4_discover(XID, bytes(6))
    body = bytes([53, 1, 2])
    for start in range(0, len(value), 255):
        chunk = value[start : start + 255]
        body += bytes([143, len(chunk)]) + chunk
    return b"\x02" + request[1:236] + b"\x63\x82\x53\x63" + body + b"\xff"


OFFERS = [_offer(v) for v in URI_LISTS]


def _https_only(uris: tuple[str, ...]) -> None:
    assert all(urlsplit(u).scheme == "https" and urlsplit(u).hostname for u in uris)


def test_seeds_decode() -> None:
    assert all(decode_uri_list(v) for v in URI_LISTS)
    assert all(dhcp4_reply_uris(o, XID) for o in OFFERS)
    assert all(dhcp6_reply_uris(r, XID, MAC) for r in REPLIES6)


@given(mutated_bytes(URI_LISTS, der=False))
def test_uri_list_mutants_decode_or_refuse(case: tuple[int, bytes]) -> None:
    _, data = case
    result = handled(lambda: decode_uri_list(data), len(data), allowed=(InvalidInput,))
    if isinstance(result, tuple):
        _https_only(result)


@given(mutated_bytes(OFFERS, der=False))
def test_reply_mutants_decode_refuse_or_are_ignored(case: tuple[int, bytes]) -> None:
    _, data = case
    result = handled(lambda: dhcp4_reply_uris(data, XID), len(data), allowed=(InvalidInput,))
    if isinstance(result, tuple):
        _https_only(result)


@given(st.binary(max_size=2048))
def test_random_datagrams(data: bytes) -> None:
    handled(lambda: dhcp4_reply_uris(data, XID), len(data), allowed=(InvalidInput,))
    handled(lambda: dhcp6_reply_uris(data, XID, MAC), len(data), allowed=(InvalidInput,))


REPLIES6 = [
    reply6(XID, (1, b"\x00\x03\x00\x01" + MAC), (2, b"server"), (136, v)) for v in URI_LISTS
]


@given(mutated_bytes(REPLIES6, der=False))
def test_dhcpv6_reply_mutants(case: tuple[int, bytes]) -> None:
    _, data = case
    result = handled(lambda: dhcp6_reply_uris(data, XID, MAC), len(data), allowed=(InvalidInput,))
    if isinstance(result, tuple):
        _https_only(result)


@given(st.text(max_size=300))
def test_lease_files(value: str) -> None:
    """A lease file is written by the OS's DHCP client from what the server sent."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "dhclient.leases"
        path.write_text(f"lease {{\n  option sztp-redirect {value};\n}}\n", errors="replace")
        result = handled(lambda: lease_uris(path), len(value) * 4 + 64)
        if isinstance(result, tuple):
            _https_only(result)

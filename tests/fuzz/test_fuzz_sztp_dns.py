"""SZTP data from DNS (RFC 8572 §4.2) under fuzzing: TXT records (each a list of strings)
decode into bootstrapping data or are refused with the project's error, in budget; SRV
answers become redirect information to host names only; multicast DNS packets are read or
ignored, never raise."""

from __future__ import annotations

from base64 import b64encode

import dns.message
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.oracle import handled
from zerotouch_plugin.artifacts import sztp
from zerotouch_plugin.artifacts.sztp import GetBootstrappingDataOutput, RedirectInformation
from zerotouch_plugin.errors import InvalidInput, NotFound, PayloadTooLarge, SchemaError
from zerotouch_plugin.roles.discovery import is_host_name
from zerotouch_plugin.services.discovery.dnssd import Srv
from zerotouch_plugin.services.sztp_dns import (
    _read_mdns,
    parse_txt,
    srv_output,
)

KEYS = st.sampled_from([b"ci=", b"oc=", b"ov=", b"CI=", b"x=", b"", b"ci", b"c"])
STRING = st.binary(max_size=255)
RECORD = st.tuples(KEYS, st.lists(STRING, max_size=12)).map(lambda kv: [kv[0], *kv[1]])


@given(st.lists(RECORD, max_size=12), st.booleans())
def test_txt_records_decode_or_refuse(records: list[list[bytes]], base64: bool) -> None:
    if base64:
        records = [[r[0], b64encode(b"".join(r[1:]))] for r in records]
    size = sum(len(s) for r in records for s in r)
    # SchemaError: conveyed information the YANG of the output refuses (RFC 8572 §7.1)
    allowed = (InvalidInput, NotFound, PayloadTooLarge, SchemaError)
    result = handled(lambda: parse_txt(records), size, allowed=allowed)
    if isinstance(result, GetBootstrappingDataOutput):
        assert result.conveyed_information
        assert (result.owner_certificate is None) == (result.ownership_voucher is None)


SRV = st.builds(
    Srv,
    st.integers(0, 65535),
    st.integers(0, 65535),
    st.integers(-1, 70000),
    st.text(max_size=80),
)


@given(st.lists(SRV, max_size=50))
def test_srv_answers_give_redirects_to_host_names_only(records: list[Srv]) -> None:
    result = handled(lambda: srv_output(records), 80 * len(records) + 1, allowed=(NotFound,))
    if isinstance(result, GetBootstrappingDataOutput):
        info = sztp.read_unsigned_conveyed_information(result.conveyed_information)
        assert isinstance(info, RedirectInformation)
        for server in info.bootstrap_servers:
            assert is_host_name(server.address) and 0 < server.port < 65536


QUERY = dns.message.make_query("SN-1._sztp.local", "TXT")


@given(st.binary(max_size=10000))
def test_mdns_packets_are_read_or_ignored(packet: bytes) -> None:
    found = _read_mdns(QUERY.id.to_bytes(2, "big") + b"\x84\x00" + packet, QUERY)
    if found is not None:
        assert all(getattr(r, "rdtype", None) == QUERY.question[0].rdtype for r in found[0])

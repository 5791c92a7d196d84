"""SZTP data from DNS (RFC 8572 §4.2) under fuzzing: TXT strings decode into bootstrapping
data or are refused with the project's error, in budget; SRV answers give https URLs only."""

from __future__ import annotations

from base64 import b64encode
from urllib.parse import urlsplit

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.oracle import handled
from zerotouch_plugin.artifacts.sztp import GetBootstrappingDataOutput
from zerotouch_plugin.errors import InvalidInput, NotFound, PayloadTooLarge, SchemaError
from zerotouch_plugin.services.sztp_dns import SrvRecord, bootstrap_urls, parse_txt

KEYS = st.sampled_from([b"ci=", b"oc=", b"ov=", b"CI=", b"x=", b"", b"ci"])
STRINGS = st.lists(
    st.tuples(KEYS, st.binary(max_size=252)).map(lambda kv: kv[0] + kv[1]), max_size=40
)


@given(STRINGS, st.booleans())
def test_txt_strings_decode_or_refuse(strings: list[bytes], base64: bool) -> None:
    if base64:
        strings = [s[:3] + b64encode(s[3:])[:252] for s in strings]
    size = sum(len(s) for s in strings)
    # SchemaError: an owner certificate without its voucher, or the reverse (RFC 8572 §7.1)
    allowed = (InvalidInput, NotFound, PayloadTooLarge, SchemaError)
    result = handled(lambda: parse_txt(strings), size, allowed=allowed)
    if isinstance(result, GetBootstrappingDataOutput):
        assert result.conveyed_information


SRV = st.builds(
    SrvRecord,
    st.integers(0, 65535),
    st.integers(0, 65535),
    st.integers(-1, 70000),
    st.text(max_size=80),
)


@given(st.lists(SRV, max_size=50))
def test_srv_answers_give_https_urls_only(records: list[SrvRecord]) -> None:
    for url in bootstrap_urls(records):
        parts = urlsplit(url)
        assert parts.scheme == "https" and parts.hostname and parts.port

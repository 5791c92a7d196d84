"""The MASA keeps the parse of voucher-request bytes it has validated (the audit-log request
repeats the voucher's); a malformed request is refused every time, with its path."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.voucher_json import VR, voucher_request_json
from zerotouch_plugin.errors import SchemaError
from zerotouch_plugin.roles import masa


def content(**changes: Any) -> bytes:
    return voucher_request_json("prior-signed-voucher-request", b"\x30\x03cms", **changes)


@pytest.mark.parametrize(
    ("data", "path", "rule"),
    [
        (content(**{"serial-number": 12}), f"/{VR}/serial-number", "wrong type"),
        (content(**{"serial-number": None}), f"/{VR}/serial-number", "missing mandatory"),
        (content(extra="x"), f"/{VR}/extra", "unknown member"),
    ],
    ids=["wrong-type", "missing-leaf", "extra-leaf"],
)
def test_malformed_request_is_refused_each_time(data: bytes, path: str, rule: str) -> None:
    for _ in range(2):
        with pytest.raises(SchemaError) as info:
            masa._parse_request(data, "registrar voucher-request")
        assert str(info.value).startswith("registrar voucher-request: ")
        assert rule in str(info.value)
        assert info.value.path is not None and info.value.path.startswith(path)


def test_the_same_bytes_are_parsed_once() -> None:
    data = content(**{"serial-number": "SN-parse-once"})
    first = masa._parse_request(data, "registrar voucher-request")
    assert masa._parse_request(data, "prior-signed-voucher-request") is first
    assert first.serial_number == "SN-parse-once"
    other = masa._parse_request(content(**{"serial-number": "SN-other"}), "x")
    assert other is not first and other.serial_number == "SN-other"

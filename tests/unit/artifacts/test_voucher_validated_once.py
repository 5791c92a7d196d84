"""A parsed voucher-request is validated once, on the JSON as received, and still refused for
each way the JSON can be malformed; objects built afterwards in code are validated again."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from tests.support.voucher_json import VR, voucher_request_json
from zerotouch_plugin.artifacts import voucher as voucher_module
from zerotouch_plugin.artifacts.voucher import Assertion, VoucherRequest
from zerotouch_plugin.errors import SchemaError


def request_json(**changes: Any) -> bytes:
    return voucher_request_json("proximity-registrar-cert", b"\x30\x03der", **changes)


@pytest.mark.parametrize(
    ("data", "path", "rule"),
    [
        (request_json(**{"serial-number": 12}), f"/{VR}/serial-number", "wrong type"),
        (request_json(**{"created-on": 20261126}), f"/{VR}/created-on", "wrong type"),
        (request_json(**{"serial-number": None}), f"/{VR}/serial-number", "missing mandatory"),
        (request_json(extra="x"), f"/{VR}/extra", "unknown member"),
        (request_json(assertion="trusted"), f"/{VR}/assertion", "not in enumeration"),
        (request_json(**{"proximity-registrar-cert": "%%%"}), f"/{VR}/", "binary"),
    ],
    ids=["serial-int", "created-on-int", "no-serial", "extra-leaf", "assertion", "binary"],
)
def test_malformed_voucher_request_is_refused_with_path_and_rule(
    data: bytes, path: str, rule: str
) -> None:
    with pytest.raises(SchemaError) as info:
        VoucherRequest.from_json(data)
    assert info.value.path is not None and info.value.path.startswith(path)
    assert rule in str(info.value)


def test_parsing_validates_the_received_json_once(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    real = voucher_module.validate_artifact

    def counting(obj: Any, kind: Any, **kwargs: Any) -> None:
        seen.append(obj)
        real(obj, kind, **kwargs)

    monkeypatch.setattr(voucher_module, "validate_artifact", counting)
    data = request_json()
    VoucherRequest.from_json(data)
    assert seen == [json.loads(data)]
    VoucherRequest(serial_number="SN-2", assertion=Assertion.PROXIMITY)
    assert len(seen) == 2  # built in code: validated


def test_objects_built_from_a_parsed_one_are_validated_again() -> None:
    request = VoucherRequest.from_json(request_json())
    with pytest.raises(ValueError, match="YANG string"):
        dataclasses.replace(request, serial_number="bad\x00serial")
    # a parse that failed leaves later builds validated too
    with pytest.raises(SchemaError):
        VoucherRequest.from_json(request_json(**{"created-on": "2026-13-45T00:00:00Z"}))
    with pytest.raises(ValueError):
        dataclasses.replace(request, serial_number="bad\x00serial")

"""RESTCONF wire rules without a server: the RFC 8040 §7 status of each error, the
``ietf-restconf:errors`` documents, and the refusals of hostile bodies."""

from __future__ import annotations

import json

import pytest
from lxml import etree

from zerotouch_plugin.device.schema import DeviceSchema
from zerotouch_plugin.errors import (
    InvalidInput,
    LockDenied,
    NotAcceptable,
    ResourceMissing,
    SchemaError,
    UnsupportedMediaType,
)
from zerotouch_plugin.services.restconf.wire import (
    RESTCONF_NS,
    error_type,
    errors_json,
    errors_xml,
    parse_json,
    parse_xml,
    single_member,
    status_and_tag,
)


def test_status_and_tag_follow_rfc8040_section7() -> None:
    assert status_and_tag(LockDenied("locked")) == (409, "lock-denied")
    assert status_and_tag(ResourceMissing("gone")) == (404, "invalid-value")
    # failed media negotiation keeps its own status (RFC 8040 §5.2)
    assert status_and_tag(NotAcceptable("no")) == (406, "invalid-value")
    assert status_and_tag(UnsupportedMediaType("no")) == (415, "invalid-value")
    assert error_type(InvalidInput("x")) == "protocol"
    assert error_type(SchemaError("x")) == "application"


def test_error_documents_carry_path_and_message(schema: DeviceSchema) -> None:
    exc = SchemaError("bad value", path="/ietf-system:system/hostname")
    doc = json.loads(errors_json("application", "invalid-value", exc))
    (error,) = doc["ietf-restconf:errors"]["error"]
    assert error["error-path"] == "/ietf-system:system/hostname"
    assert error["error-message"] == "bad value"
    root = etree.fromstring(errors_xml(schema, "application", "invalid-value", exc))
    path = root.find(f"{{{RESTCONF_NS}}}error/{{{RESTCONF_NS}}}error-path")
    assert path is not None
    assert path.nsmap["ietf-system"] == "urn:ietf:params:xml:ns:yang:ietf-system"


@pytest.mark.parametrize(
    "body",
    [
        b"<a>",
        b'<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>',
    ],
)
def test_hostile_xml_is_refused(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_xml(body)


@pytest.mark.parametrize("body", [b"{", b"[" * 100_000, b"1" * 5000])
def test_hostile_json_is_refused(body: bytes) -> None:
    with pytest.raises(InvalidInput, match="not valid JSON"):
        parse_json(body)


def test_single_member_is_module_qualified() -> None:
    assert single_member({"ietf-system:system": {}}) == ("ietf-system:system", {})
    with pytest.raises(InvalidInput, match="qualified"):
        single_member({"system": {}})
    with pytest.raises(InvalidInput, match="exactly one member"):
        single_member({"a:b": 1, "a:c": 2})

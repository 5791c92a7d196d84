"""XML <-> RFC 7951 conversion through the schema (device/xmlcodec.py)."""

from __future__ import annotations

import pytest
from lxml import etree

from zerotouch_plugin.device.edit import OPERATION, apply_edit
from zerotouch_plugin.device.schema import DeviceSchema
from zerotouch_plugin.device.xmlcodec import tree_from_xml, tree_to_xml
from zerotouch_plugin.errors import SchemaError

TREE = {
    "ietf-system:system": {
        "hostname": "a&b",
        "clock": {"timezone-utc-offset": -60},
        "dns-resolver": {"search": ["x.example", "y.example"]},
    },
    "ietf-interfaces:interfaces": {
        "interface": [{"enabled": False, "type": "iana-if-type:ethernetCsmacd", "name": "e0"}]
    },
}


IFACE = (
    '<interfaces xmlns="urn:ietf:params:xml:ns:yang:ietf-interfaces" '
    'xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" '
    'xmlns:t="urn:ietf:params:xml:ns:yang:iana-if-type">'
    "<interface><name>e0</name><type>t:ethernetCsmacd</type>{}</interface></interfaces>"
)


def _parse(schema: DeviceSchema, xml: str, **kwargs: bool) -> dict[str, object]:
    return tree_from_xml(schema, etree.fromstring(f"<config>{xml}</config>"), **kwargs)


def test_round_trip_keeps_types_and_identities(schema: DeviceSchema) -> None:
    xml = tree_to_xml(schema, TREE)
    assert "<interface><name>e0</name><enabled>" in xml  # RFC 7950 §7.8.5: keys first
    assert "ianaift:ethernetCsmacd" in xml and "a&amp;b" in xml
    assert _parse(schema, xml) == TREE


def test_identity_prefix_is_resolved_through_the_element_namespaces(schema: DeviceSchema) -> None:
    xml = (
        '<interfaces xmlns="urn:ietf:params:xml:ns:yang:ietf-interfaces" xmlns:t="urn:ietf:params:'
        'xml:ns:yang:iana-if-type"><interface><name>e1</name><type>t:other</type></interface>'
        "</interfaces>"
    )
    tree = _parse(schema, xml)
    assert tree["ietf-interfaces:interfaces"] == {
        "interface": [{"name": "e1", "type": "iana-if-type:other"}]
    }


def test_operation_attributes_become_annotations(schema: DeviceSchema) -> None:
    xml = (
        '<system xmlns="urn:ietf:params:xml:ns:yang:ietf-system" '
        'xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="replace">'
        '<contact nc:operation="delete"/></system>'
    )
    tree = _parse(schema, xml, operations=True)
    assert tree == {
        "ietf-system:system": {
            "@": {OPERATION: "replace"},
            "contact": None,
            "@contact": {OPERATION: "delete"},
        }
    }


@pytest.mark.parametrize("text", ["", " \n "])
@pytest.mark.parametrize("operation", ["delete", "remove"])
def test_an_empty_leaf_deleted_or_removed_needs_no_value_of_its_type(
    schema: DeviceSchema, operation: str, text: str
) -> None:
    """<enabled nc:operation="delete"/> was parsed as a boolean first and refused with
    invalid-value: only string leaves could be deleted the usual way (RFC 6241 §7.2)."""
    stored = _parse(schema, IFACE.format("<enabled>false</enabled>"))
    base = apply_edit(schema, {}, stored)
    edit = _parse(
        schema,
        IFACE.format(f'<enabled nc:operation="{operation}">{text}</enabled>'),
        operations=True,
    )
    (entry,) = apply_edit(schema, base, edit)["ietf-interfaces:interfaces"]["interface"]
    assert "enabled" not in entry
    with pytest.raises(SchemaError, match="boolean"):  # a value, when given, is still checked
        _parse(
            schema,
            IFACE.format(f'<enabled nc:operation="{operation}">x</enabled>'),
            operations=True,
        )


@pytest.mark.parametrize(
    ("xml", "path"),
    [
        ('<system xmlns="urn:example"/>', "/system"),
        ("<system/>", "/system"),
        (
            '<system xmlns="urn:ietf:params:xml:ns:yang:ietf-system"><colour/></system>',
            "/ietf-system:system/colour",
        ),
        (
            '<system xmlns="urn:ietf:params:xml:ns:yang:ietf-system"><clock>'
            "<timezone-utc-offset>soon</timezone-utc-offset></clock></system>",
            "/ietf-system:system/clock/timezone-utc-offset",
        ),
        (
            '<system xmlns="urn:ietf:params:xml:ns:yang:ietf-system"><hostname>a</hostname>'
            "<hostname>b</hostname></system>",
            "/ietf-system:system/hostname",
        ),
    ],
)
def test_bad_xml_is_a_schema_error_with_path(schema: DeviceSchema, xml: str, path: str) -> None:
    with pytest.raises(SchemaError) as err:
        _parse(schema, xml)
    assert err.value.path == path

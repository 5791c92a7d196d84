"""Subtree filtering exactly per RFC 6241 §6 (services/netconf/subtree.py), in memory."""

from __future__ import annotations

from typing import Any

import pytest
from lxml import etree

from zerotouch_plugin.device.schema import DeviceSchema
from zerotouch_plugin.services.netconf.subtree import apply_subtree_filter, parse_subtree_filter

IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
SYS = "urn:ietf:params:xml:ns:yang:ietf-system"
ETH = "iana-if-type:ethernetCsmacd"

DATA: dict[str, Any] = {
    "ietf-system:system": {
        "hostname": "dev1",
        "contact": "noc",
        "dns-resolver": {"search": ["a.example", "b.example"]},
    },
    "ietf-interfaces:interfaces": {
        "interface": [
            {"name": "eth0", "type": ETH, "enabled": True, "description": "uplink"},
            {"name": "eth1", "type": ETH, "enabled": False},
            {"name": "lo", "type": "iana-if-type:softwareLoopback", "enabled": True},
        ]
    },
}


def _filter(schema: DeviceSchema, body: str) -> dict[str, Any]:
    element = etree.fromstring(f'<filter type="subtree">{body}</filter>')
    return apply_subtree_filter(schema, DATA, parse_subtree_filter(element))


def _names(result: dict[str, Any]) -> list[str]:
    return [e["name"] for e in result.get("ietf-interfaces:interfaces", {}).get("interface", [])]


def test_empty_filter_selects_nothing(schema: DeviceSchema) -> None:
    assert _filter(schema, "") == {}  # §6.4.2


def test_selection_of_a_top_level_container(schema: DeviceSchema) -> None:
    assert _filter(schema, f'<system xmlns="{SYS}"/>') == {
        "ietf-system:system": DATA["ietf-system:system"]
    }


def test_namespace_selection(schema: DeviceSchema) -> None:
    assert _filter(schema, '<system xmlns="urn:example:other"/>') == {}
    # §6.2.1: no namespace matches any namespace
    assert "ietf-system:system" in _filter(schema, '<system xmlns=""/>')


def test_selection_nodes_inside_containment(schema: DeviceSchema) -> None:
    got = _filter(schema, f'<system xmlns="{SYS}"><hostname/><location/></system>')
    assert got == {"ietf-system:system": {"hostname": "dev1"}}


def test_containment_without_matches_is_omitted(schema: DeviceSchema) -> None:
    assert _filter(schema, f'<system xmlns="{SYS}"><location/></system>') == {}


def test_content_match_on_key_returns_whole_entry(schema: DeviceSchema) -> None:
    got = _filter(
        schema, f'<interfaces xmlns="{IF}"><interface><name>eth0</name></interface></interfaces>'
    )
    assert got["ietf-interfaces:interfaces"]["interface"] == [
        DATA["ietf-interfaces:interfaces"]["interface"][0]
    ]


def test_content_match_with_selection_returns_only_selected(schema: DeviceSchema) -> None:
    body = (
        f'<interfaces xmlns="{IF}"><interface><name>eth1</name><enabled/></interface></interfaces>'
    )
    got = _filter(schema, body)
    assert got["ietf-interfaces:interfaces"]["interface"] == [{"name": "eth1", "enabled": False}]


def test_content_match_nodes_are_anded(schema: DeviceSchema) -> None:
    body = (
        f'<interfaces xmlns="{IF}"><interface><enabled>true</enabled>'
        '<type xmlns:ift="urn:ietf:params:xml:ns:yang:iana-if-type">ift:ethernetCsmacd</type>'
        "</interface></interfaces>"
    )
    assert _names(_filter(schema, body)) == ["eth0"]  # typed compare: prefix and boolean


def test_content_match_value_compared_as_yang_value(schema: DeviceSchema) -> None:
    body = f'<interfaces xmlns="{IF}"><interface><enabled> false </enabled><name/></interface>'
    body += "</interfaces>"
    assert _filter(schema, body)["ietf-interfaces:interfaces"]["interface"] == [
        {"name": "eth1", "enabled": False}
    ]


def test_sibling_containment_nodes_are_ored(schema: DeviceSchema) -> None:
    body = (
        f'<interfaces xmlns="{IF}"><interface><name>eth0</name><type/></interface>'
        "<interface><name>lo</name><enabled/></interface></interfaces>"
    )
    got = _filter(schema, body)["ietf-interfaces:interfaces"]["interface"]
    assert got == [
        {"name": "eth0", "type": ETH},
        {"name": "lo", "enabled": True},
    ]


def test_same_entry_selected_twice_is_merged(schema: DeviceSchema) -> None:
    body = (
        f'<interfaces xmlns="{IF}"><interface><name>eth0</name><type/></interface>'
        "<interface><name>eth0</name><description/></interface></interfaces>"
    )
    got = _filter(schema, body)["ietf-interfaces:interfaces"]["interface"]
    assert got == [{"name": "eth0", "type": ETH, "description": "uplink"}]


def test_failed_content_match_excludes_parent(schema: DeviceSchema) -> None:
    body = f'<system xmlns="{SYS}"><hostname>other</hostname><contact/></system>'
    assert _filter(schema, body) == {}


def test_leaf_list_content_match(schema: DeviceSchema) -> None:
    body = f'<system xmlns="{SYS}"><dns-resolver><search>b.example</search></dns-resolver></system>'
    got = _filter(schema, body)
    assert got["ietf-system:system"]["dns-resolver"]["search"] == ["a.example", "b.example"]
    miss = f'<system xmlns="{SYS}"><dns-resolver><search>c.example</search></dns-resolver></system>'
    assert _filter(schema, miss) == {}


def test_unknown_element_selects_nothing(schema: DeviceSchema) -> None:
    assert _filter(schema, f'<system xmlns="{SYS}"><colour/></system>') == {}


@pytest.mark.parametrize("bad_value", ["maybe", "12x"])
def test_unparsable_content_match_never_matches(schema: DeviceSchema, bad_value: str) -> None:
    body = f'<interfaces xmlns="{IF}"><interface><enabled>{bad_value}</enabled></interface>'
    body += "</interfaces>"
    assert _filter(schema, body) == {}

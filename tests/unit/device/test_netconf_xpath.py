"""XPath filtering (RFC 6241 §8.9): selected nodes with ancestors and list keys."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from zerotouch_plugin.device.schema import DeviceSchema
from zerotouch_plugin.errors import SchemaError
from zerotouch_plugin.services.netconf.xpath import apply_xpath_filter

NS = {
    "if": "urn:ietf:params:xml:ns:yang:ietf-interfaces",
    "sys": "urn:ietf:params:xml:ns:yang:ietf-system",
}
ETH = "iana-if-type:ethernetCsmacd"
DATA: dict[str, Any] = {
    "ietf-system:system": {"hostname": "dev1", "contact": "noc"},
    "ietf-interfaces:interfaces": {
        "interface": [
            {"name": "eth0", "type": ETH, "description": "uplink", "enabled": True},
            {"name": "eth1", "type": ETH, "enabled": False},
        ]
    },
}


def test_leaf_with_ancestors_and_keys(schema: DeviceSchema) -> None:
    got = apply_xpath_filter(
        schema, DATA, "/if:interfaces/if:interface[if:name='eth0']/if:description", NS
    )
    assert got == {
        "ietf-interfaces:interfaces": {"interface": [{"name": "eth0", "description": "uplink"}]}
    }


def test_predicate_and_union(schema: DeviceSchema) -> None:
    select = "/if:interfaces/if:interface[if:enabled='false'] | /sys:system/sys:hostname"
    got = apply_xpath_filter(schema, DATA, select, NS)
    assert got == {
        "ietf-interfaces:interfaces": {
            "interface": [DATA["ietf-interfaces:interfaces"]["interface"][1]]
        },
        "ietf-system:system": {"hostname": "dev1"},
    }


def test_several_leaves_of_one_entry_merge(schema: DeviceSchema) -> None:
    got = apply_xpath_filter(schema, DATA, "/if:interfaces/if:interface/if:type", NS)
    assert got["ietf-interfaces:interfaces"]["interface"] == [
        {"name": "eth0", "type": ETH},
        {"name": "eth1", "type": ETH},
    ]


def test_root_and_empty_selection(schema: DeviceSchema) -> None:
    assert apply_xpath_filter(schema, DATA, "/", NS) == DATA
    assert apply_xpath_filter(schema, DATA, "/sys:system/sys:location", NS) == {}


def test_source_tree_is_never_modified(schema: DeviceSchema) -> None:
    before = copy.deepcopy(DATA)
    select = "/sys:system | /sys:system/sys:hostname | /if:interfaces/if:interface[if:name='eth0']"
    got = apply_xpath_filter(schema, DATA, select, NS)
    got["ietf-system:system"]["hostname"] = "changed"
    assert before == DATA


@pytest.mark.parametrize("select", ["/nope:system", "/sys:system[", "count(/sys:system)"])
def test_bad_expressions(schema: DeviceSchema, select: str) -> None:
    with pytest.raises(SchemaError):
        apply_xpath_filter(schema, DATA, select, NS)

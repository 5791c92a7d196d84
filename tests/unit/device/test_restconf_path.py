"""RFC 8040 §3.5.3 resource paths resolved against the device schema and a tree, in memory."""

from __future__ import annotations

from typing import Any

import pytest
from yangson.schemanode import ContainerNode, LeafListNode, LeafNode, ListNode

from zerotouch_plugin.device.restconf_path import ABSENT, resolve_path
from zerotouch_plugin.device.schema import DeviceSchema
from zerotouch_plugin.errors import SchemaError, UnsupportedOperation

TREE: dict[str, Any] = {
    "ietf-system:system": {
        "hostname": "device-1",
        "dns-resolver": {"search": ["example.com"]},
    },
    "ietf-interfaces:interfaces": {
        "interface": [
            {"name": "eth0", "type": "iana-if-type:ethernetCsmacd"},
            {"name": "eth 1", "type": "iana-if-type:ethernetCsmacd", "description": "x"},
        ]
    },
}


def test_empty_path_is_the_datastore(schema: DeviceSchema) -> None:
    target = resolve_path(schema, TREE, "")
    assert target.node is None
    assert target.qualified == "ietf-restconf:data"
    assert target.value is TREE
    assert target.present


def test_leaf_in_a_container(schema: DeviceSchema) -> None:
    target = resolve_path(schema, TREE, "/ietf-system:system/hostname")
    assert isinstance(target.node, LeafNode)
    assert target.qualified == "ietf-system:hostname"
    assert target.member == "hostname"
    assert (target.value, target.present, target.entry) == ("device-1", True, False)


def test_list_entry_by_percent_encoded_key(schema: DeviceSchema) -> None:
    target = resolve_path(schema, TREE, "/ietf-interfaces:interfaces/interface=eth%201")
    assert isinstance(target.node, ListNode)
    assert target.entry
    assert target.value["description"] == "x"
    missing = resolve_path(schema, TREE, "/ietf-interfaces:interfaces/interface=eth9")
    assert missing.value is ABSENT
    assert not missing.present


def test_leaf_list_entry(schema: DeviceSchema) -> None:
    path = "/ietf-system:system/dns-resolver/search=example.com"
    target = resolve_path(schema, TREE, path)
    assert isinstance(target.node, LeafListNode)
    assert (target.item, target.value, target.present) == ("example.com", "example.com", True)
    other = resolve_path(schema, TREE, "/ietf-system:system/dns-resolver/search=example.org")
    assert other.item == "example.org"
    assert other.value is ABSENT


def test_a_zero_length_key_or_leaf_list_value(schema: DeviceSchema) -> None:
    """RFC 8040 §3.5.3: ``list=`` names the entry whose key is the empty string."""
    tree = {
        "ietf-system:system": {"dns-resolver": {"search": ["", "example.com"]}},
        "ietf-interfaces:interfaces": {
            "interface": [{"name": "", "type": "iana-if-type:ethernetCsmacd", "description": "x"}]
        },
    }
    entry = resolve_path(schema, tree, "/ietf-interfaces:interfaces/interface=")
    assert entry.entry
    assert entry.value["description"] == "x"
    leaf = resolve_path(schema, tree, "/ietf-interfaces:interfaces/interface=/description")
    assert (leaf.value, leaf.present) == ("x", True)
    item = resolve_path(schema, tree, "/ietf-system:system/dns-resolver/search=")
    assert (item.item, item.value, item.present) == ("", "", True)
    assert resolve_path(schema, TREE, "/ietf-interfaces:interfaces/interface=").value is ABSENT


def test_absent_non_presence_container_reads_as_empty(schema: DeviceSchema) -> None:
    # RFC 7950 §7.5.1: it exists whenever its parent does, but it is not in the tree.
    target = resolve_path(schema, {"ietf-system:system": {}}, "/ietf-system:system/clock")
    assert isinstance(target.node, ContainerNode)
    assert target.value == {}
    assert not target.present


def test_schema_only_resolution_has_no_value(schema: DeviceSchema) -> None:
    target = resolve_path(schema, None, "/ietf-system:system/hostname")
    assert isinstance(target.node, LeafNode)
    assert target.value is ABSENT
    assert not target.present


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/ietf-system:nothing", SchemaError),
        ("/ietf-system:system/hostname/more", SchemaError),
        ("/ietf-system:system/restart", SchemaError),
        ("/ietf-system:system-restart", UnsupportedOperation),  # an operation, not data
    ],
)
def test_bad_paths_are_refused(schema: DeviceSchema, path: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        resolve_path(schema, TREE, path)

"""A RESTCONF list-entry path (RFC 8040 §3.5.3) in a long list is found by its key index,
also after edits that add, delete and change entries."""

from __future__ import annotations

from typing import Any

from zerotouch_plugin.device.edit import OPERATION, apply_edit
from zerotouch_plugin.device.restconf_path import resolve_path
from zerotouch_plugin.device.schema import DeviceSchema

ETH = "iana-if-type:ethernetCsmacd"
TREE: dict[str, Any] = {
    "ietf-interfaces:interfaces": {
        "interface": [{"name": f"eth{i}", "type": ETH} for i in range(300)]
    }
}


def _at(schema: DeviceSchema, tree: dict[str, Any], name: str) -> Any:
    target = resolve_path(schema, tree, f"/ietf-interfaces:interfaces/interface={name}")
    return target.value if target.present else None


def test_an_entry_of_a_long_list_by_its_key(schema: DeviceSchema) -> None:
    assert _at(schema, TREE, "eth250") == {"name": "eth250", "type": ETH}
    assert _at(schema, TREE, "eth0") == {"name": "eth0", "type": ETH}
    assert _at(schema, TREE, "eth300") is None


def test_after_edits_the_path_finds_what_the_list_holds(schema: DeviceSchema) -> None:
    edit = {
        "ietf-interfaces:interfaces": {
            "interface": [
                {"name": "eth7", "@": {OPERATION: "delete"}},
                {"name": "new", "type": ETH},
                {"name": "eth8", "description": "changed"},
            ]
        }
    }
    edited = apply_edit(schema, TREE, edit)
    assert _at(schema, edited, "eth7") is None
    assert _at(schema, edited, "new") == {"name": "new", "type": ETH}
    assert _at(schema, edited, "eth8") == {"name": "eth8", "type": ETH, "description": "changed"}
    assert _at(schema, edited, "eth299") == {"name": "eth299", "type": ETH}
    assert _at(schema, TREE, "eth7") == {"name": "eth7", "type": ETH}

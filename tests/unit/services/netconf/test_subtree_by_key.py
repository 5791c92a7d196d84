"""Subtree filters that name a list entry by its key find it through the list's key index:
the answers are those of RFC 6241 §6 on every entry, for a long list and after edits."""

from __future__ import annotations

from typing import Any

import pytest
from lxml import etree

from zerotouch_plugin.device.edit import OPERATION, apply_edit
from zerotouch_plugin.device.schema import DeviceSchema
from zerotouch_plugin.services.netconf.subtree import apply_subtree_filter, parse_subtree_filter

IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
ETH = "iana-if-type:ethernetCsmacd"


def _entry(i: int) -> dict[str, Any]:
    return {"name": f"eth{i}", "type": ETH, "enabled": i % 2 == 0, "description": f"port {i}"}


DATA: dict[str, Any] = {
    "ietf-interfaces:interfaces": {"interface": [_entry(i) for i in range(300)]}
}


def _filter(schema: DeviceSchema, tree: dict[str, Any], body: str) -> dict[str, Any]:
    element = etree.fromstring(
        f'<filter type="subtree"><interfaces xmlns="{IF}">{body}</interfaces></filter>'
    )
    return apply_subtree_filter(schema, tree, parse_subtree_filter(element))


def _entries(result: dict[str, Any]) -> list[dict[str, Any]]:
    return list(result.get("ietf-interfaces:interfaces", {}).get("interface", []))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("<interface><name>eth150</name></interface>", [_entry(150)]),
        ("<interface><name>eth150</name><enabled>true</enabled></interface>", [_entry(150)]),
        ("<interface><name>eth151</name><enabled>true</enabled></interface>", []),
        (
            "<interface><name>eth151</name><description/></interface>",
            [{"name": "eth151", "description": "port 151"}],
        ),
        (
            "<interface><name>eth200</name><type/></interface>"
            "<interface><name>eth3</name><enabled/></interface>",
            [{"name": "eth3", "enabled": False}, {"name": "eth200", "type": ETH}],
        ),
        ('<interface><name xmlns="">eth7</name></interface>', [_entry(7)]),
        ('<interface><name xmlns="urn:example:other">eth7</name></interface>', []),
        ("<interface><name>eth999</name></interface>", []),
        ("<interface><name>eth1</name><name>eth2</name></interface>", []),
        ("<interface><enabled>false</enabled><name/></interface>",
         [{"name": f"eth{i}", "enabled": False} for i in range(1, 300, 2)]),
    ],
    ids=["key", "key-and-match", "key-and-mismatch", "key-and-selection", "two-entries",
         "wildcard-namespace", "foreign-namespace", "absent", "two-keys-and", "no-key-scan"],
)  # fmt: skip
def test_a_keyed_filter_answers_as_a_walk_of_the_list(
    schema: DeviceSchema, body: str, expected: list[dict[str, Any]]
) -> None:
    assert _entries(_filter(schema, DATA, body)) == expected


def test_after_edits_the_index_follows_the_list(schema: DeviceSchema) -> None:
    """An edit hands its list a new index (or none): deleted entries are gone, added and
    changed ones are found, and the tree edited from is unchanged."""
    edit = {
        "ietf-interfaces:interfaces": {
            "interface": [
                {"name": "eth5", "@": {OPERATION: "delete"}},
                {"name": "new0", "type": ETH},
                {"name": "eth9", "description": "changed"},
            ]
        }
    }
    _filter(schema, DATA, "<interface><name>eth5</name></interface>")  # index the old list
    edited = apply_edit(schema, DATA, edit)
    assert _entries(_filter(schema, edited, "<interface><name>eth5</name></interface>")) == []
    assert _entries(_filter(schema, edited, "<interface><name>new0</name></interface>")) == [
        {"name": "new0", "type": ETH}
    ]
    assert _entries(
        _filter(schema, edited, "<interface><name>eth9</name><description/></interface>")
    ) == [{"name": "eth9", "description": "changed"}]
    assert _entries(_filter(schema, edited, "<interface><name>eth299</name></interface>")) == [
        _entry(299)
    ]
    assert _entries(_filter(schema, DATA, "<interface><name>eth5</name></interface>")) == [
        _entry(5)
    ]
    merged = apply_edit(
        schema,
        edited,
        {"ietf-interfaces:interfaces": {"interface": [{"name": "eth10", "enabled": True}]}},
    )
    assert _entries(
        _filter(schema, merged, "<interface><name>eth10</name><enabled/></interface>")
    ) == [{"name": "eth10", "enabled": True}]
    assert _entries(_filter(schema, merged, "<interface><name>new0</name></interface>")) == [
        {"name": "new0", "type": ETH}
    ]

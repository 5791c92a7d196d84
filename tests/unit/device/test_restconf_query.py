"""RFC 8040 §4.8 query parameters (content, depth, with-defaults) on RFC 7951 data, in memory."""

from __future__ import annotations

from typing import Any

import pytest

from zerotouch_plugin.device.restconf_query import (
    DROP,
    Content,
    filter_node,
    filter_object,
    parse_content,
    parse_depth,
    with_defaults,
)
from zerotouch_plugin.device.schema import DeviceSchema
from zerotouch_plugin.errors import InvalidParameter

TREE: dict[str, Any] = {
    "ietf-system:system": {"hostname": "device-1", "location": "lab"},
    "ietf-interfaces:interfaces": {
        "interface": [
            {"name": "eth0", "type": "iana-if-type:ethernetCsmacd", "description": "uplink"}
        ]
    },
    "zerotouch-bootstrap:bootstrap": {"phase": "enrolled", "attempts": 1},
}


def test_parse_content_and_depth() -> None:
    assert parse_content("config") is Content.CONFIG
    assert parse_content("all") is Content.ALL
    assert parse_depth("unbounded") is None
    assert (parse_depth("1"), parse_depth("65535")) == (1, 65535)


@pytest.mark.parametrize("text", ["0", "-1", "x", "65536", "1.5", "", "\u00b2", "9" * 5000])
def test_bad_depth_is_refused(text: str) -> None:
    with pytest.raises(InvalidParameter, match="depth"):
        parse_depth(text)


def test_bad_content_is_refused() -> None:
    with pytest.raises(InvalidParameter, match="content"):
        parse_content("state")


def test_content_splits_config_from_state(schema: DeviceSchema) -> None:
    config = filter_object(schema.root, TREE, Content.CONFIG, None)
    assert "zerotouch-bootstrap:bootstrap" not in config
    assert config["ietf-system:system"] == TREE["ietf-system:system"]
    state = filter_object(schema.root, TREE, Content.NONCONFIG, None)
    assert state == {"zerotouch-bootstrap:bootstrap": TREE["zerotouch-bootstrap:bootstrap"]}


def test_depth_keeps_list_keys(schema: DeviceSchema) -> None:
    node = schema.root.get_child("interfaces", "ietf-interfaces")
    assert node is not None
    value = TREE["ietf-interfaces:interfaces"]
    assert filter_node(node, value, Content.ALL, 1, entry=False) == {}
    two = filter_node(node, value, Content.ALL, 2, entry=False)
    assert two == {"interface": [{"name": "eth0"}]}
    assert filter_node(node, value, Content.ALL, None, entry=False) == value


def test_config_leaf_has_no_state(schema: DeviceSchema) -> None:
    system = schema.root.get_child("system", "ietf-system")
    assert system is not None
    assert (
        filter_node(system, TREE["ietf-system:system"], Content.NONCONFIG, None, entry=False)
        is DROP
    )


def test_with_defaults(schema: DeviceSchema) -> None:
    explicit = with_defaults(schema, TREE, Content.ALL, "explicit")
    assert explicit is TREE
    report_all = with_defaults(schema, TREE, Content.CONFIG, "report-all")
    assert report_all["ietf-interfaces:interfaces"]["interface"][0]["enabled"] is True
    assert "enabled" not in TREE["ietf-interfaces:interfaces"]["interface"][0]
    with pytest.raises(InvalidParameter, match="with-defaults=trim"):
        with_defaults(schema, TREE, Content.ALL, "trim")

"""An edit validated incrementally (only what changed, against the tree it came from) is
refused exactly when yangson's validation of the whole new tree refuses it: a leafref to a
deleted entry, a unique clash, a missing mandatory leaf, max-elements, a repeated key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from yangson.enumerations import ContentType, ValidationScope
from yangson.exceptions import YangsonException

from zerotouch_plugin.device.edit import OPERATION, apply_edit
from zerotouch_plugin.device.schema import DeviceSchema, load_device_schema
from zerotouch_plugin.errors import SchemaError

ETH = "iana-if-type:ethernetCsmacd"
MODULE = """module acme-site {
  yang-version 1.1;
  namespace "urn:example:acme-site";
  prefix site;
  import ietf-interfaces { prefix if; }
  revision 2026-01-01;
  container uplink {
    leaf interface { type leafref { path "/if:interfaces/if:interface/if:name"; } }
  }
  container rules {
    list rule {
      key name;
      unique "priority";
      leaf name { type string; }
      leaf priority { type uint16; mandatory true; }
    }
    list slot { key id; max-elements 300; leaf id { type uint16; } }
  }
}
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> DeviceSchema:
    folder: Path = tmp_path_factory.mktemp("yang")
    (folder / "acme-site@2026-01-01.yang").write_text(MODULE)
    return load_device_schema([folder], [("acme-site", "2026-01-01")])


def _old(count: int = 300) -> dict[str, Any]:
    return {
        "ietf-interfaces:interfaces": {
            "interface": [{"name": f"eth{i}", "type": ETH} for i in range(count)]
        },
        "acme-site:uplink": {"interface": "eth150"},
        "acme-site:rules": {
            "rule": [{"name": f"r{i}", "priority": i} for i in range(count)],
            "slot": [{"id": i} for i in range(count)],
        },
    }


def _whole_tree_refuses(schema: DeviceSchema, tree: dict[str, Any]) -> bool:
    try:
        schema.data_model.from_raw(tree).validate(ValidationScope.all, ContentType.config)
    except YangsonException:
        return True
    return False


def _interfaces(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"ietf-interfaces:interfaces": {"interface": list(entries)}}


EDITS: dict[str, tuple[dict[str, Any], str]] = {
    "leafref-to-deleted": (
        _interfaces({"name": "eth150", "@": {OPERATION: "delete"}}),
        "instance-required /acme-site:uplink/interface",
    ),
    "unique": ({"acme-site:rules": {"rule": [{"name": "r7", "priority": 250}]}}, "unique"),
    "mandatory": (
        {"acme-site:rules": {"rule": [{"name": "r9", "@": {OPERATION: "replace"}}]}},
        "priority",
    ),
    "max-elements": ({"acme-site:rules": {"slot": [{"id": 999}]}}, "too-many-elements"),
    "mandatory-in-a-long-list": (
        _interfaces({"name": "eth3", "description": "x", "@": {OPERATION: "replace"}}),
        "type",
    ),
}


@pytest.mark.parametrize("case", sorted(EDITS))
def test_an_incremental_edit_refuses_what_the_whole_tree_refuses(
    site: DeviceSchema, case: str
) -> None:
    old = _old()
    site.validate(old)
    edit, needle = EDITS[case]
    new = apply_edit(site, old, edit)
    assert _whole_tree_refuses(site, new)
    with pytest.raises(SchemaError) as err:
        site.validate(new, previous=old)
    assert needle in f"{err.value.message} {err.value.path}", (err.value.message, err.value.path)


def test_an_incremental_edit_accepts_what_the_whole_tree_accepts(site: DeviceSchema) -> None:
    old = _old()
    edit = {
        **_interfaces({"name": "eth9", "description": "x"}, {"name": "eth300", "type": ETH}),
        "acme-site:rules": {"rule": [{"name": "r7", "priority": 1000}]},
    }
    new = apply_edit(site, old, edit)
    assert not _whole_tree_refuses(site, new)
    site.validate(new, previous=old)


def test_a_key_repeated_in_place_is_refused(schema: DeviceSchema) -> None:
    """With the device's own modules (no cross-references: only changed entries are given
    to yangson) an entry replaced in place by one whose key another unchanged entry holds
    is refused, and so is a replaced entry without its mandatory type."""
    old = _interfaces(*({"name": f"eth{i}", "type": ETH} for i in range(300)))
    schema.validate(old)
    untyped = apply_edit(schema, old, _interfaces({"name": "eth3", "@": {OPERATION: "replace"}}))
    assert _whole_tree_refuses(schema, untyped)
    with pytest.raises(SchemaError, match="type"):
        schema.validate(untyped, previous=old)
    entries = list(old["ietf-interfaces:interfaces"]["interface"])
    entries[5] = {"name": "eth200", "type": ETH}
    new = _interfaces(*entries)
    assert _whole_tree_refuses(schema, new)
    with pytest.raises(SchemaError, match="non-unique-key: 'eth200'"):
        schema.validate(new, previous=old)
    entries[5] = {"name": "eth5", "type": ETH, "description": "same key"}
    schema.validate(_interfaces(*entries), previous=old)
    entries.append({"name": "eth5", "type": ETH})
    with pytest.raises(SchemaError, match="non-unique-key: 'eth5'"):
        schema.validate(_interfaces(*entries), previous=old)

"""The device schema: deployer modules, and validation that stays whole-tree for
cross-references even when unchanged subtrees skip the syntax checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from zerotouch_plugin.device.datastore import Datastore, Datastores
from zerotouch_plugin.device.edit import OPERATION, apply_edit
from zerotouch_plugin.device.schema import DeviceSchema, load_device_schema
from zerotouch_plugin.errors import ConfigError, PayloadTooLarge, SchemaError

MODULE = """module acme-uplink {
  yang-version 1.1;
  namespace "urn:example:acme-uplink";
  prefix up;
  import ietf-interfaces { prefix if; }
  revision 2026-01-01;
  container uplink {
    leaf interface {
      type leafref { path "/if:interfaces/if:interface/if:name"; }
    }
    leaf weight {
      type uint8;
      must ". <= 100" { error-message "weight above 100"; }
    }
  }
}
"""

IFACE = {"name": "eth0", "type": "iana-if-type:ethernetCsmacd"}


@pytest.fixture(scope="module")
def acme(tmp_path_factory: pytest.TempPathFactory) -> DeviceSchema:
    folder = tmp_path_factory.mktemp("yang")
    (folder / "acme-uplink@2026-01-01.yang").write_text(MODULE)
    return load_device_schema([folder], [("acme-uplink", "2026-01-01")])


def test_deployer_module_is_implemented_and_listed(acme: DeviceSchema) -> None:
    assert acme.by_name["acme-uplink"].implemented
    names = [
        m["name"]
        for m in acme.yang_library()["ietf-yang-library:yang-library"]["module-set"][0]["module"]
    ]
    assert "acme-uplink" in names


def test_missing_module_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="acme-missing"):
        load_device_schema([tmp_path], [("acme-missing", "")])


async def test_leafref_broken_by_edit_elsewhere_is_caught(
    acme: DeviceSchema, tmp_path: Path
) -> None:
    ds = Datastores(acme, tmp_path)
    tree = {
        "ietf-interfaces:interfaces": {"interface": [IFACE]},
        "acme-uplink:uplink": {"interface": "eth0", "weight": 10},
    }
    await ds.commit(Datastore.RUNNING, tree, session_id=1)
    delete = {
        "ietf-interfaces:interfaces": {"interface": [{"name": "eth0", "@": {OPERATION: "delete"}}]}
    }
    with pytest.raises(SchemaError) as err:
        await ds.modify(Datastore.RUNNING, lambda t: apply_edit(acme, t, delete), session_id=1)
    assert err.value.path == "/acme-uplink:uplink/interface"  # the unchanged subtree
    assert ds.get(Datastore.RUNNING) == tree


async def test_must_and_syntax_errors_in_changed_subtree(
    acme: DeviceSchema, tmp_path: Path
) -> None:
    ds = Datastores(acme, tmp_path)
    await ds.commit(
        Datastore.RUNNING, {"ietf-interfaces:interfaces": {"interface": [IFACE]}}, session_id=1
    )
    with pytest.raises(SchemaError, match="weight above 100"):
        await ds.modify(
            Datastore.RUNNING,
            lambda t: apply_edit(acme, t, {"acme-uplink:uplink": {"weight": 200}}),
            session_id=1,
        )
    with pytest.raises(SchemaError) as err:
        await ds.modify(
            Datastore.RUNNING,
            lambda t: apply_edit(acme, t, {"acme-uplink:uplink": {"weight": 300}}),
            session_id=1,
        )
    assert err.value.path == "/acme-uplink:uplink/weight"  # uint8 range


RULES = """module acme-rules {
  yang-version 1.1;
  namespace "urn:example:acme-rules";
  prefix ar;
  revision 2026-01-01;
  container rules {
    leaf enabled { type boolean; }
    leaf threshold { when "../enabled = 'true'"; type uint8; }
    list rule {
      key name;
      unique "priority";
      leaf name { type string; }
      leaf priority { type uint8; mandatory true; }
    }
  }
}
"""


@pytest.mark.parametrize(
    ("rules", "needle"),
    [
        ({"rule": [{"name": "a", "priority": 1}, {"name": "b", "priority": 1}]}, "unique"),
        ({"rule": [{"name": "a"}]}, "priority"),  # mandatory leaf missing
        ({"enabled": False, "threshold": 5}, "threshold"),  # when is false
    ],
    ids=["unique", "mandatory", "when"],
)
async def test_unique_mandatory_and_when_are_enforced(
    tmp_path: Path, rules: dict[str, object], needle: str
) -> None:
    """RFC 7950 §7.8.3 unique, §7.6.5 mandatory, §7.21.5 when: an edit that breaks one is
    refused and the datastore keeps its content."""
    folder = tmp_path / "yang"
    folder.mkdir()
    (folder / "acme-rules@2026-01-01.yang").write_text(RULES)
    schema = load_device_schema([folder], [("acme-rules", "2026-01-01")])
    ds = Datastores(schema, tmp_path)
    good = {
        "acme-rules:rules": {
            "enabled": True,
            "threshold": 5,
            "rule": [{"name": "a", "priority": 1}],
        }
    }
    await ds.commit(Datastore.RUNNING, good, session_id=1)
    with pytest.raises(SchemaError) as err:
        await ds.commit(Datastore.RUNNING, {"acme-rules:rules": rules}, session_id=1)
    assert needle in f"{err.value.message} {err.value.path}", (err.value.message, err.value.path)
    assert ds.get(Datastore.RUNNING) == good


def _many(count: int, start: int = 0) -> list[dict[str, object]]:
    return [{"name": f"eth{i}", "type": IFACE["type"]} for i in range(start, start + count)]


def _tree(entries: list[dict[str, object]]) -> dict[str, object]:
    return {"ietf-interfaces:interfaces": {"interface": entries}}


def test_validation_cost_grows_with_the_change(schema: DeviceSchema) -> None:
    """Issue 11 item 2: with no must, when or leafref in the schema, only new or changed
    entries are handed to yangson; the budget counts them."""
    old = _tree(_many(5000))
    schema.validate(old)
    new = apply_edit(schema, old, _tree([{"name": "eth9", "description": "x"}, *_many(2, 5000)]))
    schema.validate(new, previous=old, budget=3)  # three entries changed or added
    with pytest.raises(PayloadTooLarge, match="budget of 3") as err:
        schema.validate(new, budget=3)  # without the previous tree every entry counts
    assert err.value.netconf_tag == "too-big"
    assert err.value.http_status == 413


def test_changed_entries_are_checked_with_their_paths(schema: DeviceSchema) -> None:
    old = _tree(_many(2000))
    bad = apply_edit(schema, old, _tree([{"name": "eth7", "enabled": "yes"}]))
    with pytest.raises(SchemaError) as err:
        schema.validate(bad, previous=old)
    assert err.value.path == "/ietf-interfaces:interfaces/interface=eth7/enabled"
    # an entry past the first parts given to yangson (500 at a time)
    entries = _many(2000)
    entries[1700] = {"name": "eth1700"}  # no type (mandatory)
    with pytest.raises(SchemaError, match="type") as err:
        schema.validate(_tree(entries), previous={})
    assert err.value.path == '/ietf-interfaces:interfaces/interface[name="eth1700"]'  # yangson's


def test_a_repeated_key_is_caught_beside_unchanged_entries(schema: DeviceSchema) -> None:
    old = _tree(_many(1000))
    entries = old["ietf-interfaces:interfaces"]["interface"]  # type: ignore[index]
    twice = _tree([*entries, {"name": "eth5", "type": IFACE["type"]}])
    with pytest.raises(SchemaError, match="non-unique-key: 'eth5'") as err:
        schema.validate(twice, previous=old)
    assert err.value.path == "/ietf-interfaces:interfaces/interface"
    with pytest.raises(SchemaError, match="non-unique-key"):
        schema.validate(_tree([*_many(3), *_many(1, 2)]), previous=old)


LIMITS = """module acme-limits {
  yang-version 1.1;
  namespace "urn:example:acme-limits";
  prefix al;
  revision 2026-01-01;
  container ports {
    list port { key id; max-elements 3; leaf id { type uint8; } }
    list pair { key id; min-elements 2; leaf id { type uint8; } }
  }
}
"""


def test_list_limits_see_the_whole_list(tmp_path: Path) -> None:
    """max-elements is checked on the whole list, min-elements above 1 keeps it whole."""
    (tmp_path / "acme-limits@2026-01-01.yang").write_text(LIMITS)
    schema = load_device_schema([tmp_path], [("acme-limits", "2026-01-01")])
    old = {"acme-limits:ports": {"port": [{"id": 1}, {"id": 2}, {"id": 3}],
                                 "pair": [{"id": 1}, {"id": 2}]}}  # fmt: skip
    schema.validate(old)
    more = apply_edit(schema, old, {"acme-limits:ports": {"port": [{"id": 4}]}})
    with pytest.raises(SchemaError, match="too-many-elements") as err:
        schema.validate(more, previous=old)
    assert err.value.path == "/acme-limits:ports/port"
    gone = {"acme-limits:ports": {"pair": [{"id": 2, "@": {OPERATION: "delete"}}]}}
    with pytest.raises(SchemaError, match="too-few-elements"):
        schema.validate(apply_edit(schema, old, gone), previous=old)


async def test_with_cross_references_the_subtree_counts_whole(
    acme: DeviceSchema, tmp_path: Path
) -> None:
    """A schema with a leafref keeps whole-tree validation: the budget counts every entry of
    the subtrees it checks."""
    old = {**_tree(_many(50)), "acme-uplink:uplink": {"interface": "eth0"}}
    acme.validate(old)
    new = apply_edit(acme, old, _tree([{"name": "eth9", "description": "x"}]))
    with pytest.raises(PayloadTooLarge):
        acme.validate(new, previous=old, budget=10)
    acme.validate(new, previous=old, budget=50)

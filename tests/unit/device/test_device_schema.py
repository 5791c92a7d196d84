"""The device schema: deployer modules, and validation that stays whole-tree for
cross-references even when unchanged subtrees skip the syntax checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from zerotouch_plugin.device.datastore import Datastore, Datastores
from zerotouch_plugin.device.edit import OPERATION, apply_edit
from zerotouch_plugin.device.schema import DeviceSchema, load_device_schema
from zerotouch_plugin.errors import ConfigError, SchemaError

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

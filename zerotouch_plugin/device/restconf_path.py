"""RFC 8040 §3.5.3 resource paths: which schema node a RESTCONF request URI names, and the
data at it in a datastore tree.

Sans-IO: the RESTCONF listener resolves a path once against the schema alone (what the request
targets) and again inside its write, against the tree it is about to change (whether the
target exists there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from yangson.instance import ActionName, EntryKeys, EntryValue, MemberName
from yangson.schemanode import (
    ContainerNode,
    DataNode,
    InternalNode,
    LeafListNode,
    ListNode,
    TerminalNode,
)

from zerotouch_plugin.device.edit import instance_literal, member_node
from zerotouch_plugin.device.keyindex import key_index, key_of_values
from zerotouch_plugin.device.schema import DeviceSchema, key_members
from zerotouch_plugin.errors import SchemaError, UnsupportedOperation, ZerotouchError

__all__ = ["ABSENT", "Target", "instance_path", "resolve_path"]

Tree = dict[str, Any]
# The value of a target that is not in the tree (None is a valid RFC 7951 value: empty type).
ABSENT: Final = object()


@dataclass(frozen=True)
class Target:
    """A resolved RFC 8040 §3.5.3 resource path."""

    path: str  # as given (percent-encoded), for edit_at
    instance_id: str  # the same node as an instance-identifier, for error-path (RFC 8040 §7.1)
    node: DataNode | None  # None: the datastore resource itself
    parent: InternalNode
    member: str  # key of the node in its parent's RFC 7951 object
    entry: bool  # the path selects one list or leaf-list entry
    item: Any  # the leaf-list entry the path names (entry of a leaf-list), else None
    value: Any  # the data there, or ABSENT
    present: bool  # the data is in the tree (a missing non-presence container is not)

    @property
    def qualified(self) -> str:
        node = self.node
        return "ietf-restconf:data" if node is None else f"{node.ns}:{node.name}"


def resolve_path(schema: DeviceSchema, tree: Mapping[str, Any] | None, path: str) -> Target:
    """Walk ``path`` through the schema and, when given, through ``tree``."""
    route = list(schema.parse_path(path))
    sn: InternalNode = schema.root
    obj: Any = tree
    item: Any = None
    node: DataNode | None = None
    present = tree is not None
    member = ""
    entry = False
    steps: list[str] = []  # RFC 7951 §6.11: a name qualified where its module changes
    i = 0
    while i < len(route):
        step = route[i]
        if isinstance(step, ActionName):
            raise UnsupportedOperation("YANG actions are not supported", path=path)
        if not isinstance(step, MemberName):
            raise SchemaError(f"unexpected path step {step}", path=path)
        if node is not None:
            if not isinstance(node, InternalNode):
                raise SchemaError(f"{node.name} has no children", path=path)
            sn = node
        qualified = f"{step.namespace}:{step.name}" if step.namespace else step.name
        node, member = member_node(sn, qualified, "")
        steps.append(f"/{member}")
        value = obj.get(member, ABSENT) if isinstance(obj, Mapping) else ABSENT
        present = value is not ABSENT
        if not present and isinstance(obj, Mapping) and _np_container(node):
            value = {}  # RFC 7950 §7.5.1: exists whenever its parent does, maybe empty
        nxt = route[i + 1] if i + 1 < len(route) else None
        entry = isinstance(nxt, (EntryKeys, EntryValue))
        if isinstance(nxt, EntryKeys) and isinstance(node, ListNode):
            selection: Tree = {}
            for (kname, kns), text in nxt.keys.items():
                knode, kkey = member_node(node, f"{kns}:{kname}" if kns else kname)
                if not isinstance(knode, TerminalNode):
                    raise SchemaError("bad list key", path=path)
                selection[kkey] = schema.text_to_raw(knode, text)
                steps.append(f"[{kkey}={instance_literal(text)}]")
            value = _find_entry(value, key_members(node), selection)
            present = value is not ABSENT
            i += 1
        elif isinstance(nxt, EntryValue) and isinstance(node, LeafListNode):
            item = schema.text_to_raw(node, nxt.value)
            steps.append(f"[.={instance_literal(nxt.value)}]")
            value = item if isinstance(value, list) and item in value else ABSENT
            present = value is not ABSENT
            i += 1
        obj = value
        i += 1
    return Target(path, "".join(steps) or "/", node, sn, member, entry, item, obj, present)


def instance_path(schema: DeviceSchema, path: str) -> str:
    """``path`` as an instance-identifier (RFC 7951 §6.11) when it is a resource path, as it
    is otherwise: already an instance-identifier, or no path the schema knows."""
    try:
        return resolve_path(schema, None, path).instance_id
    except ZerotouchError:
        return path


def _np_container(node: DataNode) -> bool:
    return isinstance(node, ContainerNode) and not node.presence


def _find_entry(entries: Any, names: Sequence[str], selection: Mapping[str, Any]) -> Any:
    """The entry with the key values of ``selection``, by the list's key index."""
    if not isinstance(entries, list):
        return ABSENT
    if any(n not in selection for n in names):
        return ABSENT
    values = [selection[n] for n in names]
    at = key_index(entries, names).get(
        key_of_values(values[0] if len(values) == 1 else tuple(values))
    )
    return ABSENT if at is None else entries[at]

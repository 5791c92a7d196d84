"""Edit operations on RFC 7951 JSON trees, shared by NETCONF edit-config and RESTCONF.

An edit is an RFC 7951 tree whose nodes may carry the NETCONF ``operation`` attribute as an
RFC 7952 annotation (``"@": {"ietf-netconf:operation": "delete"}`` inside a container or
list entry, ``"@leaf": {...}`` beside a leaf, a parallel list for leaf-list entries), which is
how RFC 7952 encodes XML attributes in JSON. ``apply_edit`` merges it into a datastore tree
following RFC 6241 §7.2; ``edit_at`` builds such an edit for one target path (RESTCONF).

Trees are never mutated: changed containers are copied, unchanged subtrees are shared.
Validation against the schema is the datastore's job, after the edit.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Hashable, Mapping, Sequence
from enum import StrEnum
from typing import Any

from yangson.instance import EntryKeys, EntryValue, MemberName
from yangson.schemanode import (
    AnyContentNode,
    ChoiceNode,
    ContainerNode,
    DataNode,
    InternalNode,
    LeafListNode,
    LeafNode,
    ListNode,
    SchemaNode,
    TerminalNode,
)

from zerotouch_plugin.device.keyindex import adopt, entry_key, key_index
from zerotouch_plugin.device.schema import DeviceSchema, key_members
from zerotouch_plugin.errors import BadElement, Conflict, MissingKey, NotFound, SchemaError

__all__ = [
    "OPERATION",
    "VALUELESS",
    "Operation",
    "apply_edit",
    "edit_at",
    "instance_literal",
    "member_node",
]

OPERATION = "ietf-netconf:operation"  # RFC 6241 §7.2 attribute, RFC 7952 annotation name

Tree = dict[str, Any]
_HOLE: Any = object()  # a deleted leaf-list item, dropped at the end


class Operation(StrEnum):
    """RFC 6241 §7.2 edit operations (``none`` is a default-operation only)."""

    MERGE = "merge"
    REPLACE = "replace"
    CREATE = "create"
    DELETE = "delete"
    REMOVE = "remove"
    NONE = "none"


def _operation(annotation: Any, inherited: Operation, path: str) -> Operation:
    if not isinstance(annotation, Mapping) or OPERATION not in annotation:
        return inherited
    try:
        return Operation(annotation[OPERATION])
    except ValueError:
        raise SchemaError(f"bad operation {annotation[OPERATION]!r}", path=path) from None


def member_node(parent: InternalNode, member: str, path: str = "") -> tuple[DataNode, str]:
    """The schema node of an RFC 7951 member name and its canonical name (RFC 7951 §4)."""
    module, sep, name = member.partition(":")
    if not sep:
        name, module = member, parent.ns
    child = parent.get_data_child(name, module) if module else None
    if not isinstance(child, (ContainerNode, ListNode, LeafNode, LeafListNode, AnyContentNode)):
        raise SchemaError(f"unknown data node {member!r}", path=f"{path}/{member}")
    return child, (name if child.ns == parent.ns else f"{child.ns}:{name}")


def _cases(node: SchemaNode, parent: InternalNode) -> dict[int, SchemaNode]:
    """id(choice) -> the branch taken, for each choice between ``parent`` and ``node``."""
    res: dict[int, SchemaNode] = {}
    while node.parent is not None and node.parent is not parent:
        if isinstance(node.parent, ChoiceNode):
            res[id(node.parent)] = node
        node = node.parent
    return res


VALUELESS = frozenset({Operation.DELETE, Operation.REMOVE})  # take data away, carry no value


def _one_case(
    taken: dict[int, tuple[SchemaNode, str]], mine: dict[int, SchemaNode], key: str, path: str
) -> None:
    """RFC 7950 §8.3.1: data of more than one case of a choice in one edit is bad-element
    (a case only replaces the other cases' nodes already stored)."""
    for choice, branch in mine.items():
        first, member = taken.setdefault(choice, (branch, key))
        if first is not branch:
            raise BadElement(
                f"{key} and {member} are in different cases of one choice: send one",
                path=path,
            )


def _entry_path(path: str, key: str, keys: Mapping[str, Any]) -> str:
    sel = "".join(
        f"[{k}={instance_literal(v if isinstance(v, str) else json.dumps(v))}]"
        for k, v in keys.items()
    )
    return f"{path}/{key}{sel}"


class _Editor:
    def __init__(self, allow_state: bool) -> None:
        self.allow_state = allow_state

    def edit_object(
        self,
        sn: InternalNode,
        target: Mapping[str, Any] | None,
        edit: Mapping[str, Any],
        inherited: Operation,
        path: str,
    ) -> Tree:
        result: Tree = dict(target or {})
        cases: dict[int, tuple[SchemaNode, str]] = {}  # id(choice) -> (branch, member) of edit
        for member, value in edit.items():
            if member.startswith("@"):
                continue
            csn, key = member_node(sn, member, path)
            if not self.allow_state and not csn.config:
                raise SchemaError(
                    "state data (config false) cannot be edited", path=f"{path}/{key}"
                )
            annotation = edit.get("@" + member)
            cpath = f"{path}/{key}"
            container = isinstance(csn, ContainerNode) and isinstance(value, Mapping)
            own = value.get("@") if container else annotation
            if not (isinstance(own, Mapping) and own.get(OPERATION) in VALUELESS):
                _one_case(cases, _cases(csn, sn), key, cpath)
            if isinstance(csn, ListNode):
                self.edit_list(csn, result, key, value, inherited, cpath)
            elif isinstance(csn, LeafListNode):
                self.edit_leaf_list(result, key, value, annotation, inherited, cpath)
            elif isinstance(csn, ContainerNode):
                if not isinstance(value, Mapping):
                    raise SchemaError("expected an object", path=cpath)
                op = _operation(value.get("@"), inherited, cpath)
                self.edit_container(csn, result, key, value, op, cpath)
            else:
                self.edit_leaf(result, key, value, _operation(annotation, inherited, cpath), cpath)
            if key in result:
                self.drop_other_cases(sn, csn, key, result)
        return result

    def drop_other_cases(self, sn: InternalNode, csn: SchemaNode, key: str, result: Tree) -> None:
        """RFC 7950 §7.9: a node of one case deletes the nodes of the choice's other cases."""
        mine = _cases(csn, sn)
        if not mine:
            return
        for other in list(result):
            if other == key or other.startswith("@"):
                continue
            osn, _ = member_node(sn, other)
            theirs = _cases(osn, sn)
            if any(ch in theirs and theirs[ch] is not branch for ch, branch in mine.items()):
                del result[other]
                result.pop("@" + other, None)

    def edit_leaf(self, result: Tree, key: str, value: Any, op: Operation, path: str) -> None:
        exists = key in result
        if op is Operation.CREATE and exists:
            raise Conflict("data already exists", path=path)  # RFC 6241 §7.2 data-exists
        if op is Operation.DELETE and not exists:
            raise NotFound("data does not exist", path=path)  # RFC 6241 §7.2 data-missing
        if op in (Operation.DELETE, Operation.REMOVE):
            result.pop(key, None)
        elif op is not Operation.NONE:
            result[key] = value

    def edit_container(
        self, csn: ContainerNode, result: Tree, key: str, value: Mapping[str, Any],
        op: Operation, path: str,
    ) -> None:  # fmt: skip
        exists = key in result
        if op is Operation.CREATE and exists:
            raise Conflict("data already exists", path=path)
        if op is Operation.DELETE and not exists:
            raise NotFound("data does not exist", path=path)
        if op in (Operation.DELETE, Operation.REMOVE):
            result.pop(key, None)
            return
        base = None if op in (Operation.REPLACE, Operation.CREATE) else result.get(key)
        child_op = Operation.NONE if op is Operation.NONE else Operation.MERGE
        new = self.edit_object(csn, base, value, child_op, path)
        if op is Operation.NONE and not exists and not new:
            return
        if new or csn.presence:
            result[key] = new
        else:
            result.pop(key, None)  # an empty non-presence container is not data (RFC 7950 §7.5.1)

    def edit_list(
        self, csn: ListNode, result: Tree, key: str, value: Any, inherited: Operation, path: str
    ) -> None:
        """Entries are found by their keys in an index, so an edit costs what it holds."""
        if not isinstance(value, list):
            raise SchemaError("expected an array of list entries", path=path)
        keys = key_members(csn)
        current: list[Tree] = result.get(key, [])
        if not keys:
            if not self.allow_state:  # RFC 7950 §7.8.2: a configuration list has keys
                raise SchemaError("list entry without key", path=path)
            result[key] = [*current, *value]  # keyless state list
            return
        # key values -> position, from the cached index of the current list (copied before
        # it changes); a replaced entry keeps its place, a deleted one that comes back goes
        # to the end, a deleted one leaves a hole until the end.
        identity = entry_key(keys)
        cached = key_index(current, keys)
        where: dict[Hashable, int] | None = None
        entries = list(current)
        holes = False
        for entry in value:
            if not isinstance(entry, Mapping):
                raise SchemaError("expected an object", path=path)
            missing = [k for k in keys if k not in entry]
            if missing:
                raise MissingKey(  # RFC 7950 §8.3.1
                    f"list entry without key {', '.join(missing)}",
                    path=path,
                    info={"bad-element": missing[0]},
                )
            sel = {k: entry[k] for k in keys}
            ident = identity(entry)
            epath = _entry_path(path[: path.rfind("/")], key, sel)
            op = _operation(entry.get("@"), inherited, epath)
            at = (cached if where is None else where).get(ident)
            old = None if at is None else entries[at]
            if op is Operation.CREATE and old is not None:
                raise Conflict("data already exists", path=epath)
            if op is Operation.DELETE and old is None:
                raise NotFound("data does not exist", path=epath)
            if op in (Operation.DELETE, Operation.REMOVE):
                if at is not None:
                    where = dict(cached) if where is None else where
                    del where[ident]
                    entries[at] = _HOLE
                    holes = True
                continue
            fresh = op in (Operation.REPLACE, Operation.CREATE) or old is None
            base = dict(sel) if fresh else old
            body = {k: v for k, v in entry.items() if k not in sel and k[1:] not in sel}
            child_op = Operation.NONE if op is Operation.NONE else Operation.MERGE
            new = self.edit_object(csn, base, body, child_op, epath)
            if at is not None:
                entries[at] = new
            elif op is not Operation.NONE or len(new) > len(sel):
                where = dict(cached) if where is None else where
                where[ident] = len(entries)
                entries.append(new)
        if holes:
            entries = [e for e in entries if e is not _HOLE]
        elif entries:
            adopt(entries, keys, cached if where is None else where)
        if entries:
            result[key] = entries
        else:
            result.pop(key, None)

    def edit_leaf_list(
        self, result: Tree, key: str, value: Any, annotations: Any, inherited: Operation,
        path: str,
    ) -> None:  # fmt: skip
        if not isinstance(value, list):
            raise SchemaError("expected an array of leaf-list entries", path=path)
        anns = annotations if isinstance(annotations, list) else [None] * len(value)
        items: list[Any] = list(result.get(key, []))
        # value -> the indexes it is held at, in order (a state leaf-list may repeat a value,
        # RFC 7950 §7.7); a deleted item leaves a hole, so each step costs the same
        where: dict[Any, deque[int]] = {}
        for i, item in enumerate(items):
            where.setdefault(_identity(item), deque()).append(i)
        for item, ann in zip(value, anns, strict=False):
            op = _operation(ann, inherited, path)
            epath = f"{path}[.={json.dumps(item)}]"
            at = where.setdefault(_identity(item), deque())
            if op is Operation.CREATE and at:
                raise Conflict("data already exists", path=epath)
            if op is Operation.DELETE and not at:
                raise NotFound("data does not exist", path=epath)
            if op in (Operation.DELETE, Operation.REMOVE):
                if at:
                    items[at.popleft()] = _HOLE  # the first copy, as list.remove takes
            elif op is not Operation.NONE and not at:
                at.append(len(items))
                items.append(item)
        current = [item for item in items if item is not _HOLE]
        if current:
            result[key] = current
        else:
            result.pop(key, None)


def _identity(value: Any) -> Any:
    """A hashable stand-in for a JSON value, equal where the values are equal (``==``)."""
    if isinstance(value, list):
        return (list, *map(_identity, value))
    if isinstance(value, Mapping):
        return (dict, frozenset((k, _identity(v)) for k, v in value.items()))
    return value


def apply_edit(
    schema: DeviceSchema,
    tree: Mapping[str, Any],
    edit: Mapping[str, Any],
    *,
    default_operation: Operation = Operation.MERGE,
    allow_state: bool = False,
) -> Tree:
    """``tree`` with ``edit`` applied (RFC 6241 §7.2); raises Conflict, NotFound, SchemaError.

    ``allow_state`` admits config-false nodes (used to merge published state into the
    operational datastore).
    """
    return _Editor(allow_state).edit_object(schema.root, tree, edit, default_operation, "")


def edit_at(
    schema: DeviceSchema,
    tree: Mapping[str, Any],
    path: str,
    operation: Operation,
    value: Any = None,
) -> Tree:
    """Apply ``operation`` to the node at an RFC 8040 resource path; returns the new tree.

    ``value`` is the node's own RFC 7951 value (an object for a container or list entry, an
    array of entries when ``path`` names a whole list or leaf-list, which only merge takes, a
    scalar for a leaf); it is ignored for delete and remove. Ancestors are created as needed
    except for delete and remove, which fail or do nothing when the target is absent.
    """
    route = list(schema.parse_path(path))
    if not route:
        if operation in (Operation.DELETE, Operation.REMOVE):
            return {}
        if not isinstance(value, Mapping):
            raise SchemaError("the datastore root needs an object", path="/")
        base: Mapping[str, Any] = {} if operation is Operation.REPLACE else tree
        return apply_edit(schema, base, value)
    destructive = operation in (Operation.DELETE, Operation.REMOVE)
    ancestors = Operation.NONE if destructive else Operation.MERGE
    edit, whole = _build_edit(schema, route, operation, value)
    refused = _NOT_ON_A_WHOLE_LIST.get(operation)
    if whole and refused:
        # RFC 8040 §3.5: list and leaf-list entries are data resources, a whole list is not.
        raise SchemaError(
            f"a whole list or leaf-list is not a data resource and cannot be {refused}: "
            "name one entry (list=key, leaf-list=value), or edit its parent",
            path=path,
        )
    return apply_edit(schema, tree, edit, default_operation=ancestors)


# Operations refused on a whole list or leaf-list: what the edit would have done instead of
# what they mean (a replace merged, a delete did nothing). Merge means the same either way.
_NOT_ON_A_WHOLE_LIST: dict[Operation, str] = {
    Operation.REPLACE: "replaced",
    Operation.CREATE: "created",
    Operation.DELETE: "deleted",
    Operation.REMOVE: "removed",
}


def _build_edit(
    schema: DeviceSchema, route: Sequence[Any], operation: Operation, value: Any
) -> tuple[Tree, bool]:
    """The nested edit for ``route``; also says whether it names a whole list/leaf-list."""
    ann = {OPERATION: operation.value}
    root: Tree = {}
    obj = root
    sn: InternalNode = schema.root
    here = ""  # the node so far as an instance-identifier, for error paths (RFC 8040 §7.1)
    i = 0
    while i < len(route):
        step = route[i]
        if not isinstance(step, MemberName):
            raise SchemaError(f"unexpected path step {step}")
        member = f"{step.namespace}:{step.name}" if step.namespace else step.name
        csn, key = member_node(sn, member)
        here = f"{here}/{key}"
        nxt = route[i + 1] if i + 1 < len(route) else None
        last = nxt is None or (i + 2 == len(route) and isinstance(nxt, (EntryKeys, EntryValue)))
        if isinstance(csn, ListNode):
            if nxt is None:
                entries = _valued(operation, value, list, "an array of list entries", here) or []
                obj[key] = [{**_shaped(e, Mapping, "an object", here), "@": ann} for e in entries]
                return root, True
            if not isinstance(nxt, EntryKeys):
                raise SchemaError("list entry selector expected", path=here)
            sel = {}
            for (kname, kns), text in nxt.keys.items():
                knode, kkey = member_node(csn, f"{kns}:{kname}" if kns else kname)
                if not isinstance(knode, TerminalNode):
                    raise SchemaError("bad key", path=f"{here}/{kkey}")
                sel[kkey] = schema.text_to_raw(knode, text)
                here += f"[{kkey}={instance_literal(text)}]"
            if last:
                body = dict(_valued(operation, value, Mapping, "an object", here) or {})
                for k, v in sel.items():
                    if k in body and body[k] != v:
                        raise SchemaError(
                            "key in body differs from key in path", path=f"{here}/{k}"
                        )
                obj[key] = [{**body, **sel, "@": ann}]
                return root, False
            entry: Tree = dict(sel)
            obj[key] = [entry]
            obj, sn = entry, csn
            i += 2
            continue
        if isinstance(csn, LeafListNode):
            if isinstance(nxt, EntryValue):
                item = schema.text_to_raw(csn, nxt.value)
                obj[key] = [item]
                obj["@" + key] = [ann]
                return root, False
            given = _valued(operation, value, list, "an array of leaf-list entries", here)
            items = list(given or [])
            obj[key] = items
            obj["@" + key] = [ann] * len(items)
            return root, True
        if isinstance(csn, ContainerNode):
            if last:
                body = dict(_valued(operation, value, Mapping, "an object", here) or {})
                obj[key] = {**body, "@": ann}
                return root, False
            child: Tree = {}
            obj[key] = child
            obj, sn = child, csn
            i += 1
            continue
        obj[key] = value
        obj["@" + key] = ann
        return root, False
    raise SchemaError("empty path")


def instance_literal(text: str) -> str:
    """A quoted string of an instance-identifier predicate (RFC 7950 §9.13): it has no escape,
    so single quotes unless the text holds one."""
    return f'"{text}"' if "'" in text else f"'{text}'"


def _shaped(value: Any, kind: type, name: str, path: str) -> Any:
    """RFC 7951 §5: a container or list entry is an object, a list or leaf-list an array.
    Read as empty, a value of another shape would make a replace delete the target."""
    if not isinstance(value, kind):
        raise SchemaError(f"expected {name}, not {_json_kind(value)}", path=path)
    return value


def _valued(operation: Operation, value: Any, kind: type, name: str, path: str) -> Any:
    """The value of an operation that carries one; delete and remove carry none."""
    if operation in (Operation.DELETE, Operation.REMOVE):
        return None
    return _shaped(value, kind, name, path)


def _json_kind(value: Any) -> str:
    return _JSON_KINDS.get(type(value), "a value")


_JSON_KINDS: dict[type, str] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    type(None): "null",
}

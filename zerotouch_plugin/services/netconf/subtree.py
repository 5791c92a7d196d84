"""NETCONF subtree filtering (RFC 6241 §6) over RFC 7951 trees. Pure: no I/O.

A filter element is, per §6.2: a *content match node* (a leaf with text), a *selection node*
(an empty element) or a *containment node* (an element with children). Siblings combine as
§6.2.5 says: every content match node of a sibling set must match (AND) for the parent to be
selected at all; when a sibling set has only content match nodes, all siblings of the matched
data are returned; otherwise the content match nodes, the selected subtrees and the filtered
containment nodes are returned. A filter element without a namespace matches any namespace
(§6.2.1 wildcarding via ``xmlns=""``). Filter text is compared as YANG values, so
``<enabled>true</enabled>`` and ``ianaift:ethernetCsmacd`` match whatever prefix was used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lxml import etree
from yangson.schemanode import (
    DataNode,
    InternalNode,
    LeafListNode,
    ListNode,
    TerminalNode,
)

from zerotouch_plugin.device.edit import member_node
from zerotouch_plugin.device.keyindex import key_index, key_of_values
from zerotouch_plugin.device.schema import DeviceSchema, key_members
from zerotouch_plugin.errors import SchemaError

__all__ = ["FilterNode", "apply_subtree_filter", "parse_subtree_filter"]

Tree = dict[str, Any]


@dataclass(frozen=True)
class FilterNode:
    """One element of a subtree filter; ``namespace`` None matches any namespace."""

    namespace: str | None
    name: str
    children: tuple[FilterNode, ...] = ()
    text: str | None = None
    nsmap: Mapping[str | None, str] | None = None

    @property
    def is_content_match(self) -> bool:
        return self.text is not None

    @property
    def is_selection(self) -> bool:
        return self.text is None and not self.children


def parse_subtree_filter(filter_element: etree._Element) -> tuple[FilterNode, ...]:
    """The filter nodes below a ``<filter type="subtree">`` element."""
    return tuple(_parse(el) for el in filter_element if isinstance(el.tag, str))


def _parse(el: etree._Element) -> FilterNode:
    tag = str(el.tag)
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        namespace: str | None = ns or None
    else:
        namespace, name = None, tag
    children = tuple(_parse(c) for c in el if isinstance(c.tag, str))
    text = el.text.strip() if el.text is not None and not children else None
    return FilterNode(namespace, name, children, text or None, dict(el.nsmap) if text else None)


def apply_subtree_filter(
    schema: DeviceSchema, tree: Mapping[str, Any], nodes: Sequence[FilterNode]
) -> Tree:
    """The part of ``tree`` the filter selects; an empty filter selects nothing (§6.4.2)."""
    result = _Filter(schema).object(schema.root, tree, nodes, top=True)
    return result or {}


class _Filter:
    def __init__(self, schema: DeviceSchema) -> None:
        self.schema = schema

    def matches(self, f: FilterNode, csn: DataNode) -> bool:
        if f.name != csn.name:
            return False
        return f.namespace is None or self.schema.by_name[csn.ns].namespace == f.namespace

    def content_matches(self, f: FilterNode, csn: DataNode, value: Any) -> bool:
        if not isinstance(csn, TerminalNode):
            return False
        try:
            wanted = self.schema.text_to_raw(csn, f.text or "", f.nsmap)
        except SchemaError:
            return False
        if isinstance(csn, LeafListNode):
            return isinstance(value, list) and wanted in value
        return bool(value == wanted)

    def object(
        self, sn: InternalNode, obj: Mapping[str, Any], nodes: Sequence[FilterNode], top: bool
    ) -> Tree | None:
        members = [(m, *member_node(sn, m)) for m in obj if not m.startswith("@")]
        content = [f for f in nodes if f.is_content_match]
        for f in content:  # §6.2.5: all content match nodes must be true
            if not any(
                self.matches(f, csn) and self.content_matches(f, csn, obj[m])
                for m, csn, _ in members
            ):
                return None
        others = [f for f in nodes if not f.is_content_match]
        if content and not others and not top:
            return dict(obj)  # §6.2.5: only content match nodes -> all siblings
        result: Tree = {}
        for member, csn, _ in members:
            value = obj[member]
            if any(self.matches(f, csn) for f in content + [f for f in others if f.is_selection]):
                result[member] = value
                continue
            containers = [f for f in others if f.children and self.matches(f, csn)]
            if not containers or not isinstance(csn, InternalNode):
                continue
            if isinstance(csn, ListNode):
                entries = []
                for entry in self.candidates(csn, value, containers):
                    parts = [self.object(csn, entry, f.children, False) for f in containers]
                    merged = _union(csn, [p for p in parts if p])
                    if merged:
                        entries.append(merged)
                if entries:
                    result[member] = entries
            else:
                parts = [self.object(csn, value, f.children, False) for f in containers]
                merged = _union(csn, [p for p in parts if p])
                if merged:
                    result[member] = merged
        return result

    def candidates(
        self, sn: ListNode, entries: list[Any], containers: Sequence[FilterNode]
    ) -> list[Any]:
        """The entries the containment nodes can select: when each names every key of the
        list by a content match node, only the entries with those keys (found in the list's
        key index, so one entry of a long list costs a lookup), else all of them."""
        names = key_members(sn)
        if not names:
            return entries
        positions: set[int] = set()
        for f in containers:
            wanted = self.wanted_key(sn, f)
            if wanted is _ALL:
                return entries
            if wanted is not _NONE:
                at = key_index(entries, names).get(wanted)
                if at is not None:
                    positions.add(at)
        return [entries[i] for i in sorted(positions)]

    def wanted_key(self, sn: ListNode, f: FilterNode) -> Any:
        """The key values ``f``'s content match nodes require (as the key index holds them),
        ``_NONE`` when a value can match no entry, ``_ALL`` when they do not name one key."""
        values = []
        for name, ns in sn.keys:
            leaf = sn.get_data_child(name, ns)
            matching = [c for c in f.children if c.is_content_match and self.matches(c, leaf)]
            if len(matching) != 1 or not isinstance(leaf, TerminalNode):
                return _ALL
            try:
                values.append(
                    self.schema.text_to_raw(leaf, matching[0].text or "", matching[0].nsmap)
                )
            except SchemaError:
                return _NONE
        return key_of_values(values[0] if len(values) == 1 else tuple(values))


_ALL = object()  # no key named: every entry is a candidate
_NONE = object()  # a key value no entry can have


def _union(sn: InternalNode, parts: Sequence[Tree]) -> Tree:
    """Merge results of several containment nodes for the same data node (§6.2.5: OR)."""
    if not parts:
        return {}
    merged = dict(parts[0])
    for part in parts[1:]:
        for member, value in part.items():
            if member not in merged:
                merged[member] = value
                continue
            csn, _ = member_node(sn, member)
            if isinstance(csn, ListNode):
                merged[member] = _union_entries(csn, merged[member], value)
            elif isinstance(csn, LeafListNode):
                merged[member] = merged[member] + [v for v in value if v not in merged[member]]
            elif isinstance(csn, InternalNode) and isinstance(value, dict):
                merged[member] = _union(csn, [merged[member], value])
    return merged


def _union_entries(sn: ListNode, a: list[Tree], b: list[Tree]) -> list[Tree]:
    keys = [k if ns == sn.ns else f"{ns}:{k}" for k, ns in sn.keys]
    out = list(a)
    for entry in b:
        idx = next(
            (i for i, e in enumerate(out) if keys and all(e.get(k) == entry.get(k) for k in keys)),
            None,
        )
        if idx is None:
            out.append(entry)
        else:
            out[idx] = _union(sn, [out[idx], entry])
    return out

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

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
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
from zerotouch_plugin.errors import PayloadTooLarge, SchemaError, ZerotouchError

__all__ = [
    "MAX_FILTER_NODES",
    "MAX_STEPS",
    "FilterNode",
    "SubtreeTooCostly",
    "apply_subtree_filter",
    "parse_subtree_filter",
]

Tree = dict[str, Any]
MAX_FILTER_NODES = 100_000  # elements of one filter: its parsing takes well under a second
MAX_STEPS = 1_000_000  # steps of one filter: about a second of the event loop at most


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
    """The filter nodes below a ``<filter type="subtree">`` element; more than
    ``MAX_FILTER_NODES`` are refused before they are parsed (RFC 6241 Appendix A: too-big)."""
    elements = filter_element.iter(etree.Element)
    if next(islice(elements, MAX_FILTER_NODES + 1, None), None) is not None:
        raise PayloadTooLarge(
            f"the subtree filter has more than {MAX_FILTER_NODES} elements: name the entries "
            "or subtrees wanted more narrowly, or ask for fewer at once",
            path="/filter",
        )
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
    schema: DeviceSchema,
    tree: Mapping[str, Any],
    nodes: Sequence[FilterNode],
    budget: int = MAX_STEPS,
) -> Tree:
    """The part of ``tree`` the filter selects; an empty filter selects nothing (§6.4.2).

    It runs on the event loop, so its work is counted (``budget`` steps, one per filter node
    compared with a data node or per node merged) and a filter over it is refused."""
    result = _Filter(schema, budget).object(schema.root, tree, nodes, top=True)
    return result or {}


class SubtreeTooCostly(ZerotouchError):
    """A subtree filter whose evaluation would take more than its budget of steps (RFC 6241
    Appendix A: resource-denied, "insufficient resources"), as ``XPathTooCostly``."""

    reason = "subtree-too-costly"
    http_status = 503
    netconf_tag = "resource-denied"


class _Filter:
    def __init__(self, schema: DeviceSchema, budget: int) -> None:
        self.schema = schema
        self.budget = budget
        self.steps = 0

    def charge(self, steps: int) -> None:
        self.steps += steps
        if self.steps > self.budget:
            raise SubtreeTooCostly(
                f"the subtree filter needs more than {self.budget} steps (filter nodes times "
                "the data nodes they are compared with): name the entries or subtrees wanted "
                "more narrowly, or ask for fewer at once",
                path="/filter",
            )

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
        self.charge(1 + len(members) * len(nodes))
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
                entries = self.entries(csn, value, containers)
                if entries:
                    result[member] = entries
            else:
                parts = [self.object(csn, value, f.children, False) for f in containers]
                merged = self.union(csn, [p for p in parts if p])
                if merged:
                    result[member] = merged
        return result

    def entries(
        self, sn: ListNode, entries: list[Any], containers: Sequence[FilterNode]
    ) -> list[Tree]:
        """The entries the sibling containment nodes of a list select (§6.2.5: OR'ed). A node
        whose content match nodes name every key can only select the entry with those keys
        (found in the list's key index), so each entry is matched against the nodes naming
        it and those naming no key: the cost grows with filter plus data, not their product."""
        names = key_members(sn)
        index = key_index(entries, names) if names else {}
        everywhere: list[int] = []  # positions in ``containers``
        naming: dict[int, list[int]] = {}  # entry position -> the containers naming its keys
        for i, f in enumerate(containers):
            wanted = self.wanted_key(sn, f) if names else _ALL
            if wanted is _ALL:
                everywhere.append(i)
            elif wanted is not _NONE and (at := index.get(wanted)) is not None:
                naming.setdefault(at, []).append(i)
        self.charge(sum(1 + len(f.children) for f in containers))
        positions = range(len(entries)) if everywhere else sorted(naming)
        selected = []
        for at in positions:
            chosen = sorted(naming.get(at, []) + everywhere)
            parts = [self.object(sn, entries[at], containers[i].children, False) for i in chosen]
            merged = self.union(sn, [p for p in parts if p])
            if merged:
                selected.append(merged)
        return selected

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

    def union(self, sn: InternalNode, parts: Sequence[Tree]) -> Tree:
        """Merge results of several containment nodes for the same data node (§6.2.5: OR)."""
        if not parts:
            return {}
        merged = dict(parts[0])
        for part in parts[1:]:
            self.charge(len(part))
            for member, value in part.items():
                if member not in merged:
                    merged[member] = value
                    continue
                csn, _ = member_node(sn, member)
                if isinstance(csn, ListNode):
                    merged[member] = self.union_entries(csn, merged[member], value)
                elif isinstance(csn, LeafListNode):
                    have = set(map(key_of_values, merged[member]))
                    merged[member] = merged[member] + [
                        v for v in value if key_of_values(v) not in have
                    ]
                elif isinstance(csn, InternalNode) and isinstance(value, dict):
                    merged[member] = self.union(csn, [merged[member], value])
        return merged

    def union_entries(self, sn: ListNode, a: list[Tree], b: list[Tree]) -> list[Tree]:
        """Entries of ``b`` merged into those of ``a`` with the same keys (found by a dict)."""
        self.charge(len(b))
        keys = [k if ns == sn.ns else f"{ns}:{k}" for k, ns in sn.keys]
        if not keys:
            return a + b
        out = list(a)
        at: dict[Hashable, int] = {}
        for i, entry in enumerate(out):
            at.setdefault(_entry_id(entry, keys), i)
        for entry in b:
            ident = _entry_id(entry, keys)
            if ident in at:
                out[at[ident]] = self.union(sn, [out[at[ident]], entry])
            else:
                at[ident] = len(out)
                out.append(entry)
        return out


_ALL = object()  # no key named: every entry is a candidate
_NONE = object()  # a key value no entry can have


def _entry_id(entry: Tree, keys: Sequence[str]) -> Hashable:
    return key_of_values(tuple(entry.get(k) for k in keys))

"""A fast acceptance check of voucher and voucher-request bodies, compiled from yangson's model.

yangson's full validation derives the container's schema pattern member by member
(``InternalNode._check_schema_pattern``), which is most of its cost. A voucher body (RFC 8366
§5.3) and a voucher-request body (RFC 8995 §3.3) are flat: their members are leaves. For
such a container the schema rules come down to: every member is a known leaf whose yangson
type accepts it, the mandatory leaves are there, and each ``must`` (only of the kind "a
sibling is there" / "is not there") holds. The tables are compiled from the same DataModel,
once, keeping each leaf's yangson type, so the two cannot disagree on types or restrictions.

The check only ever answers "yangson accepts this" or "ask yangson": a member it did not
compile (unknown, qualified, metadata, a leaf with ``when`` or a ``must`` it cannot read, a
node that is not a leaf) or a failed rule leaves the verdict, and the error, to yangson.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from yangson import DataModel
from yangson.datatype import BinaryType, BooleanType, DataType, EnumerationType, StringType
from yangson.enumerations import NodeStatus
from yangson.schemanode import ContainerNode, DataNode, InternalNode, LeafNode, SchemaNode

__all__ = ["BodyCheck", "LeafCheck", "SiblingRule", "body_check"]

# Types whose whole check is ``from_raw`` then ``in`` (no instance look-ups, no unions).
_CHECKED_TYPES: frozenset[type[DataType[Any, Any]]] = frozenset(
    {StringType, BinaryType, EnumerationType, BooleanType}
)

# ``must`` expressions as yangson prints them, that ask only whether a sibling leaf is there
# (RFC 8366 §5.3: nonce / expires-on exclusive, last-renewal-date needs expires-on): the
# pattern and whether the sibling must be present.
_SIBLING_MUSTS: tuple[tuple[re.Pattern[str], bool], ...] = (
    (re.compile(r"not\(\.\./([\w.-]+):([\w.-]+)\)"), False),
    (re.compile(r"\.\./([\w.-]+):([\w.-]+)"), True),
)


@dataclass(frozen=True, slots=True)
class SiblingRule:
    """A leaf's ``must`` that holds when ``sibling`` is there (``present``) or is not."""

    expression: str
    sibling: str
    present: bool


@dataclass(frozen=True, slots=True)
class LeafCheck:
    """One leaf: its yangson type (restrictions included) and its ``must`` rules."""

    type: DataType[Any, Any]
    rules: tuple[SiblingRule, ...]


@dataclass(frozen=True, slots=True)
class BodyCheck:
    """The compiled rules of one artifact body; immutable, so threads share it."""

    leaves: Mapping[str, LeafCheck]
    mandatory: frozenset[str]

    def accepts(self, body: Mapping[str, Any]) -> bool:
        """True only if yangson accepts ``body``; False means: let yangson decide."""
        try:
            return self._accepts(body)
        except (TypeError, ValueError):  # b64decode refuses non-ASCII text: yangson says how
            return False

    def _accepts(self, body: Mapping[str, Any]) -> bool:
        for name, raw in body.items():
            leaf = self.leaves.get(name)
            if leaf is None:
                return False
            cooked = leaf.type.from_raw(raw)
            if cooked is None or cooked not in leaf.type:
                return False
            for rule in leaf.rules:
                if (rule.sibling in body) is not rule.present:
                    return False
        return self.mandatory <= body.keys()


def body_check(model: DataModel, holder: str) -> BodyCheck | None:
    """The check of the body under ``holder`` (``module:container``), or None when the schema
    holds something it cannot decide (then yangson decides every body)."""
    module, name = holder.split(":", 1)
    root = model.schema
    holder_node = root.get_data_child(name, module)
    if not isinstance(holder_node, ContainerNode) or _has_rules(holder_node):
        return None
    if any(c.mandatory for c in root.children if c is not holder_node):
        return None
    body = holder_node.get_data_child("voucher", holder_node.ns)
    if holder_node.children != [body] or not isinstance(body, ContainerNode) or _has_rules(body):
        return None
    if not all(isinstance(c, DataNode) for c in body.children):
        return None  # a choice: its cases make a pattern of their own
    leaves = {c.name: check for c in body.children if (check := _leaf_check(c, body))}
    # Every mandatory node, deprecated ones too: requiring more only sends more to yangson.
    mandatory = frozenset(c.iname() for c in body.children if c.mandatory)
    return BodyCheck(leaves=leaves, mandatory=mandatory)


def _has_rules(node: SchemaNode) -> bool:
    """A must or when on a container: a rule over the whole body, not compiled."""
    return bool(node.must) or node.when is not None


def _leaf_check(node: SchemaNode, body: InternalNode) -> LeafCheck | None:
    """The leaf's check, or None (the member goes to yangson) for anything else."""
    if (
        type(node) is not LeafNode
        or node.ns != body.ns
        or node.when is not None
        or node.status is not NodeStatus.current
        or type(node.type) not in _CHECKED_TYPES
    ):
        return None
    rules = [_sibling_rule(str(m.expression), body) for m in node.must]
    known = tuple(r for r in rules if r is not None)
    return LeafCheck(type=node.type, rules=known) if len(known) == len(rules) else None


def _sibling_rule(expression: str, body: InternalNode) -> SiblingRule | None:
    for pattern, present in _SIBLING_MUSTS:
        found = pattern.fullmatch(expression)
        if found and found[1] == body.ns and body.get_data_child(found[2], body.ns):
            return SiblingRule(expression=expression, sibling=found[2], present=present)
    return None

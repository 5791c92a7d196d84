"""NETCONF XPath filtering (RFC 6241 §8.9) over RFC 7951 trees, with yangson's XPath engine.

The ``select`` expression is evaluated on the datastore's instance tree; prefixes are those
declared on the ``<filter>`` element (§8.9.1). The result holds every selected node with its
subtree, plus its ancestors and, for list entries on the way, their keys (§8.9.1: "the
ancestors ... and the key leafs"). Pure: no I/O.

yangson evaluates YANG XPath, whose accessible tree holds default values and non-presence
containers (RFC 7950 §6.4.1), so ``/*`` or ``//*`` also select nodes that the datastore does
not hold. The reply is always a part of what the unfiltered ``<get>``/``<get-config>`` would
return (no with-defaults capability, RFC 6243: defaults are not reported), so such nodes are
left out; they still count where a predicate tests them (``[if:enabled='true']``).

Whatever the expression, the answer is data or a ``ZerotouchError`` with a message: a
``SchemaError`` (``invalid-value``) for expressions that do not parse, name unknown prefixes,
do not select a node-set or mix types XPath 1.0 does not combine; an ``XPathFailed``
(``operation-failed``) should yangson's evaluator fail in any other way; an ``XPathTooCostly``
(``resource-denied``) for an expression that nests more than ``MAX_NESTED_SCANS`` tree-wide
paths in predicates (``//*[//*[//*]]``: each level evaluates the next once per node, so the
cost is the tree's size to that power), refused before it is evaluated. The time an accepted
expression may take is bounded by the caller (``xpath_worker.py``: a worker process).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from yangson.exceptions import YangsonException
from yangson.instance import InstanceNode
from yangson.schemadata import ModuleData, SchemaContext
from yangson.schemanode import InternalNode, LeafListNode, ListNode
from yangson.xpathast import Axis, Expr, FilterExpr, LocationPath, PathExpr, Root, Step
from yangson.xpathparser import XPathParser

from zerotouch_plugin.device.edit import member_node
from zerotouch_plugin.device.schema import DeviceSchema
from zerotouch_plugin.errors import SchemaError, ZerotouchError

__all__ = ["MAX_NESTED_SCANS", "XPathFailed", "XPathTooCostly", "apply_xpath_filter"]

log = logging.getLogger(__name__)

Tree = dict[str, Any]
_FILTER_MODULE = ("netconf-xpath-filter", "")  # where the filter's prefixes are declared
_WHOLE: Any = object()  # trie mark: the node is selected, copy its whole subtree
MAX_NESTED_SCANS = 2  # tree-wide paths nested in predicates: at most N**2 steps
# Axes that may give a node-set as large as the tree (so may a path from the root); the
# rest give a node's children, ancestors or itself. A static bound, permissive on purpose:
# what it lets through is still bounded in time by the caller.
_WIDE_AXES = frozenset(
    {Axis.descendant, Axis.descendant_or_self, Axis.following_sibling, Axis.preceding_sibling}
)


# What yangson's evaluator fails with on valid XPath 1.0 it does not implement, in words the
# client can act on (the traceback goes to the server's log).
_ENGINE_LIMITS: Mapping[type[Exception], str] = {
    OverflowError: "it uses an infinite number (such as 1 div 0) where the XPath engine "
    "needs a whole number, e.g. as a position",
    AttributeError: "it applies an operator, a predicate or a function to a kind of value "
    "the XPath engine does not support there (e.g. unary minus on a node-set, a predicate "
    "on a string, deref() of a non-reference)",
}


class XPathFailed(ZerotouchError):
    """The XPath engine could not evaluate a filter it parsed (RFC 6241 Appendix A:
    operation-failed); the details are in the server's log."""

    reason = "xpath-failed"


class XPathTooCostly(ZerotouchError):
    """A filter over the evaluation budget: nested too deeply to be evaluated at all, or out
    of time (RFC 6241 Appendix A: resource-denied, "insufficient resources")."""

    reason = "xpath-too-costly"
    http_status = 503
    netconf_tag = "resource-denied"


def apply_xpath_filter(
    schema: DeviceSchema,
    tree: Mapping[str, Any],
    select: str,
    namespaces: Mapping[str | None, str],
) -> Tree:
    """The nodes of ``tree`` that ``select`` picks, with ancestors and list keys."""
    selected = _evaluate(schema, tree, select, namespaces)
    if not isinstance(selected, list):
        raise SchemaError(
            f"the XPath filter {select!r} gives a {_kind(selected)}, not a node-set "
            "(RFC 6241 §8.9)",
            path="/filter",
        )
    trie: dict[Any, Any] = {}
    for node in selected:
        if not isinstance(node, InstanceNode):
            continue
        if not node.path:
            return dict(tree)  # "/" (or ".", "..", current()) selects everything
        _mark(trie, node.path)
    return _copy_object(schema.root, tree, trie)


def _evaluate(
    schema: DeviceSchema,
    tree: Mapping[str, Any],
    select: str,
    namespaces: Mapping[str | None, str],
) -> Any:
    data = schema.data_model.schema_data
    prefixes = {}
    for prefix, ns in namespaces.items():
        module = schema.by_namespace.get(ns)
        if prefix and module is not None:
            prefixes[prefix] = (module.name, module.revision)
    holder = ModuleData(_FILTER_MODULE, _FILTER_MODULE)
    holder.prefix_map = prefixes
    data.modules[_FILTER_MODULE] = holder
    try:
        expr = XPathParser(select, SchemaContext(data, None, _FILTER_MODULE)).parse()
        scans = _scans(expr)
        if scans > MAX_NESTED_SCANS:
            raise XPathTooCostly(
                f"the XPath filter {select[:60]!r} nests {scans} tree-wide paths (// or an "
                f"absolute path, each in a predicate of the one before); at most "
                f"{MAX_NESTED_SCANS} are evaluated: the cost grows as the tree's size to that "
                "power",
                path="/filter",
            )
        return expr.evaluate(schema.data_model.from_raw(dict(tree)))
    except ZerotouchError:
        raise
    except YangsonException as exc:
        raise SchemaError(f"bad XPath filter {select!r}: {exc}", path="/filter") from None
    except RecursionError:
        raise SchemaError(
            f"the XPath filter {select[:60]!r}... nests too deeply", path="/filter"
        ) from None
    except TypeError as exc:
        # XPath 1.0 §3.3, §4: e.g. a union of a number, a node-set taken as a number, a
        # function given the wrong kind of argument; yangson lets Python's TypeError out.
        raise SchemaError(
            f"bad XPath filter {select!r}: operands of the wrong type ({exc})", path="/filter"
        ) from None
    except Exception as exc:  # the engine's own failure: never an internal error
        log.warning("XPath filter %r: yangson failed", select, exc_info=True)
        reason = _ENGINE_LIMITS.get(type(exc), "the XPath engine failed on it")
        raise XPathFailed(
            f"the XPath filter {select!r} could not be evaluated: {reason}", path="/filter"
        ) from None
    finally:
        del data.modules[_FILTER_MODULE]


def _scans(expr: Expr) -> int:
    """How many tree-wide node-sets nest in ``expr``: a path's predicates are evaluated once
    per node it selects, so its cost is about (tree size) ** this number."""
    if not isinstance(expr, (LocationPath, PathExpr, FilterExpr, Step, Root)):
        return max((_scans(sub) for sub in _operands(expr)), default=0)
    wide = 0
    per_node = 0  # the costliest predicate, evaluated per selected node
    pending: list[Expr] = [expr]
    while pending:  # the path's steps, left to right or not: only their kinds count
        part = pending.pop()
        if isinstance(part, (LocationPath, PathExpr)):
            pending += [part.left, part.right]
        elif isinstance(part, (FilterExpr, Step)):
            if isinstance(part, FilterExpr):
                pending.append(part.primary)
            elif part.axis in _WIDE_AXES:
                wide = 1
            per_node = max([per_node, *(_scans(p) for p in part.predicates)])
        elif isinstance(part, Root):
            wide = 1
        else:  # a function call or parenthesised expression the path starts from
            wide = max(wide, _scans(part))
    return wide + per_node


def _operands(expr: Expr) -> list[Expr]:
    found: list[Expr] = []
    for value in vars(expr).values():
        if isinstance(value, Expr):
            found.append(value)
        elif isinstance(value, list):
            found += [v for v in value if isinstance(v, Expr)]
    return found


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "string" if isinstance(value, str) else type(value).__name__


def _mark(trie: dict[Any, Any], path: Sequence[Any]) -> None:
    """Record ``path`` (member names and array indexes) as selected, whole."""
    node = trie
    for step in path[:-1]:
        below = node.get(step)
        if below is _WHOLE:
            return  # an ancestor is already selected with its whole subtree
        if below is None:
            below = node[step] = {}
        node = below
    node[path[-1]] = _WHOLE


def _keys(sn: ListNode) -> list[str]:
    return [k if ns == sn.ns else f"{ns}:{k}" for k, ns in sn.keys]


def _copy_object(sn: InternalNode, src: Mapping[str, Any], trie: Mapping[Any, Any]) -> Tree:
    """The members of ``src`` the trie reaches, in the source's order; a member the source
    does not hold (a default, an empty non-presence container) is left out."""
    out: Tree = {}
    for member, value in src.items():
        sub = trie.get(member)
        if sub is None:
            continue
        if sub is _WHOLE:
            out[member] = copy.deepcopy(value)  # never shared with the datastore
            continue
        csn, _ = member_node(sn, member)
        if isinstance(csn, LeafListNode):
            kept = [v for i, v in enumerate(value) if i in sub]
            if kept:
                out[member] = kept
        elif isinstance(csn, ListNode):
            entries = [
                e
                for e in (_copy_entry(csn, v, sub[i]) for i, v in enumerate(value) if i in sub)
                if e is not None
            ]
            if entries:
                out[member] = entries
        elif isinstance(csn, InternalNode) and isinstance(value, Mapping):
            inner = _copy_object(csn, value, sub)
            if inner:
                out[member] = inner
    return out


def _copy_entry(sn: ListNode, entry: Mapping[str, Any], sub: Any) -> Tree | None:
    """The entry whole, or its keys and the selected part (None: nothing selected is held)."""
    if sub is _WHOLE:
        return copy.deepcopy(dict(entry))
    inner = _copy_object(sn, entry, sub)
    if not inner:
        return None
    keys = {k: copy.deepcopy(entry[k]) for k in _keys(sn) if k in entry}
    return {**keys, **inner}

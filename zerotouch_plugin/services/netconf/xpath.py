"""NETCONF XPath filtering (RFC 6241 §8.9) over RFC 7951 trees, with yangson's XPath engine.

The ``select`` expression is evaluated on the datastore's instance tree; prefixes are those
declared on the ``<filter>`` element (§8.9.1). The result holds every selected node with its
subtree, plus its ancestors and, for list entries on the way, their keys (§8.9.1: "the
ancestors ... and the key leafs"). Pure: no I/O.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from yangson.exceptions import YangsonException
from yangson.instance import InstanceNode
from yangson.schemadata import ModuleData, SchemaContext
from yangson.schemanode import InternalNode, LeafListNode, ListNode
from yangson.xpathparser import XPathParser

from zerotouch_plugin.device.edit import member_node
from zerotouch_plugin.device.schema import DeviceSchema
from zerotouch_plugin.errors import SchemaError

__all__ = ["apply_xpath_filter"]

Tree = dict[str, Any]
_FILTER_MODULE = ("netconf-xpath-filter", "")  # where the filter's prefixes are declared


def apply_xpath_filter(
    schema: DeviceSchema,
    tree: Mapping[str, Any],
    select: str,
    namespaces: Mapping[str | None, str],
) -> Tree:
    """The nodes of ``tree`` that ``select`` picks, with ancestors and list keys."""
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
        selected = expr.evaluate(schema.data_model.from_raw(dict(tree)))
    except YangsonException as exc:
        raise SchemaError(f"bad XPath filter {select!r}: {exc}", path="/filter") from None
    finally:
        del data.modules[_FILTER_MODULE]
    if not isinstance(selected, list):
        raise SchemaError("the XPath filter must select a node-set (RFC 6241 §8.9)")
    result: Tree = {}
    for node in selected:
        if isinstance(node, InstanceNode):
            if not node.path:
                return dict(tree)  # "/" selects everything
            _graft(schema, tree, result, node.path)
    return result


def _keys(sn: ListNode) -> list[str]:
    return [k if ns == sn.ns else f"{ns}:{k}" for k, ns in sn.keys]


def _graft(
    schema: DeviceSchema, source: Mapping[str, Any], result: Tree, path: Sequence[Any]
) -> None:
    """Copy the node at ``path`` (member names and array indexes) from source to result."""
    sn: InternalNode = schema.root
    src: Mapping[str, Any] = source
    dst: Tree = result
    i = 0
    while i < len(path):
        key = path[i]
        csn, _ = member_node(sn, key)
        value = src[key]
        if i == len(path) - 1:
            dst[key] = copy.deepcopy(value)  # the selected node, whole (never shared)
            return
        index = path[i + 1]
        if isinstance(csn, LeafListNode):
            items = dst.setdefault(key, [])
            if value[index] not in items:
                items.append(value[index])
            return
        if isinstance(csn, ListNode):
            entry = value[index]
            keys = _keys(csn)
            entries = dst.setdefault(key, [])
            found = next(
                (e for e in entries if keys and all(e.get(k) == entry.get(k) for k in keys)), None
            )
            if i + 1 == len(path) - 1:  # the entry itself is selected
                if found is not None:
                    entries.remove(found)
                entries.append(copy.deepcopy(entry))
                return
            if found is None:
                found = {k: entry[k] for k in keys if k in entry}
                entries.append(found)
            dst, src, sn = found, entry, csn
            i += 2
            continue
        if not isinstance(csn, InternalNode):
            return
        dst = dst.setdefault(key, {})
        src, sn = value, csn
        i += 1

"""XML encoding of YANG data (RFC 7950 §7) to and from RFC 7951 JSON trees, via the schema.

Used by NETCONF for every payload and by RESTCONF for ``application/yang-data+xml``. The
NETCONF ``operation`` attribute (RFC 6241 §7.2) is carried as the RFC 7952 annotation that
``device/edit.py`` understands. Output is built as text directly (the hot path of get-config).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from lxml import etree
from yangson.datatype import IdentityrefType, LeafrefType
from yangson.schemanode import (
    ContainerNode,
    DataNode,
    InternalNode,
    LeafListNode,
    ListNode,
    TerminalNode,
)

from zerotouch_plugin.device.edit import OPERATION, VALUELESS, member_node
from zerotouch_plugin.device.schema import NOT_XML_CHAR, DeviceSchema
from zerotouch_plugin.errors import SchemaError, UnknownElement

__all__ = ["NETCONF_BASE_NS", "node_to_xml", "tree_from_xml", "tree_to_xml"]

NETCONF_BASE_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
_OPERATION_ATTR = f"{{{NETCONF_BASE_NS}}}operation"

Tree = dict[str, Any]


def tree_to_xml(schema: DeviceSchema, tree: Mapping[str, Any]) -> str:
    """The top-level members of ``tree`` as a sequence of XML elements (no wrapper)."""
    out: list[str] = []
    _emit_object(schema, schema.root, tree, out)
    return "".join(out)


def node_to_xml(
    schema: DeviceSchema,
    node: InternalNode,
    content: Mapping[str, Any],
    *,
    inherit_namespace: bool = False,
) -> str:
    """The children of a non-data node (RPC input/output, notification) as XML elements,
    each carrying its namespace unless ``inherit_namespace`` (the enclosing element already
    declares the node's namespace as default)."""
    out: list[str] = []
    parent_ns = node.ns if inherit_namespace else None
    for member, value in content.items():
        if not member.startswith("@"):
            csn, _ = member_node(node, member)
            _emit_member(schema, csn, value, parent_ns, out)
    return "".join(out)


def _emit_object(
    schema: DeviceSchema,
    sn: InternalNode,
    obj: Mapping[str, Any],
    out: list[str],
) -> None:
    members = [m for m in obj if not m.startswith("@")]
    if isinstance(sn, ListNode):  # RFC 7950 §7.8.5: keys first, in key order
        keys = [k if ns == sn.ns else f"{ns}:{k}" for k, ns in sn.keys]
        members = [k for k in keys if k in obj] + [m for m in members if m not in keys]
    for member in members:
        csn, _ = member_node(sn, member)
        _emit_member(schema, csn, obj[member], sn.ns, out)


def _open(schema: DeviceSchema, csn: DataNode, parent_ns: str | None) -> tuple[str, str]:
    if csn.ns == parent_ns:
        return f"<{csn.name}", f"</{csn.name}>"
    ns = schema.by_name[csn.ns].namespace
    return f"<{csn.name} xmlns={quoteattr(ns)}", f"</{csn.name}>"


def _emit_member(
    schema: DeviceSchema, csn: DataNode, value: Any, parent_ns: str | None, out: list[str]
) -> None:
    start, end = _open(schema, csn, parent_ns)
    if isinstance(csn, ListNode):
        for entry in value:
            out.append(start + ">")
            _emit_object(schema, csn, entry, out)
            out.append(end)
    elif isinstance(csn, ContainerNode):
        out.append(start + ">")
        _emit_object(schema, csn, value, out)
        out.append(end)
    elif isinstance(csn, LeafListNode):
        for item in value:
            out.append(_leaf(schema, csn, item, start, end))
    elif isinstance(csn, TerminalNode):
        out.append(_leaf(schema, csn, value, start, end))
    else:
        raise SchemaError("anydata and anyxml cannot be encoded", path=csn.name)


def _leaf(schema: DeviceSchema, csn: TerminalNode, raw: Any, start: str, end: str) -> str:
    dtype = csn.type
    while isinstance(dtype, LeafrefType):
        dtype = dtype.ref_type
    if isinstance(dtype, IdentityrefType) and isinstance(raw, str) and ":" in raw:
        module_name, _, local = raw.partition(":")
        module = schema.by_name[module_name]
        decl = f" xmlns:{module.prefix}={quoteattr(module.namespace)}"
        return f"{start}{decl}>{module.prefix}:{escape(local)}{end}"
    text = schema.raw_to_text(csn, raw)
    if not text:
        return start + "/>"
    # Writes refuse such characters, but state is published unchecked and may quote a peer
    # (a registrar's refusal): U+FFFD keeps the reply well-formed XML (XML 1.0 §2.2).
    return f"{start}>{escape(NOT_XML_CHAR.sub(chr(0xFFFD), text))}{end}"


def tree_from_xml(
    schema: DeviceSchema,
    elements: Iterable[etree._Element],
    *,
    operations: bool = False,
    parent: InternalNode | None = None,
) -> Tree:
    """RFC 7951 tree of the top-level data elements (or children of ``parent``'s node).

    With ``operations``, ``nc:operation`` attributes become RFC 7952 annotations.
    """
    result: Tree = {}
    node = parent if parent is not None else schema.root
    for el in elements:
        _parse_member(schema, node, el, result, operations, "")
    return result


def _split(tag: Any, path: str) -> tuple[str, str]:
    if not isinstance(tag, str):
        raise SchemaError("unexpected XML node", path=path)
    if tag[0] != "{":
        raise SchemaError(f"element {tag!r} has no namespace", path=f"{path}/{tag}")
    ns, _, local = tag[1:].partition("}")
    return ns, local


def _parse_member(
    schema: DeviceSchema,
    sn: InternalNode,
    el: etree._Element,
    out: Tree,
    operations: bool,
    path: str,
) -> None:
    ns, local = _split(el.tag, path)
    module = schema.by_namespace.get(ns)
    child = sn.get_data_child(local, module.name) if module is not None else None
    if not isinstance(child, DataNode):
        raise UnknownElement(
            f"unknown element {local!r} in namespace {ns}",
            path=f"{path}/{local}",
            info={"bad-element": local},
        )
    key = local if child.ns == sn.ns else f"{child.ns}:{local}"
    cpath = f"{path}/{key}"
    op = el.get(_OPERATION_ATTR) if operations else None
    annotation = {OPERATION: op} if op is not None else None
    if isinstance(child, (ListNode, ContainerNode)):
        obj: Tree = {}
        for sub in el:
            if isinstance(sub.tag, str):
                _parse_member(schema, child, sub, obj, operations, cpath)
        if annotation:
            obj["@"] = annotation
        if isinstance(child, ListNode):
            out.setdefault(key, []).append(obj)
        elif key in out:
            raise SchemaError("container given twice", path=cpath)
        else:
            out[key] = obj
        return
    if not isinstance(child, TerminalNode):
        raise SchemaError("anydata and anyxml are not supported here", path=cpath)
    if any(isinstance(sub.tag, str) for sub in el):
        raise SchemaError("a leaf cannot have child elements", path=cpath)
    if op in VALUELESS and not isinstance(child, LeafListNode) and not (el.text or "").strip():
        raw = None  # RFC 6241 §7.2: deletes the leaf, whatever its type; <enabled/> has no value
    else:
        try:
            raw = schema.text_to_raw(child, el.text or "", el.nsmap)
        except SchemaError as exc:
            raise SchemaError(exc.message, path=cpath) from None
    if isinstance(child, LeafListNode):
        out.setdefault(key, []).append(raw)
        if operations:
            out.setdefault("@" + key, []).append(annotation)
        return
    if key in out:
        raise SchemaError("leaf given twice", path=cpath)
    out[key] = raw
    if annotation:
        out["@" + key] = annotation

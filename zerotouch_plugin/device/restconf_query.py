"""The RFC 8040 §4.8 query parameters of a RESTCONF GET: ``content`` (§4.8.1), ``depth``
(§4.8.2) and ``with-defaults`` (§4.8.9), parsed from their text and applied to RFC 7951 data.

Sans-IO: the listener hands over the query text and the tree it read; a bad value is an
``InvalidParameter`` that names what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Final

from yangson.enumerations import ContentType
from yangson.exceptions import YangsonException
from yangson.schemanode import ContainerNode, DataNode, InternalNode, ListNode, TerminalNode

from zerotouch_plugin._text import is_decimal
from zerotouch_plugin.device.edit import member_node
from zerotouch_plugin.device.schema import DeviceSchema, key_members
from zerotouch_plugin.errors import InvalidParameter, SchemaError

__all__ = [
    "DROP",
    "GET_PARAMS",
    "Content",
    "filter_node",
    "filter_object",
    "parse_content",
    "parse_depth",
    "with_defaults",
]

Tree = dict[str, Any]
GET_PARAMS: frozenset[str] = frozenset({"content", "depth", "with-defaults"})
_WITH_DEFAULTS: frozenset[str] = frozenset({"explicit", "report-all"})  # RFC 8040 §4.8.9
# What filtering leaves of a node none of whose data was asked for.
DROP: Final = object()


class Content(StrEnum):
    """RFC 8040 §4.8.1 ``content`` query parameter."""

    CONFIG = "config"
    NONCONFIG = "nonconfig"
    ALL = "all"


def parse_content(text: str) -> Content:
    """Which data a GET returns: configuration, state, or both."""
    try:
        return Content(text)
    except ValueError:
        raise InvalidParameter(
            "content must be config, nonconfig or all (RFC 8040 §4.8.1)"
        ) from None


def parse_depth(text: str) -> int | None:
    """The depth limit, None for ``unbounded``."""
    if text == "unbounded":
        return None
    if is_decimal(text) and 1 <= int(text) <= 65535:
        return int(text)
    raise InvalidParameter("depth must be 1..65535 or unbounded (RFC 8040 §4.8.2)")


def with_defaults(schema: DeviceSchema, tree: Tree, content: Content, mode: str) -> Tree:
    """``tree`` as the ``with-defaults`` mode asks: as stored for ``explicit``, with every
    default a node would take for ``report-all`` (RFC 6243)."""
    if mode not in _WITH_DEFAULTS:
        raise InvalidParameter(f"with-defaults={mode} is not supported (explicit, report-all)")
    if mode == "explicit":
        return tree
    ctype = ContentType.config if content is Content.CONFIG else ContentType.all
    try:
        raw = schema.data_model.from_raw(tree).add_defaults(ctype).raw_value()
    except YangsonException as exc:
        raise SchemaError(f"cannot add defaults: {exc}") from None
    return dict(raw)


def filter_object(
    sn: InternalNode, obj: Mapping[str, Any], content: Content, depth: int | None
) -> Tree:
    out: Tree = {}
    for member, value in obj.items():
        if member.startswith("@"):
            continue
        csn, _ = member_node(sn, member)
        kept = filter_node(csn, value, content, depth, entry=False)
        if kept is not DROP:
            out[member] = kept
    return out


def filter_node(
    csn: DataNode, value: Any, content: Content, depth: int | None, *, entry: bool
) -> Any:
    """``value`` of ``csn`` reduced to the requested content and depth, or DROP.

    The target node is at depth 1 (RFC 8040 §4.8.2); list keys are always kept so entries
    stay identifiable.
    """
    if depth is not None and depth < 1:
        return DROP
    if not csn.config:
        if content is Content.CONFIG:
            return DROP
        content = Content.ALL  # everything below a state node is state
    elif content is Content.NONCONFIG and isinstance(csn, TerminalNode):
        return DROP
    below = None if depth is None else depth - 1
    if isinstance(csn, ListNode):
        entries = [value] if entry else value
        kept = [
            e for e in (_filter_entry(csn, e, content, below) for e in entries) if e is not DROP
        ]
        if not kept:
            return DROP
        return kept[0] if entry else kept
    if isinstance(csn, ContainerNode):
        inner = filter_object(csn, value, content, below)
        if not inner and content is Content.NONCONFIG:
            return DROP
        return inner
    return value


def _filter_entry(
    csn: ListNode, entry: Mapping[str, Any], content: Content, depth: int | None
) -> Any:
    keys = key_members(csn)
    inner = filter_object(csn, {k: v for k, v in entry.items() if k not in keys}, content, depth)
    if not inner and content is Content.NONCONFIG:
        return DROP
    return {**{k: entry[k] for k in keys if k in entry}, **inner}

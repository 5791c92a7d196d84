"""The NETCONF operations: RPC name -> handler (RFC 6241 §7, RFC 6022, RFC 5277).

Each handler gets the session and the operation element and returns the reply content
(``None`` for ``<ok/>``); errors are raised and rendered in one place by the session.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

from lxml import etree
from yangson.schemanode import InternalNode, RpcActionNode

from zerotouch_plugin._text import is_decimal
from zerotouch_plugin.device.datastore import Datastore
from zerotouch_plugin.device.edit import Operation, apply_edit
from zerotouch_plugin.device.schema import DeviceSchema
from zerotouch_plugin.device.xmlcodec import node_to_xml, tree_from_xml, tree_to_xml
from zerotouch_plugin.errors import (
    MissingAttribute,
    MissingElement,
    RemoteError,
    SchemaError,
    UnsupportedOperation,
)
from zerotouch_plugin.services.netconf.protocol import (
    BASE_10,
    BASE_11,
    BASE_NS,
    NetconfSession,
    RpcHandler,
)
from zerotouch_plugin.services.netconf.subtree import (
    SubtreeTooCostly,
    apply_subtree_filter,
    parse_subtree_filter,
)

__all__ = ["NOTIFICATION_NS", "OPERATIONS", "capabilities", "yang_rpc_handler"]

MONITORING_NS = "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"
NOTIFICATION_NS = "urn:ietf:params:xml:ns:netconf:notification:1.0"
# Filters up to this many characters have their replies memoised; a larger one is evaluated
# every time: so large a filter is rarely sent twice, and its reply would crowd others out.
_MEMO_FILTER_MAX = 64 * 1024
_DATASTORES: Mapping[str, Datastore] = {
    "running": Datastore.RUNNING,
    "startup": Datastore.STARTUP,
}


def _q(local: str, ns: str = BASE_NS) -> str:
    return f"{{{ns}}}{local}"


def _find(op: etree._Element, name: str, ns: str = BASE_NS) -> etree._Element | None:
    """A parameter element; clients (ncclient) also send them without a namespace."""
    qualified = _q(name, ns)
    for child in op:
        if child.tag == qualified or child.tag == name:
            return child
    return None


def _param(op: etree._Element, name: str, ns: str = BASE_NS) -> str | None:
    el = _find(op, name, ns)
    return None if el is None else (el.text or "").strip()


def _choice(value: str | None, allowed: Mapping[str, Any], name: str, default: str) -> Any:
    key = default if value is None else value
    if key not in allowed:
        raise SchemaError(f"{name} must be one of {', '.join(allowed)}", path=f"/{name}")
    return allowed[key]


def _datastore_or_config(
    session: NetconfSession, op: etree._Element, param: str, *, inline: bool
) -> Datastore | etree._Element:
    """``<source>``/``<target>``: a datastore, or an inline ``<config>`` when allowed."""
    holder = _find(op, param)
    if holder is None:
        raise MissingElement(
            f"<{param}> is required", path=f"/{param}", info={"bad-element": param}
        )
    children = [c for c in holder if isinstance(c.tag, str)]
    if len(children) != 1:
        raise MissingElement(
            f"<{param}> must name exactly one datastore",
            path=f"/{param}",
            info={"bad-element": param},
        )
    local = etree.QName(children[0]).localname
    if inline and children[0].tag in (_q("config"), "config"):
        return children[0]
    if children[0].tag not in (_q(local), local) or local not in _DATASTORES:
        raise UnsupportedOperation(f"datastore {local!r} is not supported", path=f"/{param}")
    return _DATASTORES[local]


async def _config_tree(
    session: NetconfSession, config: etree._Element, *, operations: bool = False
) -> dict[str, Any]:
    """An inline ``<config>`` as an RFC 7951 tree, decoded in a thread (it may be large)."""
    schema = session.server.schema
    return await asyncio.to_thread(tree_from_xml, schema, config, operations=operations)


def _datastore(session: NetconfSession, op: etree._Element, param: str) -> Datastore:
    ds = _datastore_or_config(session, op, param, inline=False)
    assert isinstance(ds, Datastore)
    return ds


def _memo_key(kind: str, text: str) -> str | None:
    """A digest of the filter text, so a memo entry holds no copy of a client's filter; None
    for a filter over ``_MEMO_FILTER_MAX``."""
    if len(text) > _MEMO_FILTER_MAX:
        return None
    return f"{kind}:{hashlib.sha256(text.encode()).hexdigest()}"


async def _render(session: NetconfSession, ds: Datastore, op: etree._Element) -> str:
    """``<data>`` for get / get-config; unfiltered and repeated filters (up to 64 KiB) come
    from a cache.

    XPath filters are evaluated by the server's worker process within their time budget
    (``xpath_worker.py``), the event loop serving other sessions meanwhile."""
    schema = session.server.schema
    stores = session.datastores
    filt = _find(op, "filter")
    if filt is None:
        body = stores.memo(ds, "netconf-xml", lambda tree: tree_to_xml(schema, tree))
        return f"<data>{body}</data>"
    kind = filt.get("type", "subtree")
    if kind == "xpath":  # RFC 6241 §8.9
        select = filt.get("select")
        if not select:
            raise MissingAttribute(
                "an XPath filter needs a select attribute",
                info={"bad-attribute": "select", "bad-element": "filter"},
            )
        namespaces = dict(filt.nsmap)
        key = _memo_key(
            "netconf-xpath", f"{select}:{sorted((str(k), v) for k, v in namespaces.items())}"
        )

        async def build(tree: dict[str, Any]) -> str:
            selected = await session.server.xpath.apply(tree, select, namespaces)
            return tree_to_xml(schema, selected)

        if key is None:
            return f"<data>{await build(stores.view(ds))}</data>"
        return f"<data>{await stores.memo_async(ds, key, build)}</data>"
    if kind != "subtree":
        raise UnsupportedOperation(f"filter type {kind!r} is not supported")
    nodes = parse_subtree_filter(filt)
    key = _memo_key("netconf-subtree", etree.tostring(filt, encoding="unicode"))

    def build_subtree(tree: dict[str, Any]) -> str | SubtreeTooCostly:
        """A refusal is kept like a reply: the filter costs as much until the data changes,
        so a client that repeats it does not spend the budget again each time."""
        try:
            return tree_to_xml(schema, apply_subtree_filter(schema, tree, nodes))
        except SubtreeTooCostly as exc:
            return exc

    outcome = build_subtree(stores.view(ds)) if key is None else stores.memo(ds, key, build_subtree)
    if isinstance(outcome, SubtreeTooCostly):
        raise outcome.with_traceback(None)
    return f"<data>{outcome}</data>"


async def _get_config(session: NetconfSession, op: etree._Element) -> str:
    return await _render(session, _datastore(session, op, "source"), op)


async def _get(session: NetconfSession, op: etree._Element) -> str:
    return await _render(session, Datastore.OPERATIONAL, op)


_DEFAULT_OPERATIONS = {
    "merge": Operation.MERGE,
    "replace": Operation.REPLACE,
    "none": Operation.NONE,
}
_TEST_OPTIONS = {"test-then-set": False, "set": False, "test-only": True}
# Edits are applied all-or-nothing, so every error-option leaves the target unchanged on error.
_ERROR_OPTIONS = {"stop-on-error": 0, "continue-on-error": 0, "rollback-on-error": 0}


async def _edit_config(session: NetconfSession, op: etree._Element) -> None:
    """RFC 6241 §7.2; every edit is validated before it is committed (test-then-set)."""
    target = _datastore(session, op, "target")
    if target is not Datastore.RUNNING:
        raise UnsupportedOperation("edit-config targets running only (:writable-running)")
    default_op = _choice(
        _param(op, "default-operation"), _DEFAULT_OPERATIONS, "default-operation", "merge"
    )
    test_only = _choice(_param(op, "test-option"), _TEST_OPTIONS, "test-option", "test-then-set")
    _choice(_param(op, "error-option"), _ERROR_OPTIONS, "error-option", "stop-on-error")
    config = _find(op, "config")
    if config is None:
        if _find(op, "url") is not None:
            raise UnsupportedOperation("<url> is not supported (no :url capability)")
        raise MissingElement("<config> is required", path="/config", info={"bad-element": "config"})
    schema = session.server.schema
    edit = await _config_tree(session, config, operations=True)
    # §7.2: with default-operation replace, the <config> replaces the whole target.
    replace_all = default_op is Operation.REPLACE

    def change(tree: dict[str, Any]) -> dict[str, Any]:
        if replace_all:
            return apply_edit(schema, {}, edit)
        return apply_edit(schema, tree, edit, default_operation=default_op)

    await session.datastores.modify(
        target, change, session_id=session.session_id, test_only=test_only
    )


async def _copy_config(session: NetconfSession, op: etree._Element) -> None:
    """RFC 6241 §7.3: running <-> startup, or inline <config> into either."""
    source = _datastore_or_config(session, op, "source", inline=True)
    target = _datastore(session, op, "target")
    if source is target:
        raise RemoteError(f"source and target are both {target}", path="/target")
    stores = session.datastores
    if isinstance(source, Datastore):
        await stores.copy(source, target, session_id=session.session_id)
    else:
        tree = await _config_tree(session, source)
        await stores.commit(target, tree, session_id=session.session_id)


async def _delete_config(session: NetconfSession, op: etree._Element) -> None:
    await session.datastores.delete(
        _datastore(session, op, "target"), session_id=session.session_id
    )


async def _lock(session: NetconfSession, op: etree._Element) -> None:
    session.datastores.lock(_datastore(session, op, "target"), session.session_id)


async def _unlock(session: NetconfSession, op: etree._Element) -> None:
    session.datastores.unlock(_datastore(session, op, "target"), session.session_id)


async def _validate(session: NetconfSession, op: etree._Element) -> None:
    """RFC 6241 §8.6."""
    source = _datastore_or_config(session, op, "source", inline=True)
    if not isinstance(source, Datastore):  # a datastore was validated by every write to it
        await session.datastores.validate(await _config_tree(session, source))


async def _close_session(session: NetconfSession, op: etree._Element) -> None:
    session.close_after_reply = True


async def _kill_session(session: NetconfSession, op: etree._Element) -> None:
    """RFC 6241 §7.9: abort another session's operation in progress, release its locks."""
    text = _param(op, "session-id")
    if text is None:
        raise MissingElement(
            "<session-id> is required", path="/session-id", info={"bad-element": "session-id"}
        )
    if not is_decimal(text) or int(text) == session.session_id:
        raise RemoteError(f"cannot kill session {text!r}", path="/session-id")
    victim = session.server.sessions.get(int(text))
    if victim is None:
        raise RemoteError(f"no session {text}", path="/session-id")
    victim.kill()


async def _get_schema(session: NetconfSession, op: etree._Element) -> str:
    """RFC 6022 §3.1: the text of a module or submodule of the library."""
    identifier = _param(op, "identifier", MONITORING_NS)
    if not identifier:
        raise MissingElement(
            "<identifier> is required", path="/identifier", info={"bad-element": "identifier"}
        )
    version = _param(op, "version", MONITORING_NS) or None
    fmt = _param(op, "format", MONITORING_NS)
    if fmt and fmt.rpartition(":")[2] != "yang":
        raise RemoteError(f"schema format {fmt!r} is not available", path="/format")
    schema = session.server.schema
    for m in schema.modules:
        candidates = [(m.name, m.revision, m.path), *m.submodules]
        for name, rev, path in candidates:
            if name == identifier and version in (None, rev):
                text = path.read_text(encoding="utf-8")
                return f'<data xmlns="{MONITORING_NS}">{escape(text)}</data>'
    raise RemoteError(f"no schema {identifier!r} version {version!r}", path="/identifier")


async def _create_subscription(session: NetconfSession, op: etree._Element) -> None:
    """RFC 5277 §2.1.1: the NETCONF stream, live events only (no replay)."""
    stream = _param(op, "stream", NOTIFICATION_NS)
    if stream not in (None, "NETCONF"):
        raise RemoteError(f"no event stream {stream!r}", path="/stream")
    for param in ("startTime", "stopTime", "filter"):
        if _find(op, param, NOTIFICATION_NS) is not None:
            raise UnsupportedOperation(f"<{param}> is not supported (no replay, no filters)")
    if session.subscribed:
        raise RemoteError("this session already has a subscription (RFC 5277 §2.1.1)")
    schema = session.server.schema
    stores = session.datastores

    def deliver(event_time: datetime, tree: dict[str, Any]) -> None:
        session.send_notification(notification_xml(schema, event_time, tree))

    stores.subscribe_events(deliver)
    session.subscribed = True
    session.on_close.append(lambda: stores.unsubscribe_events(deliver))


def notification_xml(schema: DeviceSchema, event_time: datetime, tree: Mapping[str, Any]) -> bytes:
    """``<notification>`` (RFC 5277 §4) for an RFC 7951 notification tree."""
    parts = [
        f'<notification xmlns="{NOTIFICATION_NS}"><eventTime>{event_time.isoformat()}</eventTime>'
    ]
    for member, body in tree.items():
        module, _, local = member.partition(":")
        node = schema.root.get_child(local, module)
        if not isinstance(node, InternalNode):
            raise SchemaError(f"no notification {member!r}")
        ns = schema.by_name[module].namespace
        content = node_to_xml(schema, node, body, inherit_namespace=True)
        parts.append(f'<{local} xmlns="{ns}">{content}</{local}>')
    parts.append("</notification>")
    return "".join(parts).encode()


def yang_rpc_handler(schema: DeviceSchema, name: str) -> RpcHandler:
    """A handler for a YANG RPC implemented by a plugin (``Datastores.register_rpc``)."""
    module, _, local = name.partition(":")
    node = schema.root.get_child(local, module)
    if not isinstance(node, RpcActionNode):
        raise ValueError(f"{name} is not an RPC")
    input_node = node.get_child("input", module)
    output_node = node.get_child("output", module)

    async def handler(session: NetconfSession, op: etree._Element) -> str | None:
        args = tree_from_xml(schema, op, parent=input_node) if input_node is not None else {}
        result = await session.datastores.rpcs[name](args)
        if not result or output_node is None:
            return None
        return node_to_xml(schema, output_node, result)

    return handler


OPERATIONS: Mapping[str, RpcHandler] = {
    _q("get"): _get,
    _q("get-config"): _get_config,
    _q("edit-config"): _edit_config,
    _q("copy-config"): _copy_config,
    _q("delete-config"): _delete_config,
    _q("lock"): _lock,
    _q("unlock"): _unlock,
    _q("validate"): _validate,
    _q("close-session"): _close_session,
    _q("kill-session"): _kill_session,
    _q("get-schema", MONITORING_NS): _get_schema,
    _q("create-subscription", NOTIFICATION_NS): _create_subscription,
}


def capabilities(schema: DeviceSchema) -> tuple[str, ...]:
    """The hello capabilities (RFC 6241 §8, RFC 7950 §5.6.4, RFC 8526 §2)."""
    ylib = schema.by_name["ietf-yang-library"].revision
    caps = [
        BASE_10,
        BASE_11,
        "urn:ietf:params:netconf:capability:writable-running:1.0",
        "urn:ietf:params:netconf:capability:startup:1.0",
        "urn:ietf:params:netconf:capability:validate:1.0",
        "urn:ietf:params:netconf:capability:validate:1.1",
        "urn:ietf:params:netconf:capability:rollback-on-error:1.0",
        "urn:ietf:params:netconf:capability:xpath:1.0",
        "urn:ietf:params:netconf:capability:notification:1.0",
        "urn:ietf:params:netconf:capability:interleave:1.0",
        f"urn:ietf:params:netconf:capability:yang-library:1.0?revision={ylib}"
        f"&module-set-id={schema.content_id}",
        f"urn:ietf:params:netconf:capability:yang-library:1.1?revision={ylib}"
        f"&content-id={schema.content_id}",
    ]
    for m in schema.modules:
        cap = f"{m.namespace}?module={m.name}&revision={m.revision}"
        if m.features:
            cap += "&features=" + ",".join(m.features)
        caps.append(cap)
    return tuple(caps)

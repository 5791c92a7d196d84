"""RESTCONF (RFC 8040) over HTTPS with mutual TLS, on the device's datastores.

The same ``Datastores`` back NETCONF and RESTCONF, so a change made through one is visible
through the other. RESTCONF writes go to running through ``Datastores.modify`` (serialised
with every NETCONF write, refused while another session holds a lock) and, as RFC 8040 §1.4
asks of a server with the ``:startup`` capability, startup then follows running.

Resources: ``/.well-known/host-meta`` (§3.1), ``/restconf`` (§3.3), ``/restconf/data`` (§3.3.1,
GET/HEAD/PUT/PATCH/POST/DELETE/OPTIONS), ``/restconf/operations`` (§3.3.2: the RPCs the host
implements with ``Datastores.register_rpc``, which NETCONF serves too) and
``/restconf/yang-library-version`` (§3.3.3). Bodies are ``application/yang-data+json``
(RFC 7951) or ``application/yang-data+xml``. Every error is an ``ietf-restconf:errors``
document, built in one place (``_error_middleware``). This module is the HTTP side; the
documents, media types and body parsing are in ``wire``, and which node a path names
(``device/restconf_path.py``) and what the GET query parameters keep
(``device/restconf_query.py``) are decided without I/O.

The server describes itself in ``ietf-restconf-monitoring:restconf-state`` (§9.1): the
§9.1.1 capability URIs of what it really implements (``defaults`` with basic-mode
``explicit``, ``depth``, ``with-defaults``; no ``fields``, ``filter`` or ``replay``) and no
event streams. ``OPTIONS`` on a data resource answers ``Allow`` and, where PATCH is allowed,
``Accept-Patch`` (§4.6.1: the plain-patch media types; no YANG Patch).

Clients are authenticated by their TLS certificate only (§2.5). A request refused for want of
one, or whose certificate maps to no username, is answered 401 with the challenge
``WWW-Authenticate: TLS-Client-Certificate realm="restconf"`` (RFC 7235 §3.1 requires one;
no HTTP authentication scheme is registered for TLS client certificates, so the scheme names
what to present: the one the registrar and MASA send, ``services/_http.py``).

The listener is ``services/_limits.py``'s ``GatedTlsSite``: connection caps, and deadlines for
the TLS handshake, each request header and body; a refused handshake (no certificate, an
unknown CA, a timeout) is logged with the peer's address and the reason, as NETCONF/TLS logs
it: ``restconf: refused HOST:PORT: <reason>``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, Final
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from aiohttp import web
from aiohttp.typedefs import Handler
from cryptography import x509
from lxml import etree
from yangson.exceptions import RawMemberError, RawTypeError
from yangson.schemanode import (
    ContainerNode,
    DataNode,
    InputNode,
    InternalNode,
    LeafListNode,
    LeafNode,
    ListNode,
    RpcActionNode,
    TerminalNode,
)

from zerotouch_plugin._text import printable
from zerotouch_plugin.config import ConnectionLimits, DeviceConfig
from zerotouch_plugin.device.datastore import Datastore, Datastores
from zerotouch_plugin.device.edit import Operation, edit_at, member_node
from zerotouch_plugin.device.restconf_path import ABSENT, Target, instance_path, resolve_path
from zerotouch_plugin.device.restconf_query import (
    DROP,
    GET_PARAMS,
    Content,
    filter_node,
    filter_object,
    parse_content,
    parse_depth,
    with_defaults,
)
from zerotouch_plugin.device.restconf_state import publish_restconf_state
from zerotouch_plugin.device.schema import DeviceSchema
from zerotouch_plugin.device.xmlcodec import node_to_xml, tree_from_xml, tree_to_xml
from zerotouch_plugin.errors import (
    AccessDenied,
    InvalidInput,
    InvalidParameter,
    MethodNotAllowed,
    NotAcceptable,
    PayloadTooLarge,
    PreconditionFailed,
    ResourceExists,
    ResourceMissing,
    SchemaError,
    UnsupportedMediaType,
    UnsupportedOperation,
    UpstreamUnavailable,
    ZerotouchError,
)
from zerotouch_plugin.services._http import media_type_of
from zerotouch_plugin.services._limits import GatedTlsSite, deadline_middleware
from zerotouch_plugin.services.netconf.certmap import map_certificate, peer_certificates
from zerotouch_plugin.services.restconf.wire import (
    ACCEPT_MEDIA,
    ACCEPT_PATCH,
    MEDIA_JSON,
    MEDIA_XML,
    REQUEST_MEDIA,
    RESTCONF_NS,
    WWW_AUTHENTICATE,
    Media,
    error_type,
    errors_json,
    errors_xml,
    parse_json,
    parse_xml,
    single_member,
    status_and_tag,
)

__all__ = ["RESTCONF_SESSION_ID", "bound_port", "restconf_app", "start_restconf"]

log = logging.getLogger(__name__)

# The session id RESTCONF writes and lock checks use: never a NETCONF session-id, which
# RFC 6241 §8.1 numbers from 1.
RESTCONF_SESSION_ID: Final = 0
DEFAULT_BODY_LIMIT: Final = 4 * 1024 * 1024
Tree = dict[str, Any]
_HOST_META = (
    "<?xml version='1.0' encoding='UTF-8'?>\n"
    "<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n"
    "  <Link rel='restconf' href='/restconf'/>\n"
    "</XRD>\n"
)

# ----------------------------------------------------------------------------------------
# Application state

# cert-to-name for RESTCONF: (client certificate, the rest of the chain TLS reported) -> name.
ClientName = Callable[[x509.Certificate, Sequence[x509.Certificate]], str]


@dataclass
class _State:
    datastores: Datastores
    schema: DeviceSchema
    require_client_cert: bool
    client_name: ClientName
    body_limit: int
    startup_follows: bool
    last_modified: datetime = field(default_factory=lambda: datetime.now(UTC))


_STATE = web.AppKey("restconf_state", _State)

# RFC 9110 §8.8.3: a strong entity-tag differs between representations, so each encoding of
# the datastore has its own.
_ETAG_SUFFIX: Mapping[Media, str] = {Media.JSON: "json", Media.XML: "xml"}
# One entity-tag of an If-Match list (RFC 9110 §8.8.3, §13.1.1): weak flag, opaque-tag.
_ENTITY_TAG = re.compile(r'\s*(W/)?("[^"]*")\s*(?:,|$)')


def _http_date(value: str | None) -> datetime | None:
    """An HTTP-date (RFC 9110 §5.6.7) as an aware datetime; None when absent or not one, as a
    conditional header that is no date is ignored (§13.1.3, §13.1.4)."""
    try:
        when = parsedate_to_datetime(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when


# aiohttp's own refusals (router, body limit) as the errors they stand for.
_HTTP_ERRORS: Mapping[type[web.HTTPException], Callable[[web.Request], ZerotouchError]] = {
    web.HTTPNotFound: lambda r: ResourceMissing(f"no resource at {r.rel_url.raw_path}"),
    web.HTTPRequestEntityTooLarge: lambda r: PayloadTooLarge(
        f"request body too large: the limit is {r.app[_STATE].body_limit} bytes"
    ),
}


# ----------------------------------------------------------------------------------------
# the application


class _Restconf:
    """The request handlers, bound to one application's state."""

    def __init__(self, state: _State) -> None:
        self.state = state
        self.schema = state.schema
        self.ds = state.datastores

    # -- negotiation -------------------------------------------------------------------

    @staticmethod
    def response_media(request: web.Request) -> Media:
        """RFC 8040 §5.2: the Accept header decides; without one, the request's own type.

        Of the media ranges the server supports, the one of the highest quality wins (RFC 9110
        §12.5.1), an exact type before a wildcard at equal quality, then the header's order;
        q=0, or a quality that is no number from 0 to 1, excludes a range.
        """
        accept = request.headers.get("Accept", "")
        if not accept.strip():
            ctype = media_type_of(request.headers.get("Content-Type"))
            return REQUEST_MEDIA.get(ctype, Media.JSON)
        best: tuple[tuple[float, bool, int], Media] | None = None
        for order, item in enumerate(accept.split(",")):
            rng, *params = (p.strip().lower() for p in item.split(";"))
            media = ACCEPT_MEDIA.get(rng)
            quality = _quality(params)
            if media is None or not quality:
                continue
            rank = (quality, "*" not in rng, -order)
            if best is None or rank > best[0]:
                best = (rank, media)
        if best is None:
            raise NotAcceptable(f"cannot answer in {accept!r}: use {MEDIA_JSON} or {MEDIA_XML}")
        return best[1]

    async def request_body(self, request: web.Request) -> tuple[Media, bytes]:
        ctype = media_type_of(request.headers.get("Content-Type"))
        media = REQUEST_MEDIA.get(ctype)
        if media is None:
            raise UnsupportedMediaType(
                f"request body type {ctype or '(none)'!r} not supported: "
                f"use {MEDIA_JSON} or {MEDIA_XML}"
            )
        limit = self.state.body_limit
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge(f"request body too large: the limit is {limit} bytes")
        body = await request.read()
        if not body.strip():
            raise InvalidInput("the request needs a body")
        return media, body

    @staticmethod
    def reject_params(request: web.Request, allowed: frozenset[str] = frozenset()) -> None:
        for name in request.query:
            if name not in allowed:
                raise InvalidParameter(f"query parameter {name!r} is not supported here")
            if len(request.query.getall(name)) > 1:  # RFC 8040 §4.8: each at most once
                raise InvalidParameter(f"query parameter {name!r} is given more than once")

    def render(
        self, request: web.Request, status: int, doc: Tree, target: Target | None = None
    ) -> web.Response:
        """A yang-data response: ``doc`` holds one member (the target) or the datastore."""
        media = self.response_media(request)
        if media is Media.JSON:
            body = json.dumps(doc).encode()
        elif target is None or target.node is None:
            inner = tree_to_xml(self.schema, doc.get("ietf-restconf:data", {}))
            body = f'<data xmlns="{RESTCONF_NS}">{inner}</data>'.encode()
        else:
            if not target.entry and isinstance(target.node, (ListNode, LeafListNode)):
                raise InvalidParameter(
                    "XML cannot carry a whole list as one document: name an entry, or ask for JSON"
                )
            member = {target.member: doc[target.qualified]}
            body = node_to_xml(self.schema, target.parent, member).encode()
        return web.Response(status=status, body=body, content_type=media.value)

    # -- reading -----------------------------------------------------------------------

    def data_path(self, request: web.Request) -> str:
        raw = request.rel_url.raw_path
        return raw[len("/restconf/data") :] if raw.startswith("/restconf/data") else raw

    async def defaulted_view(self, ds: Datastore, content: Content, mode: str) -> Tree:
        """The datastore as ``with-defaults`` asks (RFC 8040 §4.8.9). report-all walks every
        node (about 0.15 ms per list entry): it runs in a thread and once per datastore
        version, so that a large datastore does not stall the event loop, and every other
        request and session with it."""
        if mode != "report-all":
            return with_defaults(self.schema, self.ds.view(ds), content, mode)
        return await self.ds.memo_async(
            ds,
            f"restconf-report-all:{content}",
            lambda tree: asyncio.to_thread(with_defaults, self.schema, tree, content, mode),
        )

    async def get(self, request: web.Request) -> web.Response:
        self.reject_params(request, GET_PARAMS)
        content = parse_content(request.query.get("content", "all"))
        depth = parse_depth(request.query.get("depth", "unbounded"))
        ds = Datastore.RUNNING if content is Content.CONFIG else Datastore.OPERATIONAL
        mode = request.query.get("with-defaults", "explicit")
        tree = await self.defaulted_view(ds, content, mode)
        target = resolve_path(self.schema, tree, self.data_path(request))
        exists = target.node is None or target.value is not ABSENT
        if exists and self.not_modified(request, ds is Datastore.RUNNING):
            response = web.Response(status=304)
            self.validators(request, response)
            return response
        if target.node is None:
            data = tree
            if content is not Content.ALL or depth is not None:
                data = filter_object(self.schema.root, tree, content, depth)
            doc = {"ietf-restconf:data": data}
        else:
            if target.value is ABSENT:
                raise ResourceMissing("no data at this path", path=target.path)
            value = target.value
            if content is not Content.ALL or depth is not None:
                value = filter_node(target.node, value, content, depth, entry=target.entry)
                if value is DROP:
                    raise ResourceMissing(f"no {content} data at this path", path=target.path)
            if target.entry and isinstance(target.node, (ListNode, LeafListNode)):
                value = [value]
            doc = {target.qualified: value}
        response = self.render(request, 200, doc, target)
        self.validators(request, response)
        return response

    def validators(self, request: web.Request, response: web.Response) -> None:
        """RFC 8040 §3.4.1: entity-tag and timestamp of the running datastore, on a 200 and on
        a 304 alike (RFC 9110 §15.4.5)."""
        response.headers["ETag"] = self.etag(self.response_media(request))
        response.headers["Last-Modified"] = self.last_modified()

    def etag(self, media: Media) -> str:
        version = self.ds.version(Datastore.RUNNING)
        return f'"{self.schema.content_id}-{version}-{_ETAG_SUFFIX[media]}"'

    def last_modified(self) -> str:
        return format_datetime(self.state.last_modified, usegmt=True)

    def check_precondition(self, request: web.Request, exists: bool) -> None:
        """RFC 8040 §3.4.1 and RFC 9110 §13.2.2 for an edit: If-Match, else
        If-Unmodified-Since, then If-None-Match, against what a GET of the running datastore
        answers now; false: 412 and nothing changes."""
        self._check_unchanged(request, exists)
        if_none_match = request.headers.get("If-None-Match")
        if if_none_match is not None and self._listed(if_none_match, exists, weak=True):
            what = "the resource exists" if if_none_match.strip() == "*" else "that is its tag"
            raise PreconditionFailed(
                f"If-None-Match {if_none_match!r} is false for the running datastore ({what}): "
                "nothing was changed"
            )

    def not_modified(self, request: web.Request, config: bool) -> bool:
        """RFC 9110 §13.2.2 for GET and HEAD of a resource that exists: If-Match or
        If-Unmodified-Since false is 412; then If-None-Match, else If-Modified-Since, false
        is 304. The entity-tag and timestamp are the running datastore's (RFC 8040 §3.4.1):
        state changes without them, so only a read of configuration (``content=config``)
        can be 304; any other is answered whole."""
        self._check_unchanged(request, True)
        if_none_match = request.headers.get("If-None-Match")
        if if_none_match is not None:
            return config and self._listed(if_none_match, True, weak=True)
        since = _http_date(request.headers.get("If-Modified-Since"))
        return config and since is not None and self._modified_at() <= since

    def _check_unchanged(self, request: web.Request, exists: bool) -> None:
        """Steps 1 and 2 of RFC 9110 §13.2.2: If-Match, else If-Unmodified-Since."""
        if_match = request.headers.get("If-Match")
        if if_match is not None:
            if not self._listed(if_match, exists, weak=False):
                raise PreconditionFailed(
                    f"If-Match {if_match!r} is not the entity-tag of the running datastore, now "
                    f"{self.etag(Media.JSON)} (JSON) or {self.etag(Media.XML)} (XML): read it again"
                )
            return
        since = request.headers.get("If-Unmodified-Since")
        limit = _http_date(since)
        if limit is not None and self._modified_at() > limit:
            raise PreconditionFailed(
                f"the running datastore was modified at {self.last_modified()}, after "
                f"If-Unmodified-Since {since!r}: read it again"
            )

    def _modified_at(self) -> datetime:
        return self.state.last_modified.replace(microsecond=0)  # an HTTP-date has seconds

    def _listed(self, field_value: str, exists: bool, *, weak: bool) -> bool:
        """RFC 9110 §13.1.1-§13.1.2: ``*`` matches a resource that exists; otherwise a listed
        tag must equal a current one, by the strong comparison (a weak tag never matches:
        If-Match) or the weak one (the W/ flag is ignored: If-None-Match)."""
        if field_value.strip() == "*":
            return exists
        current = {self.etag(media) for media in Media}
        return any(
            (weak or not flag) and tag in current for flag, tag in _ENTITY_TAG.findall(field_value)
        )

    # -- writing -----------------------------------------------------------------------

    async def write(
        self, request: web.Request, target: Target, change: Callable[[Tree], Mapping[str, Any]]
    ) -> None:
        """Apply ``change`` to running under the datastores' write lock; startup follows in
        the same commit (RFC 8040 §1.4), so a lock on either refuses the write whole. The
        request's precondition on ``target`` is checked under the lock too: running cannot
        change between the check and the edit."""

        def checked(tree: Tree) -> Mapping[str, Any]:
            exists = target.node is None or resolve_path(self.schema, tree, target.path).present
            self.check_precondition(request, exists)
            return change(tree)

        also = (Datastore.STARTUP,) if self.state.startup_follows else ()
        await self.ds.modify(Datastore.RUNNING, checked, session_id=RESTCONF_SESSION_ID, also=also)

    async def body_value(self, request: web.Request, target: Target) -> Any:
        """The RFC 7951 value the body gives for the target node (RFC 8040 §4.5, §4.6)."""
        media, body = await self.request_body(request)
        if target.node is None:
            return self._datastore_body(media, body)
        node, value = self._body_member(media, body, target.parent)
        if node is not target.node:
            raise SchemaError(
                f"the body must hold {target.qualified}, the target resource", path=target.path
            )
        if target.entry and isinstance(node, (ListNode, LeafListNode)):
            if isinstance(value, list):
                if len(value) != 1:
                    raise SchemaError("the body must hold exactly one entry", path=target.path)
                value = value[0]
            if isinstance(node, LeafListNode) and value != target.item:
                raise SchemaError("the entry in the body differs from the path", path=target.path)
        return value

    def _datastore_body(self, media: Media, body: bytes) -> Tree:
        if media is Media.JSON:
            member, value = single_member(parse_json(body))
            if member != "ietf-restconf:data" or not isinstance(value, dict):
                raise InvalidInput('the datastore body is {"ietf-restconf:data": {...}}')
            return value
        root = parse_xml(body)
        if root.tag != f"{{{RESTCONF_NS}}}data":
            raise InvalidInput(f'the datastore body is <data xmlns="{RESTCONF_NS}">')
        return tree_from_xml(self.schema, list(root))

    def _body_member(self, media: Media, body: bytes, parent: InternalNode) -> tuple[DataNode, Any]:
        if media is Media.JSON:
            member, value = single_member(parse_json(body))
            node, _ = member_node(parent, member)
            return node, value
        root = parse_xml(body)
        tree = tree_from_xml(self.schema, [root], parent=parent)
        ((key, value),) = tree.items()
        node, _ = member_node(parent, key)
        return node, value

    async def put(self, request: web.Request) -> web.Response:
        """RFC 8040 §4.5: create or replace the target; 201 if created, 204 if replaced."""
        self.reject_params(request)
        target = resolve_path(self.schema, None, self.data_path(request))
        value = await self.body_value(request, target)
        created = False

        def change(tree: Tree) -> Mapping[str, Any]:
            nonlocal created
            created = (
                target.node is not None and not resolve_path(self.schema, tree, target.path).present
            )
            return edit_at(self.schema, tree, target.path, Operation.REPLACE, value)

        await self.write(request, target, change)
        return web.Response(status=201 if created else 204)

    async def patch(self, request: web.Request) -> web.Response:
        """RFC 8040 §4.6.1 plain patch: merge into an existing target."""
        self.reject_params(request)
        target = resolve_path(self.schema, None, self.data_path(request))
        value = await self.body_value(request, target)

        def change(tree: Tree) -> Mapping[str, Any]:
            if (
                target.node is not None
                and resolve_path(self.schema, tree, target.path).value is ABSENT
            ):
                raise ResourceMissing(
                    "no data at this path: PATCH does not create", path=target.path
                )
            return edit_at(self.schema, tree, target.path, Operation.MERGE, value)

        await self.write(request, target, change)
        return web.Response(status=204)

    async def delete(self, request: web.Request) -> web.Response:
        """RFC 8040 §4.7: delete the target resource."""
        self.reject_params(request)
        target = resolve_path(self.schema, None, self.data_path(request))
        if target.node is None:
            raise MethodNotAllowed(
                "the datastore resource cannot be deleted", allowed=_DATA_METHODS_ROOT
            )

        def change(tree: Tree) -> Mapping[str, Any]:
            if not resolve_path(self.schema, tree, target.path).present:
                raise ResourceMissing("no data at this path", path=target.path)
            return edit_at(self.schema, tree, target.path, Operation.DELETE)

        await self.write(request, target, change)
        return web.Response(status=204)

    async def post(self, request: web.Request) -> web.Response:
        """RFC 8040 §4.4.1: create a child of the target; 201 with its Location."""
        self.reject_params(request)
        target = resolve_path(self.schema, None, self.data_path(request))
        parent: InternalNode = self.schema.root
        if target.node is not None:
            node_ok = isinstance(target.node, ContainerNode) or (
                isinstance(target.node, ListNode) and target.entry
            )
            if not node_ok or not isinstance(target.node, InternalNode):
                raise SchemaError(
                    "children are created in a container or a list entry", path=target.path
                )
            parent = target.node
        media, body = await self.request_body(request)
        node, value = self._body_member(media, body, parent)
        child_path = f"{target.path.rstrip('/')}/{node.ns}:{node.name}"
        if isinstance(node, ListNode):
            if isinstance(value, list):
                if len(value) != 1:
                    raise SchemaError("POST creates exactly one list entry", path=child_path)
                value = value[0]
            if not isinstance(value, Mapping):
                raise SchemaError("a list entry is an object", path=child_path)
            child_path += "=" + ",".join(self._key_text(node, value, child_path))
        elif isinstance(node, LeafListNode):
            raise SchemaError("create leaf-list entries with PUT or PATCH", path=child_path)

        def change(tree: Tree) -> Mapping[str, Any]:
            if (
                target.node is not None
                and resolve_path(self.schema, tree, target.path).value is ABSENT
            ):
                raise ResourceMissing("the parent resource does not exist", path=target.path)
            if resolve_path(self.schema, tree, child_path).present:
                raise ResourceExists("the resource already exists", path=child_path)
            return edit_at(self.schema, tree, child_path, Operation.CREATE, value)

        await self.write(request, target, change)
        return web.Response(
            status=201, headers={"Location": f"{request.url.origin()}/restconf/data{child_path}"}
        )

    def _key_text(self, node: ListNode, entry: Mapping[str, Any], path: str) -> list[str]:
        texts = []
        for kname, kns in node.keys:
            knode, kkey = member_node(node, kname if kns == node.ns else f"{kns}:{kname}")
            if kkey not in entry or not isinstance(knode, TerminalNode):
                raise SchemaError(f"the list entry needs its key {kkey!r}", path=path)
            texts.append(quote(self.schema.raw_to_text(knode, entry[kkey]), safe=""))
        return texts

    async def options(self, request: web.Request) -> web.Response:
        """RFC 8040 §4.1: the methods the resource allows; §4.6.1: the patch media types."""
        allowed = _DATA_METHODS_ROOT if self.data_path(request) in ("", "/") else _DATA_METHODS
        headers = {"Allow": ", ".join(allowed)}
        if "PATCH" in allowed:
            headers["Accept-Patch"] = ACCEPT_PATCH
        return web.Response(status=200, headers=headers)

    # -- other resources ---------------------------------------------------------------

    async def host_meta(self, request: web.Request) -> web.Response:
        """RFC 8040 §3.1 root resource discovery (RFC 6415 XRD)."""
        return web.Response(text=_HOST_META, content_type="application/xrd+xml")

    async def root(self, request: web.Request) -> web.Response:
        self.reject_params(request)
        doc = {
            "ietf-restconf:restconf": {
                "data": {},
                "operations": {},
                "yang-library-version": self._library_version(),
            }
        }
        if self.response_media(request) is Media.XML:
            xml = (
                f'<restconf xmlns="{RESTCONF_NS}"><data/><operations/>'
                f"<yang-library-version>{self._library_version()}</yang-library-version></restconf>"
            )
            return web.Response(body=xml.encode(), content_type=MEDIA_XML)
        return web.Response(body=json.dumps(doc).encode(), content_type=MEDIA_JSON)

    def _library_version(self) -> str:
        return self.schema.by_name["ietf-yang-library"].revision

    async def library_version(self, request: web.Request) -> web.Response:
        """RFC 8040 §3.3.3."""
        self.reject_params(request)
        version = self._library_version()
        if self.response_media(request) is Media.XML:
            xml = f'<yang-library-version xmlns="{RESTCONF_NS}">{version}</yang-library-version>'
            return web.Response(body=xml.encode(), content_type=MEDIA_XML)
        body = json.dumps({"ietf-restconf:yang-library-version": version}).encode()
        return web.Response(body=body, content_type=MEDIA_JSON)

    async def operations(self, request: web.Request) -> web.Response:
        """RFC 8040 §3.3.2: the operations this server can run."""
        self.reject_params(request)
        names = sorted(self.ds.rpcs)
        if self.response_media(request) is Media.XML:
            items = []
            for name in names:
                module, _, local = name.partition(":")
                ns = self.schema.by_name[module].namespace
                items.append(f"<{local} xmlns={quoteattr(ns)}/>")
            xml = f'<operations xmlns="{RESTCONF_NS}">{"".join(items)}</operations>'
            return web.Response(body=xml.encode(), content_type=MEDIA_XML)
        doc = {"ietf-restconf:operations": {name: [None] for name in names}}
        return web.Response(body=json.dumps(doc).encode(), content_type=MEDIA_JSON)

    async def invoke(self, request: web.Request) -> web.Response:
        """RFC 8040 §4.4.2: POST /restconf/operations/<module>:<rpc>."""
        self.reject_params(request)
        name = request.match_info["name"]
        module, sep, local = name.partition(":")
        rpc = self.schema.root.get_child(local, module) if sep else None
        if not isinstance(rpc, RpcActionNode):
            raise ResourceMissing(f"no operation {name!r} (name it as module:rpc)")
        handler = self.ds.rpcs.get(name)
        if handler is None:
            raise UnsupportedOperation(f"operation {name} is not available on this device")
        inp = rpc.get_child("input")
        if not isinstance(inp, InputNode):
            raise UnsupportedOperation(f"operation {name} has no input node")
        args = await self._rpc_input(request, inp, name)
        log.info("RESTCONF operation %s from %s", name, request.remote)
        output = await handler(args)
        if not output:
            return web.Response(status=204)
        media = self.response_media(request)
        if media is Media.JSON:
            body = json.dumps({f"{module}:output": dict(output)}).encode()
        else:
            ns = self.schema.by_name[module].namespace
            out_node = rpc.get_child("output")
            if not isinstance(out_node, InternalNode):
                raise SchemaError(f"operation {name} has no output", path=f"/{name}")
            inner = node_to_xml(self.schema, out_node, output)
            body = f"<output xmlns={quoteattr(ns)}>{inner}</output>".encode()
        return web.Response(status=200, body=body, content_type=media.value)

    async def _rpc_input(self, request: web.Request, inp: InputNode, name: str) -> Tree:
        if not request.body_exists:
            args: Tree = {}
        else:
            media, body = await self.request_body(request)
            module = name.partition(":")[0]
            if media is Media.JSON:
                member, value = single_member(parse_json(body))
                if member != f"{module}:input" or not isinstance(value, dict):
                    raise InvalidInput(f'the body is {{"{module}:input": {{...}}}}')
                args = value
            else:
                root = parse_xml(body)
                if etree.QName(root).localname != "input":
                    raise InvalidInput("the body is an <input> element")
                args = tree_from_xml(self.schema, list(root), parent=inp)
        try:
            inp.from_raw(args)
        except RawMemberError as exc:
            raise SchemaError("unknown input parameter", path=f"/{name}/input{exc.path}") from None
        except RawTypeError as exc:
            raise SchemaError(
                exc.message or "bad input value", path=f"/{name}/input{exc.path}"
            ) from None
        for child in inp.data_children():
            if isinstance(child, LeafNode) and child.default is not None and child.name not in args:
                args[child.name] = child.type.to_raw(child.default)
        return args

    # -- dispatch ----------------------------------------------------------------------

    async def data(self, request: web.Request) -> web.StreamResponse:
        handlers: Mapping[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {
            "GET": self.get,
            "HEAD": self.get,
            "PUT": self.put,
            "PATCH": self.patch,
            "POST": self.post,
            "DELETE": self.delete,
            "OPTIONS": self.options,
        }
        handler = handlers.get(request.method)
        if handler is None:
            raise MethodNotAllowed(f"{request.method} is not allowed here", allowed=_DATA_METHODS)
        return await handler(request)


def _quality(params: Sequence[str]) -> float | None:
    """The q parameter of a media range (RFC 9110 §12.4.2), 1 when absent, None when it is no
    number from 0 to 1."""
    for param in params:
        name, _, value = param.partition("=")
        if name.strip() == "q":
            try:
                quality = float(value.strip())
            except ValueError:
                return None
            return quality if 0 <= quality <= 1 else None
    return 1.0


_DATA_METHODS: tuple[str, ...] = ("GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS")
_DATA_METHODS_ROOT: tuple[str, ...] = ("GET", "HEAD", "PUT", "PATCH", "POST", "OPTIONS")


# ----------------------------------------------------------------------------------------
# errors: the one place that turns exceptions into responses


def _error_response(
    request: web.Request, exc: ZerotouchError, err_type: str | None = None
) -> web.Response:
    state = request.app[_STATE]
    status, tag = status_and_tag(exc)
    err_type = err_type or error_type(exc)
    log.warning(
        "RESTCONF %s %s from %s refused %d %s: %s",
        request.method, request.rel_url.raw_path, request.remote, status, tag,
        printable(str(exc)),
    )  # fmt: skip
    try:
        media = _Restconf.response_media(request)
    except NotAcceptable:
        media = Media.JSON
    # RFC 8040 §7.1: error-path is an instance-identifier, where the request named a URI
    path = instance_path(state.schema, exc.path) if exc.path else None
    if media is Media.XML:
        body = errors_xml(state.schema, err_type, tag, exc, path=path)
    else:
        body = errors_json(err_type, tag, exc, path=path)
    headers = {"Allow": ", ".join(exc.allowed)} if isinstance(exc, MethodNotAllowed) else {}
    if status == 401:
        headers["WWW-Authenticate"] = WWW_AUTHENTICATE  # RFC 7235 §3.1
    if isinstance(exc, UpstreamUnavailable):  # e.g. over capacity: when to come back
        headers["Retry-After"] = str(exc.retry_after)
    if request.method == "HEAD":
        return web.Response(status=status, headers=headers, content_type=media.value)
    return web.Response(status=status, body=body, content_type=media.value, headers=headers)


@web.middleware
async def _error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        _authenticate(request)
        return await handler(request)
    except ZerotouchError as exc:
        return _error_response(request, exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        make = _HTTP_ERRORS.get(type(exc))
        if make is not None:
            return _error_response(request, make(request), "protocol")
        if isinstance(exc, web.HTTPMethodNotAllowed):
            allowed = tuple(sorted(exc.allowed_methods))
            return _error_response(
                request, MethodNotAllowed(f"{request.method} is not allowed here", allowed=allowed)
            )
        return _error_response(request, InvalidInput(f"{exc.status} {exc.reason}"))
    except Exception:
        log.exception("RESTCONF %s %s: internal error", request.method, request.path)
        return _error_response(
            request, _InternalError("the server failed to process the request; see its log")
        )


class _InternalError(ZerotouchError):
    """Anything unexpected: 500 operation-failed, details only in the log."""

    reason = "internal-error"


def _authenticate(request: web.Request) -> None:
    """RFC 8040 §2.5: the client is authenticated by its TLS certificate, and its username
    comes from the cert-to-name mapping of RFC 7589 §7; AccessDenied when either fails."""
    state = request.app[_STATE]
    if not state.require_client_cert:
        return
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    try:
        chain = peer_certificates(ssl_object) if ssl_object is not None else []
    except ValueError as exc:  # OpenSSL verified what cryptography cannot parse
        raise AccessDenied(f"the client certificate cannot be read: {exc}") from exc
    if not chain:
        raise AccessDenied("a client certificate is required")
    state.client_name(chain[0], chain[1:])


def _default_client_name(cert: x509.Certificate, chain: Sequence[x509.Certificate]) -> str:
    """The device's default cert-to-name rules: the common name of any verified certificate
    that is not another device's identity (fail closed when no mapping is given)."""
    return map_certificate(cert, DeviceConfig().cert_to_name)


# ----------------------------------------------------------------------------------------
# public API


def restconf_app(
    datastores: Datastores,
    schema: DeviceSchema | None = None,
    *,
    require_client_cert: bool = True,
    client_name: ClientName | None = None,
    body_limit: int = DEFAULT_BODY_LIMIT,
) -> web.Application:
    """The RESTCONF application over ``datastores``.

    RPCs are those registered with ``Datastores.register_rpc`` (NETCONF serves the same).
    ``require_client_cert`` refuses requests that did not come with a verified TLS client
    certificate (serve it only with an ``ssl.CERT_REQUIRED`` context); ``client_name`` then
    maps that certificate, given with the rest of the chain TLS reported (``certmap``), to a
    username (cert-to-name) or raises ``AccessDenied`` (401); without it the device's default
    cert-to-name rules apply. The server's ``ietf-restconf-monitoring`` state is published
    into ``datastores`` when the schema has the module.
    """
    schema = schema or datastores.schema
    netconf = schema.by_name.get("ietf-netconf")
    state = _State(
        datastores=datastores,
        schema=schema,
        require_client_cert=require_client_cert,
        client_name=client_name or _default_client_name,
        body_limit=body_limit,
        startup_follows=netconf is not None and "startup" in netconf.features,
    )
    app = web.Application(
        middlewares=[_error_middleware, deadline_middleware], client_max_size=body_limit
    )
    app[_STATE] = state

    def touched(ds: Datastore, _tree: Tree) -> None:
        if ds is Datastore.RUNNING:
            state.last_modified = datetime.now(UTC)

    datastores.subscribe(touched)
    publish_restconf_state(datastores)
    api = _Restconf(state)
    app.router.add_get("/.well-known/host-meta", api.host_meta)
    app.router.add_get("/restconf", api.root)
    app.router.add_get("/restconf/", api.root)
    app.router.add_route("*", "/restconf/data", api.data)
    app.router.add_route("*", r"/restconf/data/{path:[\s\S]*}", api.data)
    app.router.add_get("/restconf/operations", api.operations)
    app.router.add_post("/restconf/operations/{name}", api.invoke)
    app.router.add_get("/restconf/yang-library-version", api.library_version)
    return app


async def start_restconf(
    app_or_datastores: web.Application | Datastores,
    *,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext,
    limits: ConnectionLimits | None = None,
    sock: socket.socket | None = None,
) -> web.AppRunner:
    """Serve RESTCONF on ``host:port`` (0: a free port, see ``bound_port``) over TLS, with
    ``limits`` (connection caps and deadlines; the defaults when None); ``sock``: a socket
    already listening there, whose queued connections are then served too.

    Stop it with ``await runner.cleanup()``.
    """
    app = (
        app_or_datastores
        if isinstance(app_or_datastores, web.Application)
        else restconf_app(app_or_datastores)
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = GatedTlsSite(
        runner,
        host,
        port,
        ssl_context,
        service="restconf",
        limits=limits or ConnectionLimits(),
        sock=sock,
    )
    await site.start()
    log.info("RESTCONF listening on https://%s:%d", host, bound_port(runner))
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port the (first) site of ``runner`` listens on."""
    addresses = runner.addresses
    if not addresses:
        raise RuntimeError("the RESTCONF runner is not listening")
    return int(addresses[0][1])

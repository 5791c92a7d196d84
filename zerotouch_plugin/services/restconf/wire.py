"""What RESTCONF puts on the wire, without the HTTP server: media types, the capability
URIs (from ``device/restconf_state.py``), the error-tag to status table (RFC 8040 §7),
``ietf-restconf:errors`` documents, and the hardened parsing of request bodies (RFC 7951
JSON, XML without DTDs)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Final
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

from zerotouch_plugin._json import bounded_loads
from zerotouch_plugin.artifacts.xmlsafe import parse_untrusted
from zerotouch_plugin.device.restconf_state import CAPABILITIES
from zerotouch_plugin.device.schema import NOT_XML_CHAR, DeviceSchema
from zerotouch_plugin.device.xmlcodec import NETCONF_BASE_NS
from zerotouch_plugin.errors import (
    AccessDenied,
    InvalidInput,
    InvalidParameter,
    LockDenied,
    MethodNotAllowed,
    NotAcceptable,
    PayloadTooLarge,
    PreconditionFailed,
    SchemaError,
    UnsupportedMediaType,
    ZerotouchError,
)
from zerotouch_plugin.services._http import AUTH_SCHEME

__all__ = [
    "ACCEPT_MEDIA",
    "ACCEPT_PATCH",
    "CAPABILITIES",
    "MEDIA_JSON",
    "MEDIA_XML",
    "REQUEST_MEDIA",
    "RESTCONF_NS",
    "WWW_AUTHENTICATE",
    "Media",
    "error_type",
    "errors_json",
    "errors_xml",
    "parse_json",
    "parse_xml",
    "single_member",
    "status_and_tag",
]

Tree = dict[str, Any]
MEDIA_JSON: Final = "application/yang-data+json"
MEDIA_XML: Final = "application/yang-data+xml"
RESTCONF_NS: Final = "urn:ietf:params:xml:ns:yang:ietf-restconf"
# RFC 7235 §3.1: a 401 carries a challenge; there is no registered scheme for TLS client
# certificates (RFC 8040 §2.5), so this one says what the client has to present.
WWW_AUTHENTICATE: Final = f'{AUTH_SCHEME} realm="restconf"'
# RFC 8040 §4.6.1: the media types a plain-patch PATCH accepts (no YANG Patch, RFC 8072).
ACCEPT_PATCH: Final = "application/yang-data+json, application/yang-data+xml"

# RFC 8040 §7: the status codes each error-tag may carry; the first is used when the
# error's own status is not one of them.
_STATUS_BY_TAG: Mapping[str, tuple[int, ...]] = {
    "in-use": (409,),
    "invalid-value": (400, 404, 406),
    "too-big": (413, 400),
    "missing-attribute": (400,),
    "bad-attribute": (400,),
    "unknown-attribute": (400,),
    "bad-element": (400,),
    "unknown-element": (400,),
    "missing-element": (400,),  # not in the §7 table; a list entry without its key (RFC 7950)
    "unknown-namespace": (400,),
    "access-denied": (401, 403),
    "lock-denied": (409,),
    "resource-denied": (409,),
    "rollback-failed": (500,),
    "data-exists": (409,),
    "data-missing": (409,),
    "operation-not-supported": (405, 501),
    "operation-failed": (412, 500),
    "partial-operation": (500,),
    "malformed-message": (400,),
}
# RFC 8040 §5.2 answers failed media-type negotiation with these statuses, which the §7
# table does not list; the error-tag is invalid-value.
_MEDIA_STATUSES: frozenset[int] = frozenset({406, 415})

# error-type of each error class (RFC 8040 §7.1); data errors are "application".
_ERROR_TYPE: Mapping[type[ZerotouchError], str] = {
    InvalidInput: "protocol",
    InvalidParameter: "protocol",
    UnsupportedMediaType: "protocol",
    NotAcceptable: "protocol",
    PayloadTooLarge: "protocol",
    AccessDenied: "protocol",
    MethodNotAllowed: "protocol",
    LockDenied: "protocol",
    PreconditionFailed: "protocol",
}


class Media(StrEnum):
    JSON = MEDIA_JSON
    XML = MEDIA_XML


# Request Content-Type -> encoding; plain JSON/XML are accepted as aliases.
REQUEST_MEDIA: Mapping[str, Media] = {
    MEDIA_JSON: Media.JSON,
    MEDIA_XML: Media.XML,
    "application/json": Media.JSON,
    "application/xml": Media.XML,
}


# Accept media range -> response encoding (JSON is the server's choice for wildcards).
ACCEPT_MEDIA: Mapping[str, Media] = {
    **REQUEST_MEDIA,
    "*/*": Media.JSON,
    "application/*": Media.JSON,
}


def error_type(exc: ZerotouchError) -> str:
    for cls in type(exc).__mro__:
        kind = _ERROR_TYPE.get(cls)
        if kind is not None:
            return kind
    return "application"


def status_and_tag(exc: ZerotouchError) -> tuple[int, str]:
    if exc.http_status in _MEDIA_STATUSES:
        return exc.http_status, "invalid-value"
    tag = exc.netconf_tag
    allowed = _STATUS_BY_TAG.get(tag, (500,))
    return (exc.http_status if exc.http_status in allowed else allowed[0]), tag


def parse_xml(body: bytes) -> etree._Element:
    """The body's root element, parsed with the hardened parser (DOCTYPE refused). An
    ``nc:operation`` attribute is refused as its JSON form is (``_refuse_metadata``): RESTCONF
    would ignore it, and a client that meant a delete would get a merge (RFC 8040 §4.6.1)."""
    root = parse_untrusted(body, "the body")
    for element in root.iter(etree.Element):
        if _NC_OPERATION in element.attrib:
            raise SchemaError(
                f"nc:operation attribute on <{etree.QName(element).localname}>: RESTCONF takes "
                "plain data here; a PATCH merges, DELETE deletes"
            )
    return root


_NC_OPERATION = f"{{{NETCONF_BASE_NS}}}operation"


def parse_json(body: bytes) -> Any:
    """ValueError also covers integers of more digits than Python converts (4300) and
    nesting past ``_json.MAX_DEPTH``: both are the client's."""
    try:
        doc = bounded_loads(body)
    except ValueError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from None
    _refuse_metadata(doc)
    return doc


def _refuse_metadata(doc: Any) -> None:
    """RFC 7952 §3, §5: an ``@`` member is metadata, valid only for an annotation a module
    defines, and none the device implements defines one a client may send. The edit engine
    reads ``ietf-netconf:operation`` in them (NETCONF's edit-config, RFC 6241 §7.2), which
    would turn a plain-patch merge (RFC 8040 §4.6.1) into a delete: refused before any edit."""
    stack: list[tuple[Any, str]] = [(doc, "")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            for name, value in node.items():
                if name.startswith("@"):
                    raise SchemaError(
                        f"metadata member {name!r} in the body (at {where or '/'}): RESTCONF "
                        "takes plain data here, without RFC 7952 annotations"
                    )
                stack.append((value, f"{where}/{name}"))
        elif isinstance(node, list):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(node))


def single_member(doc: Any) -> tuple[str, Any]:
    if not isinstance(doc, dict) or len(doc) != 1:
        raise InvalidInput("the body must be a JSON object with exactly one member")
    member, value = next(iter(doc.items()))
    if ":" not in member:
        # RFC 7951 §4: a top-level member name carries its module name.
        raise InvalidInput(f"member {member!r} must be qualified with its module name")
    return member, value


def errors_json(err_type: str, tag: str, exc: ZerotouchError, *, path: str | None = None) -> bytes:
    """The ``ietf-restconf:errors`` document; ``path`` (an instance-identifier in its RFC 7951
    §6.11 form) stands for ``exc.path`` when given."""
    error: Tree = {"error-type": err_type, "error-tag": tag}
    path = path or exc.path
    if path:
        error["error-path"] = path
    error["error-message"] = exc.message
    return json.dumps({"ietf-restconf:errors": {"error": [error]}}).encode()


_MODULE_IN_PATH = re.compile(r"(?:^|/)([A-Za-z_][\w.-]*):")
# One step of an instance-identifier in its RFC 7951 form: a name (module-qualified where
# the module changes) and its predicates, whose quoted strings may hold "/" and "]".
_STEP = re.compile(r"/(?:([A-Za-z_][\w.-]*):)?([^/\[]+)((?:\[[^'\"\]]*(?:'[^']*'|\"[^\"]*\")?\])*)")
_PREDICATE = re.compile(r"\[([^=\]]+)=('[^']*'|\"[^\"]*\")\]")


def _prefixed(path: str) -> str:
    """An RFC 7951 instance-identifier with every node name prefixed by its module name (the
    XML form, RFC 7950 §9.13.2); a path of another shape is left as it is."""
    steps = list(_STEP.finditer(path))
    if not steps or "".join(step.group(0) for step in steps) != path or not steps[0].group(1):
        return path
    out, module = [], ""
    for step in steps:
        module = step.group(1) or module
        predicates = _PREDICATE.findall(step.group(3))
        if "".join(f"[{name}={value}]" for name, value in predicates) != step.group(3):
            return path
        keys = "".join(
            f"[{name if name == '.' else f'{module}:{name}'}={value}]" for name, value in predicates
        )
        out.append(f"/{module}:{step.group(2)}{keys}")
    return "".join(out)


def _xml_text(text: str) -> str:
    """Escaped, with characters XML 1.0 cannot carry (NUL, C0 controls, lone surrogates from
    a client's path) replaced, so that the error document itself stays well-formed."""
    return escape(NOT_XML_CHAR.sub("\ufffd", text))


def errors_xml(
    schema: DeviceSchema, err_type: str, tag: str, exc: ZerotouchError, *, path: str | None = None
) -> bytes:
    """As ``errors_json``, in XML: there every node name of error-path carries a prefix
    (RFC 7950 §9.13.2); module names serve as prefixes, bound here."""
    parts = [f"<error-type>{err_type}</error-type>", f"<error-tag>{tag}</error-tag>"]
    path = _prefixed(path or exc.path or "")
    if path:
        decls = "".join(
            f" xmlns:{m}={quoteattr(schema.by_name[m].namespace)}"
            for m in dict.fromkeys(_MODULE_IN_PATH.findall(path))
            if m in schema.by_name
        )
        parts.append(f"<error-path{decls}>{_xml_text(path)}</error-path>")
    parts.append(f"<error-message>{_xml_text(exc.message)}</error-message>")
    return f'<errors xmlns="{RESTCONF_NS}"><error>{"".join(parts)}</error></errors>'.encode()

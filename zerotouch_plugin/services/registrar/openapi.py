"""The OpenAPI 3.1 description of the registrar's admin API, served at
``GET /admin/openapi.json`` and built from the table ``OPERATIONS``: (method, path) -> what
the operation takes and answers. ``build_document`` turns such a table into a document; the
SZTP bootstrap server's admin API (services/sztp/openapi.py) is described with it too. The
tests check that the table and the route table of ``app.py`` name the same admin routes,
that the document is valid OpenAPI, and validate every admin answer they get against it.

Errors are answered as one line of ``text/plain`` (services/_http.py); every operation lists
those that any admin request may get (401 without a client certificate, 403 with one that is
not an admin's, 413, 503) plus its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from zerotouch_plugin.artifacts.certs import UB_SERIAL_NUMBER
from zerotouch_plugin.artifacts.cms import MEDIA_TYPE_VOUCHER_CMS
from zerotouch_plugin.services.registrar.common import MAX_MANUFACTURER
from zerotouch_plugin.store.registrar.events import EVENT_TYPES

__all__ = [
    "OPERATIONS",
    "Answer",
    "Operation",
    "build_document",
    "closed_object",
    "json_answer",
    "openapi_document",
    "ref",
    "text_error",
]

JSON = "application/json"
TEXT = "text/plain"
_TIME = {"type": "string", "format": "date-time"}
_TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
_STR_OR_NULL = {"type": ["string", "null"]}
_BOOL_OR_NULL = {"type": ["boolean", "null"]}
_PORT_OR_NULL = {"type": ["integer", "null"], "minimum": 1, "maximum": 65535}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def closed_object(props: Mapping[str, Any], *, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """A closed object: every property but ``optional`` required, nothing else allowed."""
    return {
        "type": "object",
        "properties": dict(props),
        "required": [p for p in props if p not in optional],
        "additionalProperties": False,
    }


SCHEMAS: Mapping[str, Any] = {
    "Handoff": closed_object(
        {
            "state": {"enum": ["none", "pending", "applied", "failed"]},
            "attempts": {"type": "integer", "minimum": 0},
            "at": _TIME_OR_NULL,
            "error": _STR_OR_NULL,
            "target": _STR_OR_NULL,
            "next_attempt_at": _TIME_OR_NULL,
        }
    ),
    "Management": closed_object(
        {
            "host": {"type": "string"},
            "netconf_tls_port": _PORT_OR_NULL,
            "restconf_port": _PORT_OR_NULL,
            "reported_at": _TIME,
            "netconf_ssh_port": _PORT_OR_NULL,
            "address": _STR_OR_NULL,
        }
    ),
    "Escrow": closed_object(
        {
            "expires_on": _TIME,
            "signer": {"type": "string"},
            "imported_at": _TIME,
            "used_at": _TIME_OR_NULL,
            "used_count": {"type": "integer", "minimum": 0},
        }
    ),
    "Device": closed_object(
        {
            "serial": {"type": "string"},
            "manufacturer": {"type": "string"},
            "idevid_fingerprint": _STR_OR_NULL,
            "state": {"type": "string"},
            "created_at": _TIME,
            "updated_at": _TIME,
            "voucher_requested_at": _TIME_OR_NULL,
            "voucher_issued_at": _TIME_OR_NULL,
            "voucher_status_at": _TIME_OR_NULL,
            "voucher_accepted": _BOOL_OR_NULL,
            "enrolled_at": _TIME_OR_NULL,
            "ldevid_fingerprint": _STR_OR_NULL,
            "ldevid_not_after": _TIME_OR_NULL,
            "dns_name": _STR_OR_NULL,
            "enroll_status_at": _TIME_OR_NULL,
            "enroll_confirmed": _BOOL_OR_NULL,
            "audit_level": {"enum": ["clean", "warning", "alert", None]},
            "audit_summary": _STR_OR_NULL,
            "audit_at": _TIME_OR_NULL,
            "last_error": _STR_OR_NULL,
            "voucher_source": {"enum": ["masa", "escrow", None]},
            "handoff": ref("Handoff"),
            "management": {"oneOf": [ref("Management"), {"type": "null"}]},
            "escrow": {"oneOf": [ref("Escrow"), {"type": "null"}]},
        }
    ),
    "DeviceList": closed_object({"devices": {"type": "array", "items": ref("Device")}}),
    "DeviceDetail": closed_object(
        {
            "serial": {"type": "string"},
            "device": {"oneOf": [ref("Device"), {"type": "null"}]},
            "policy": {
                "type": "array",
                "items": closed_object(
                    {
                        "decision": {"enum": ["allow", "deny", "pending"]},
                        "manufacturer": _STR_OR_NULL,
                        "since": _TIME,
                    }
                ),
            },
            "vouchers": {
                "type": "array",
                "items": closed_object(
                    {
                        "issued_at": _TIME,
                        "assertion": {"type": "string"},
                        "nonce": _STR_OR_NULL,
                        "expires_on": _TIME_OR_NULL,
                        "source": {"enum": ["masa", "escrow"]},
                    }
                ),
            },
            "status_reports": {
                "type": "array",
                "items": closed_object(
                    {
                        "kind": {"enum": ["voucher_status", "enrollstatus"]},
                        "received_at": _TIME,
                        "status": {"type": "boolean"},
                        "reason": _STR_OR_NULL,
                    }
                ),
            },
        }
    ),
    "Decision": closed_object(
        {
            "serial": {"type": "string"},
            "decision": {"enum": ["allow", "deny"]},
            "manufacturer": _STR_OR_NULL,
        }
    ),
    "Approved": closed_object(
        {
            "serial": {"type": "string"},
            "decision": {"const": "allow"},
            "decided": {"type": "integer", "minimum": 1},
        }
    ),
    "ManufacturerBody": closed_object(
        {"manufacturer": {"type": "string"}}, optional=("manufacturer",)
    ),
    "Removed": closed_object(
        {"serial": {"type": "string"}, "removed": {"type": ["integer", "boolean"]}}
    ),
    "Day0Removed": closed_object({"serial": _STR_OR_NULL, "removed": {"const": True}}),
    "Day0Stored": closed_object(
        {"serial": _STR_OR_NULL, "format": {"enum": ["json", "xml"]}, "stored": {"const": True}}
    ),
    "HandoffQueued": closed_object(
        {"serial": {"type": "string"}, "state": {"const": "pending"}, "target": {"type": "string"}}
    ),
    "AddressBody": closed_object({"address": {"type": "string"}}),
    "Address": closed_object({"serial": {"type": "string"}, "address": _STR_OR_NULL}),
    "EscrowHeld": closed_object(
        {"serial": {"type": "string"}, "expires_on": _TIME, "signer": {"type": "string"}}
    ),
    "Event": closed_object(
        {
            "id": {"type": "integer", "minimum": 1},
            "type": {"enum": list(EVENT_TYPES)},
            "serial": _STR_OR_NULL,
            "at": _TIME,
            "data": {"type": "object"},
        }
    ),
    "Error": {"type": "string", "description": "one line: what was refused and why"},
}


@dataclass(frozen=True)
class Answer:
    description: str
    media: Mapping[str, Any] = field(default_factory=dict)  # media type -> schema
    headers: Mapping[str, str] = field(default_factory=dict)  # header -> description


@dataclass(frozen=True)
class Operation:
    summary: str
    answers: Mapping[int, Answer]
    body: Mapping[str, Any] | None = None  # media type -> schema of the request body
    body_required: bool = True
    query: Mapping[str, str] = field(default_factory=dict)  # parameter -> description
    headers: Mapping[str, str] = field(default_factory=dict)  # request header -> description


def json_answer(schema: str, description: str = "done") -> Answer:
    return Answer(description, {JSON: ref(schema)})


def text_error(description: str) -> Answer:
    return Answer(description, {TEXT: ref("Error")})


_DAY0_MEDIA = (
    "application/yang-data+json",
    "application/json",
    "application/yang-data+xml",
    "application/xml",
)
_DAY0_DOC: Mapping[str, Any] = {m: {"type": "string"} for m in _DAY0_MEDIA[::2]}
_DAY0_BODY: Mapping[str, Any] = {m: {"type": "string"} for m in _DAY0_MEDIA}
_MANUFACTURER = "only for IDevIDs from this issuer (default: any)"
_BAD = text_error("malformed request")
_NONE = text_error("nothing of that kind is on record")
_MEDIA = text_error("the request body's media type is not taken here")


def _day0(who: str) -> dict[tuple[str, str], Operation]:
    path = "/admin/day0/default" if who == "default" else "/admin/devices/{serial}/day0"
    return {
        ("GET", path): Operation(
            f"The day-0 configuration of {who}, as stored",
            {
                200: Answer("the document", _DAY0_DOC, {"Last-Modified": "when it was stored"}),
                404: _NONE,
            },
        ),
        ("PUT", path): Operation(
            f"Store the day-0 configuration of {who}, validated against the device schema",
            {
                200: json_answer("Day0Stored"),
                400: text_error("schema-error: ... (at PATH)"),
                415: _MEDIA,
            },
            body=_DAY0_BODY,
        ),
        ("DELETE", path): Operation(
            f"Remove the day-0 configuration of {who} and its address",
            {200: json_answer("Day0Removed"), 404: _NONE},
        ),
    }


def _policy(decision: str) -> Operation:
    return Operation(
        f"{decision.capitalize()} the serial number",
        {200: json_answer("Decision"), 400: _BAD, 415: _MEDIA},
        body={JSON: ref("ManufacturerBody")},
        body_required=False,
        query={"manufacturer": _MANUFACTURER},
    )


_OPERATIONS: Mapping[tuple[str, str], Operation] = {
    ("GET", "/admin/devices"): Operation("Every device record", {200: json_answer("DeviceList")}),
    ("GET", "/admin/devices/{serial}"): Operation(
        "A device's record, policy, vouchers and status reports",
        {200: json_answer("DeviceDetail"), 404: _NONE},
    ),
    ("POST", "/admin/devices/{serial}/allow"): _policy("allow"),
    ("POST", "/admin/devices/{serial}/deny"): _policy("deny"),
    ("POST", "/admin/devices/{serial}/approve"): Operation(
        "Allow a device waiting for approval (registrar policy ask)",
        {200: json_answer("Approved"), 404: _NONE},
    ),
    ("DELETE", "/admin/devices/{serial}/policy"): Operation(
        "Drop the allow/deny entries of a serial number",
        {200: json_answer("Removed"), 404: _NONE},
        query={"manufacturer": "only the entry for this issuer"},
    ),
    **_day0("a device"),
    **_day0("default"),
    ("POST", "/admin/devices/{serial}/handoff"): Operation(
        "Push the day-0 configuration to the device again",
        {
            200: json_answer("HandoffQueued"),
            404: _NONE,
            409: text_error("the device is not enroll-confirmed or has no known address"),
        },
    ),
    ("PUT", "/admin/devices/{serial}/address"): Operation(
        "Set the management address the hand-off uses",
        {200: json_answer("Address"), 400: _BAD, 415: _MEDIA},
        body={JSON: ref("AddressBody")},
    ),
    ("DELETE", "/admin/devices/{serial}/address"): Operation(
        "Drop the management address override", {200: json_answer("Address"), 404: _NONE}
    ),
    ("PUT", "/admin/devices/{serial}/voucher"): Operation(
        "Hold a nonceless voucher in escrow for the device",
        {
            200: json_answer("EscrowHeld"),
            400: text_error("a nonce, or no expires-on"),
            403: text_error("expired, for another serial or domain, or an untrusted signer"),
            415: _MEDIA,
        },
        body={MEDIA_TYPE_VOUCHER_CMS: {"type": "string", "format": "binary"}},
    ),
    ("GET", "/admin/devices/{serial}/voucher"): Operation(
        "The voucher held in escrow, as imported",
        {
            200: Answer("the CMS", {MEDIA_TYPE_VOUCHER_CMS: {"type": "string"}}),
            404: _NONE,
        },
    ),
    ("DELETE", "/admin/devices/{serial}/voucher"): Operation(
        "Drop the voucher held in escrow", {200: json_answer("Removed"), 404: _NONE}
    ),
    ("GET", "/admin/events"): Operation(
        "Device events as server-sent events (text/event-stream): each message has id, "
        "event (the type) and data (an Event as JSON); ': heartbeat' comments keep an idle "
        "stream open; 'event: dropped' ends a stream that fell behind",
        {
            200: Answer("the stream", {"text/event-stream": {"type": "string"}}),
            400: text_error("Last-Event-ID or after is not an event id, or an unknown type"),
            503: text_error("too many streams are open"),
        },
        query={
            "after": "resume after this event id (as Last-Event-ID)",
            "types": "only these event types, comma-separated",
            "serial": "only the events of this device",
        },
        headers={"Last-Event-ID": "resume after this event id"},
    ),
    ("GET", "/admin/openapi.json"): Operation(
        "This document", {200: Answer("OpenAPI 3.1", {JSON: {"type": "object"}})}
    ),
    ("GET", "/metrics"): Operation(
        "Prometheus metrics (text exposition format 0.0.4)",
        {200: Answer("the metrics", {"text/plain": {"type": "string"}})},
    ),
}

# Every operation on a device also answers 400 for a serial (or manufacturer) the store
# cannot hold (common.check_names); one with a 400 of its own keeps its description.
_NAMES = text_error(
    f"a serial or manufacturer no device can have: longer than {UB_SERIAL_NUMBER} / "
    f"{MAX_MANUFACTURER} characters, or with a control character"
)
OPERATIONS: Mapping[tuple[str, str], Operation] = {
    (method, path): replace(op, answers={400: _NAMES, **op.answers}) if "{serial}" in path else op
    for (method, path), op in _OPERATIONS.items()
}

# Answers any admin request may get.
_COMMON: Mapping[int, Answer] = {
    401: text_error("no TLS client certificate"),
    403: text_error(
        "the client certificate is not an admin certificate of this domain, or a browser "
        "sent a change from another site"
    ),
    413: text_error("the request body is too large"),
    503: text_error("the database is unavailable; retry after Retry-After seconds"),
}


def _parameters(path: str, op: Operation) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"\{([^}]+)\}", path)
    ]
    for name, description in op.query.items():
        params.append(
            {"name": name, "in": "query", "description": description, "schema": {"type": "string"}}
        )
    for name, description in op.headers.items():
        params.append(
            {
                "name": name,
                "in": "header",
                "description": description,
                "schema": {"type": "string"},
            }
        )
    return params


def _answer(answer: Answer) -> dict[str, Any]:
    out: dict[str, Any] = {"description": answer.description}
    if answer.media:
        out["content"] = {m: {"schema": s} for m, s in answer.media.items()}
    if answer.headers:
        out["headers"] = {
            h: {"description": d, "schema": {"type": "string"}} for h, d in answer.headers.items()
        }
    return out


def _operation(
    method: str, path: str, op: Operation, common: Mapping[int, Answer]
) -> dict[str, Any]:
    answers = {**common, **op.answers}
    out: dict[str, Any] = {
        "operationId": method.lower() + re.sub(r"[^A-Za-z0-9]+", "_", path).rstrip("_"),
        "summary": op.summary,
        "responses": {str(code): _answer(a) for code, a in sorted(answers.items())},
    }
    params = _parameters(path, op)
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {
            "required": op.body_required,
            "content": {m: {"schema": s} for m, s in op.body.items()},
        }
    return out


def build_document(
    *,
    info: Mapping[str, str],
    operations: Mapping[tuple[str, str], Operation],
    schemas: Mapping[str, Any],
    common: Mapping[int, Answer],
    certificate: str,
) -> dict[str, Any]:
    """An OpenAPI 3.1 document of ``operations``, each also answering ``common``, every
    request authenticated by the client ``certificate`` (mutual TLS) it describes."""
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), op in operations.items():
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, op, common)
    return {
        "openapi": "3.1.0",
        "info": dict(info),
        "paths": paths,
        "security": [{"adminCertificate": []}],
        "components": {
            "schemas": dict(schemas),
            "securitySchemes": {
                "adminCertificate": {"type": "mutualTLS", "description": certificate}
            },
        },
    }


def openapi_document(version: str) -> dict[str, Any]:
    """The document, for the registrar of ``version``."""
    return build_document(
        info={
            "title": "zerotouch registrar admin API",
            "version": version,
            "description": "Devices, allow/deny policy, day-0 configuration, escrow vouchers, "
            "device events and metrics of a BRSKI registrar (RFC 8995). Every request needs a "
            "TLS client certificate from the domain CA with OU=zerotouch-admin.",
        },
        operations=OPERATIONS,
        schemas=SCHEMAS,
        common=_COMMON,
        certificate="a client certificate from the domain CA with OU=zerotouch-admin "
        "('zerotouch registrar issue-client-cert --admin')",
    )

"""The OpenAPI 3.1 description of the SZTP bootstrap server's admin API, served at
``GET /admin/openapi.json`` on the admin listener: the table ``OPERATIONS`` turned into a
document by the registrar's builder (``services/registrar/openapi.py`` ``build_document``).
The tests check that the table names exactly the routes ``admin.py`` serves and validate the
answers they get against the document.

Errors are one line of ``text/plain`` (services/_http.py); every operation lists those any
admin request may get plus its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zerotouch_plugin.artifacts.cms import MEDIA_TYPE_VOUCHER_CMS
from zerotouch_plugin.artifacts.sztp import MEDIA_TYPE_JSON, MEDIA_TYPE_XML, ProgressType
from zerotouch_plugin.services.registrar.openapi import (
    Answer,
    Operation,
    build_document,
    closed_object,
    json_answer,
    ref,
    text_error,
)

__all__ = ["OPERATIONS", "openapi_document"]

JSON = "application/json"
_STR = {"type": "string"}
_STR_OR_NULL = {"type": ["string", "null"]}
_TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
_CONVEYED = {
    "type": "object",
    "description": "conveyed information (RFC 8572 §6.1, ietf-sztp-conveyed-info) as RFC 7951 "
    "JSON: one member, redirect-information or onboarding-information",
    "minProperties": 1,
    "maxProperties": 1,
}

SCHEMAS: Mapping[str, Any] = {
    "ResponseList": closed_object(
        {"responses": {"type": "object", "additionalProperties": _CONVEYED}}
    ),
    "Response": closed_object({"name": _STR, "conveyed-information": _CONVEYED}),
    "ResponseSet": closed_object(
        {"name": _STR, "kind": {"enum": ["redirect-information", "onboarding-information"]}}
    ),
    "ResponseRemoved": closed_object({"name": _STR, "removed": {"const": True}}),
    "Device": closed_object(
        {
            "serial": _STR,
            "response": _STR_OR_NULL,
            "voucher": {"type": "boolean"},
            "voucher-expires": _TIME_OR_NULL,
            "first-seen": _TIME_OR_NULL,
            "last-seen": _TIME_OR_NULL,
            "hw-model": _STR_OR_NULL,
            "os-name": _STR_OR_NULL,
            "os-version": _STR_OR_NULL,
            "last-progress": _STR_OR_NULL,
        }
    ),
    "DeviceList": closed_object({"devices": {"type": "array", "items": ref("Device")}}),
    "DeviceBody": closed_object({"response": _STR}),
    "DeviceSet": closed_object({"serial": _STR, "response": _STR}),
    "VoucherSet": closed_object({"serial": _STR, "voucher-expires": _TIME_OR_NULL}),
    "Progress": closed_object(
        {
            "serial": _STR,
            "time": {"type": "string", "format": "date-time"},
            "progress-type": {"enum": [str(p) for p in ProgressType]},
            "message": _STR_OR_NULL,
            "peer": _STR_OR_NULL,
            "ssh-host-keys": {
                "type": "array",
                "items": closed_object({"algorithm": _STR, "key-data": _STR}),
            },
            "trust-anchor-certs": {"type": "array", "items": _STR},
        },
        optional=("ssh-host-keys", "trust-anchor-certs"),
    ),
    "ProgressList": closed_object({"progress": {"type": "array", "items": ref("Progress")}}),
    "Error": {"type": "string", "description": "one line: what was refused and why"},
}

_NONE = text_error("nothing of that name is on record")

OPERATIONS: Mapping[tuple[str, str], Operation] = {
    ("GET", "/admin/responses"): Operation(
        "Every stored response by name", {200: json_answer("ResponseList")}
    ),
    ("GET", "/admin/responses/{name}"): Operation(
        "One response's conveyed information", {200: json_answer("Response"), 404: _NONE}
    ),
    ("PUT", "/admin/responses/{name}"): Operation(
        "Store a response, validated against ietf-sztp-conveyed-info ('default' answers "
        "every device without one of its own)",
        {
            200: json_answer("ResponseSet"),
            400: text_error("malformed, or schema-error: ... (at PATH)"),
            415: text_error("the body is neither application/yang-data+json nor +xml"),
        },
        body={MEDIA_TYPE_JSON: _CONVEYED, MEDIA_TYPE_XML: _STR},
    ),
    ("DELETE", "/admin/responses/{name}"): Operation(
        "Remove a response no device uses",
        {200: json_answer("ResponseRemoved"), 404: text_error("no such response, or in use")},
    ),
    ("GET", "/admin/devices"): Operation("Every device record", {200: json_answer("DeviceList")}),
    ("PUT", "/admin/devices/{serial}"): Operation(
        "Assign a response to a device",
        {
            200: json_answer("DeviceSet"),
            400: text_error('the body is not {"response": NAME}'),
            404: text_error("no such response"),
        },
        body={JSON: ref("DeviceBody")},
    ),
    ("PUT", "/admin/devices/{serial}/voucher"): Operation(
        "Import the device's ownership voucher, checked as the device will check it",
        {
            200: json_answer("VoucherSet"),
            400: text_error("not a voucher CMS, or sent as another media type"),
            403: text_error(
                "an untrusted signer, another serial, expired, or a pin outside the owner chain"
            ),
        },
        body={MEDIA_TYPE_VOUCHER_CMS: {"type": "string", "format": "binary"}},
    ),
    ("GET", "/admin/progress"): Operation(
        "The progress reports devices sent (RFC 8572 §7.3), oldest first",
        {200: json_answer("ProgressList")},
        query={"serial": "only the reports of this device"},
    ),
    ("GET", "/admin/openapi.json"): Operation(
        "This document", {200: Answer("OpenAPI 3.1", {JSON: {"type": "object"}})}
    ),
}

# Answers any admin request may get.
_COMMON: Mapping[int, Answer] = {
    401: text_error("no TLS client certificate"),
    403: text_error("the client certificate is not one of admin-ca.pem"),
    413: text_error("the request body is too large"),
    503: text_error("the database is unavailable; retry after Retry-After seconds"),
}


def openapi_document(version: str) -> dict[str, Any]:
    """The document, for the bootstrap server of ``version``."""
    return build_document(
        info={
            "title": "zerotouch SZTP bootstrap server admin API",
            "version": version,
            "description": "Responses (conveyed information), devices, ownership vouchers and "
            "progress reports of an SZTP bootstrap server (RFC 8572). Every request needs a "
            "TLS client certificate issued by the server folder's admin-ca.pem.",
        },
        operations=OPERATIONS,
        schemas=SCHEMAS,
        common=_COMMON,
        certificate="a client certificate issued by admin-ca.pem of the server folder "
        "('zerotouch sztp init' writes one, admin.pem)",
    )

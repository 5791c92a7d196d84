"""The admin API's OpenAPI document: valid OpenAPI 3.1, and exactly the admin routes the
registrar serves, each with the answers every admin request may get."""

from __future__ import annotations

import json

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from zerotouch_plugin.services.registrar import ROUTES
from zerotouch_plugin.services.registrar.openapi import OPERATIONS, openapi_document

ADMIN_ROUTES = {
    (r.method, r.path) for r in ROUTES if r.path.startswith("/admin/") or r.path == "/metrics"
}


def test_document_is_valid_openapi() -> None:
    doc = openapi_document("1.2.3")
    validate(doc)
    assert doc["openapi"] == "3.1.0" and doc["info"]["version"] == "1.2.3"
    json.dumps(doc)  # served as JSON as it is


def test_a_broken_document_is_refused_by_the_validator() -> None:
    doc = openapi_document("1")
    del doc["paths"]["/admin/devices"]["get"]["responses"]["200"]["description"]
    with pytest.raises(OpenAPIValidationError):
        validate(doc)


def test_every_admin_route_is_documented_and_nothing_else() -> None:
    assert set(OPERATIONS) == ADMIN_ROUTES
    doc = openapi_document("1")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == ADMIN_ROUTES


def test_every_operation_names_the_refusals_of_any_admin_request() -> None:
    doc = openapi_document("1")
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert {"401", "403", "503"} <= set(op["responses"]), (method, path)
            for code, answer in op["responses"].items():
                if int(code) >= 400:
                    assert list(answer["content"]) == ["text/plain"], (method, path, code)
            assert ("{serial}" in path) == any(p["in"] == "path" for p in op.get("parameters", []))

"""The SZTP admin API's OpenAPI document: valid OpenAPI 3.1 and exactly the routes the admin
application serves (tests/e2e/test_sztp_server.py validates the answers against it)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from aiohttp import web
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from zerotouch_plugin.services.sztp import admin
from zerotouch_plugin.services.sztp.openapi import OPERATIONS, openapi_document
from zerotouch_plugin.store.db import open_database
from zerotouch_plugin.store.sztp import SztpRepository


def _app(folder: Path) -> web.Application:
    repo = SztpRepository(open_database(folder / "sztp.db"))
    return admin.admin_app(repo, manufacturer_cas=(), owner_chain=(), body_limit=65536)


def _served(app: web.Application) -> set[tuple[str, str]]:
    """(method, path template) of every route the application answers (HEAD is aiohttp's
    automatic companion of GET)."""
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }


def test_document_is_valid_openapi() -> None:
    doc = openapi_document("1.2.3")
    validate(doc)
    assert doc["openapi"] == "3.1.0" and doc["info"]["version"] == "1.2.3"
    assert "SZTP" in doc["info"]["title"]
    json.dumps(doc)


def test_a_broken_document_is_refused_by_the_validator() -> None:
    doc = openapi_document("1")
    del doc["paths"]["/admin/devices"]["get"]["responses"]["200"]["description"]
    with pytest.raises(OpenAPIValidationError):
        validate(doc)


def test_the_document_names_exactly_the_served_routes(tmp_path: Path) -> None:
    served = _served(_app(tmp_path))
    assert set(OPERATIONS) == served
    doc = openapi_document("1")
    assert {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops} == served


def test_every_operation_has_its_path_parameters_and_the_common_refusals() -> None:
    doc = openapi_document("1")
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert {"401", "403", "413", "503"} <= set(op["responses"]), (method, path)
            names = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert names == set(re.findall(r"\{([^}]+)\}", path)), (method, path)
            for code, answer in op["responses"].items():
                if int(code) >= 400:
                    assert list(answer["content"]) == ["text/plain"], (method, path, code)

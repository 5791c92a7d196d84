"""Every answer of the registrar's admin API the tests get, checked against the OpenAPI
document the registrar serves (or another admin API's document, such as the SZTP bootstrap
server's): the operation exists, the status is documented for it, the media type is one it
lists, and a JSON body validates against its schema (JSON Schema 2020-12, formats
checked)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from zerotouch_plugin.services.registrar.openapi import openapi_document


@cache
def document() -> Mapping[str, Any]:
    """The document, checked once to be valid OpenAPI 3.1."""
    doc = openapi_document("test")
    validate(doc)
    return doc


def _template(doc: Mapping[str, Any], path: str) -> str:
    """The document's path template that ``path`` (query string ignored) matches."""
    bare = urlsplit(path).path
    for template in doc["paths"]:
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, bare):
            return str(template)
    raise AssertionError(f"{bare} is not in the admin API's OpenAPI document")


def check_admin_answer(
    method: str,
    path: str,
    status: int,
    content_type: str | None,
    body: bytes,
    doc: Mapping[str, Any] | None = None,
) -> None:
    """AssertionError naming what in the answer ``doc`` (default: the registrar's document)
    does not describe."""
    doc = document() if doc is None else doc
    template = _template(doc, path)
    operation = doc["paths"][template].get(method.lower())
    assert operation is not None, f"{method} {template} is not in the OpenAPI document"
    response = operation["responses"].get(str(status))
    assert response is not None, (
        f"{method} {template} answered {status}, which the document does not list: {body[:200]!r}"
    )
    content = response.get("content")
    if content is None:
        assert not body, f"{method} {template} {status}: a body where the document has none"
        return
    media = (content_type or "").split(";", 1)[0].strip().lower()
    assert media in content, (
        f"{method} {template} {status}: Content-Type {media!r}, the document lists {list(content)}"
    )
    schema = content[media]["schema"]
    if media == "application/json":
        instance: Any = json.loads(body)
    else:
        instance = body.decode("utf-8", "replace")
    validator = Draft202012Validator(
        {**schema, "components": doc["components"]},
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    problems = [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in validator.iter_errors(instance)
    ]
    assert not problems, f"{method} {template} {status} does not match the document: {problems}"

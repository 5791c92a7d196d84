"""YANG validation of voucher and voucher-request JSON (RFC 7951) with yangson.

Vouchers are ``rc:yang-data`` structures (RFC 8366 §5.3, RFC 8995 §3.3), not datastore nodes,
so no YANG library can validate them as they stand. The validation-only module
``zerotouch-voucher-validation`` places the artifact groupings in presence containers; an
artifact is validated by moving its content under the matching container, and every error
path is mapped back to the artifact's own member (``/ietf-voucher:voucher/...``).
"""

from __future__ import annotations

import functools
import json
import sysconfig
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from yangson import DataModel
from yangson.datatype import EnumerationType
from yangson.enumerations import ContentType
from yangson.exceptions import (
    RawMemberError,
    RawTypeError,
    SemanticError,
    ValidationError,
    YangTypeError,
)
from yangson.exceptions import (
    SchemaError as YangsonSchemaError,
)
from yangson.schemanode import TerminalNode

from zerotouch_plugin.artifacts._yang_fast import BodyCheck, body_check
from zerotouch_plugin.errors import ArtifactKindMismatch, SchemaError

__all__ = [
    "MEMBER_BY_KIND",
    "ArtifactKind",
    "artifact_body",
    "artifact_kind",
    "build_validation_model",
    "prepared",
    "pyang_module_dirs",
    "validate_artifact",
    "yang_dir",
]

ArtifactKind = Literal["voucher", "voucher-request"]

# Top-level RFC 7951 member of each artifact (RFC 8366 §5.3, RFC 8995 §3.3).
MEMBER_BY_KIND: Mapping[ArtifactKind, str] = {
    "voucher": "ietf-voucher:voucher",
    "voucher-request": "ietf-voucher-request:voucher",
}
_KIND_BY_MEMBER: Mapping[str, ArtifactKind] = {v: k for k, v in MEMBER_BY_KIND.items()}

_VALIDATION_MODULE = "zerotouch-voucher-validation"
# Container of the validation module that holds each artifact kind.
_HOLDER_BY_KIND: Mapping[ArtifactKind, str] = {
    "voucher": f"{_VALIDATION_MODULE}:voucher-artifact",
    "voucher-request": f"{_VALIDATION_MODULE}:voucher-request-artifact",
}

# (module, revision, namespace, conformance) of every module the validation model needs.
_MODULES: tuple[tuple[str, str, str, str], ...] = (
    ("ietf-yang-types", "2013-07-15", "urn:ietf:params:xml:ns:yang:ietf-yang-types", "import"),
    ("ietf-restconf", "2017-01-26", "urn:ietf:params:xml:ns:yang:ietf-restconf", "import"),
    ("ietf-voucher", "2018-05-09", "urn:ietf:params:xml:ns:yang:ietf-voucher", "import"),
    (
        "ietf-voucher-request",
        "2021-05-20",
        "urn:ietf:params:xml:ns:yang:ietf-voucher-request",
        "import",
    ),
    (
        _VALIDATION_MODULE,
        "2026-11-26",
        "urn:zerotouch:params:xml:ns:yang:zerotouch-voucher-validation",
        "implement",
    ),
)

# The fast checks of each model built by build_validation_model (see _yang_fast); a model
# built otherwise has none and is validated by yangson alone.
_FAST_CHECKS: weakref.WeakKeyDictionary[DataModel, Mapping[ArtifactKind, BodyCheck]] = (
    weakref.WeakKeyDictionary()
)

# Why a ``must`` fails, per leaf (RFC 8366 §5.3): yangson reports only "must-violation".
_MUST_RULES: Mapping[str, str] = {
    "nonce": "must constraint violated: nonce and expires-on are mutually exclusive",
    "expires-on": "must constraint violated: expires-on and nonce are mutually exclusive",
    "last-renewal-date": "must constraint violated: last-renewal-date requires expires-on",
}


def yang_dir() -> Path:
    """The project's ``yang/`` folder: beside the package in a checkout, else installed data."""
    candidates = (
        Path(__file__).resolve().parents[2] / "yang",
        Path(sysconfig.get_path("data")) / "share" / "zerotouch" / "yang",
    )
    for candidate in candidates:
        if (candidate / "ietf-voucher@2018-05-09.yang").is_file():
            return candidate
    raise FileNotFoundError(f"zerotouch YANG modules not found in {[str(c) for c in candidates]}")


def pyang_module_dirs() -> tuple[Path, ...]:
    """pyang's installed IETF/IANA modules, where the standard imports are loaded from."""
    base = Path(sysconfig.get_path("data")) / "share" / "yang" / "modules"
    return tuple(d for d in (base / "ietf", base / "iana") if d.is_dir())


def build_validation_model(search: Sequence[Path]) -> DataModel:
    """A yangson model of the validation module, loading modules from ``search`` in order."""
    library = {
        "ietf-yang-library:modules-state": {
            "module-set-id": "zerotouch-voucher-validation",
            "module": [
                {"name": n, "revision": r, "namespace": ns, "conformance-type": c}
                for n, r, ns, c in _MODULES
            ],
        }
    }
    model = prepared(DataModel(json.dumps(library), [str(d) for d in search]))
    # Compiled here, before the model is shared, so no thread ever sees half of it.
    _FAST_CHECKS[model] = {
        kind: check
        for kind, holder in _HOLDER_BY_KIND.items()
        if (check := body_check(model, holder)) is not None
    }
    return model


def prepared(model: DataModel) -> DataModel:
    """``model`` with every schema pattern built, so threads can share it.

    yangson builds them lazily when the first instance is made, the root's first and then its
    descendants': a thread validating meanwhile sees the root's pattern but a child's still
    None and fails with AttributeError (a MASA answered 500 to its first concurrent requests).
    Making one instance here builds them all before the model is shared.
    """
    model.from_raw({})
    return model


@functools.cache
def _data_model() -> DataModel:
    """Built once: loading and compiling the modules is the costly part."""
    return build_validation_model([yang_dir(), *pyang_module_dirs()])


def artifact_kind(obj: Mapping[str, Any]) -> ArtifactKind:
    """Which artifact a decoded JSON object is, by its single module-qualified member."""
    if not isinstance(obj, Mapping):
        raise SchemaError("artifact is not a JSON object", path="/")
    members = list(obj)
    if len(members) != 1:
        raise SchemaError(
            f"artifact must have exactly one top-level member, found {members}", path="/"
        )
    kind = _KIND_BY_MEMBER.get(members[0])
    if kind is None:
        raise SchemaError(
            f"unknown top-level member {members[0]!r}; expected one of {sorted(_KIND_BY_MEMBER)}",
            path=f"/{members[0]}",
        )
    return kind


def artifact_body(obj: Mapping[str, Any], kind: ArtifactKind) -> dict[str, Any]:
    """The object under the artifact's top-level member, after checking it is of ``kind``."""
    found = artifact_kind(obj)
    member = MEMBER_BY_KIND[kind]
    if found != kind:
        raise ArtifactKindMismatch(
            f"expected a {kind} ({member}), got a {found} ({MEMBER_BY_KIND[found]})",
            path=f"/{MEMBER_BY_KIND[found]}",
        )
    inner = obj[member]
    if not isinstance(inner, dict):
        raise SchemaError("wrong type: expected a JSON object", path=f"/{member}")
    return inner


def validate_artifact(
    obj: Mapping[str, Any], kind: ArtifactKind, *, model: DataModel | None = None
) -> None:
    """Validate RFC 7951 JSON of a voucher or voucher-request against its YANG schema.

    Raises ArtifactKindMismatch for the other artifact kind, SchemaError (path + rule)
    otherwise. ``model`` defaults to the one built from the project's modules. A body the
    compiled check accepts is valid for yangson too; any other goes to yangson, for its verdict
    and its error.
    """
    inner = artifact_body(obj, kind)
    active = model or _data_model()
    fast = _FAST_CHECKS.get(active, {}).get(kind)
    if fast is not None and fast.accepts(inner):
        return
    _validate_with_yangson(inner, kind, active)


def _validate_with_yangson(inner: dict[str, Any], kind: ArtifactKind, model: DataModel) -> None:
    """yangson's full validation of the body ``inner``, errors mapped to the artifact's paths."""
    member = MEMBER_BY_KIND[kind]
    holder = _HOLDER_BY_KIND[kind]
    prefix = f"/{holder}/voucher"
    try:
        instance = model.from_raw({holder: {"voucher": inner}})
        instance.validate(ctype=ContentType.all)
    except RawMemberError as exc:
        raise SchemaError(
            f"unknown member {exc.path.rsplit('/', 1)[-1]!r}",
            path=_artifact_path(exc.path, prefix, member),
        ) from None
    except RawTypeError as exc:
        raise SchemaError(
            f"wrong type: {exc.message}", path=_artifact_path(exc.path, prefix, member)
        ) from None
    except ValidationError as exc:
        route = str(exc.instance.instance_route())
        message = _RULES.get(type(exc), _schema_rule)(exc)
        if isinstance(exc, YangsonSchemaError) and exc.tag == "missing-data":
            route = f"{route}/{_missing_leaf(exc)}"
        raise SchemaError(message, path=_artifact_path(route, prefix, member)) from None


def _artifact_path(path: str, prefix: str, member: str) -> str:
    """Map a path inside the validation module back to the artifact's own member."""
    if path.startswith(prefix):
        return f"/{member}{path[len(prefix) :]}"
    return path


def _missing_leaf(exc: ValidationError) -> str:
    return (exc.message or "").removeprefix("expected ").strip("'")


def _missing(exc: ValidationError) -> str:
    return f"missing mandatory leaf {_missing_leaf(exc)!r}"


def _bad_value(exc: ValidationError) -> str:
    node = exc.instance.schema_node
    value = exc.instance.value
    if isinstance(node, TerminalNode) and isinstance(node.type, EnumerationType):
        allowed = ", ".join(name for name, _ in node.type.sorted_enums())
        return f"{value!r} not in enumeration ({allowed})"
    if isinstance(node, TerminalNode):
        length = getattr(node.type, "length", None)
        allowed = f" (allowed length {length})" if length is not None else ""
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        return f"invalid {node.type} value {shown}: {exc.message or exc.tag}{allowed}"
    return f"invalid value: {exc.message or exc.tag}"


def _must(exc: ValidationError) -> str:
    name = getattr(exc.instance, "name", "")
    return _MUST_RULES.get(name, f"must constraint violated ({exc.message or exc.tag})")


def _schema_rule(exc: ValidationError) -> str:
    if exc.tag == "missing-data":
        return _missing(exc)
    return f"schema violation: {exc.tag}: {exc.message or ''}".rstrip(": ")


# yangson error class -> how to word the rule it reports.
_RULES: Mapping[type[ValidationError], Callable[[ValidationError], str]] = {
    YangsonSchemaError: _schema_rule,
    YangTypeError: _bad_value,
    SemanticError: _must,
}

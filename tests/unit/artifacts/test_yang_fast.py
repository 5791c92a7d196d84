"""The compiled fast check of voucher bodies agrees with yangson and never accepts more."""

from __future__ import annotations

import base64
import itertools
import json
import random
import shutil
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from yangson import DataModel
from yangson.schemanode import InternalNode, SchemaNode

from tests.unit.artifacts.test_yang_modules import _validate_together
from zerotouch_plugin.artifacts import yang
from zerotouch_plugin.artifacts._yang_fast import BodyCheck
from zerotouch_plugin.artifacts.voucher import Assertion, Voucher, VoucherRequest, new_nonce
from zerotouch_plugin.artifacts.yang import (
    MEMBER_BY_KIND,
    ArtifactKind,
    build_validation_model,
    pyang_module_dirs,
    validate_artifact,
    yang_dir,
)
from zerotouch_plugin.errors import SchemaError

KINDS: tuple[ArtifactKind, ...] = ("voucher", "voucher-request")
VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "data" / "examples"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DER = b"\x30\x82\x01\x00" + bytes(256)
MODULE = "zerotouch-voucher-validation"
VR = MEMBER_BY_KIND["voucher-request"]


def _model() -> DataModel:
    return yang._data_model()


def _checks(model: DataModel) -> dict[ArtifactKind, BodyCheck]:
    return dict(yang._FAST_CHECKS[model])


def _vector_bodies() -> list[dict[str, Any]]:
    """The body of every voucher / voucher-request JSON among the repository's vectors."""
    bodies = []
    for path in sorted(VECTORS.rglob("*.json")):
        try:
            obj = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(obj, dict) and len(obj) == 1:
            inner = next(iter(obj.values()))
            if next(iter(obj)) in MEMBER_BY_KIND.values() and isinstance(inner, dict):
                bodies.append(inner)
    assert len(bodies) >= 80, len(bodies)
    return bodies


def _project_bodies() -> list[dict[str, Any]]:
    """A voucher and a voucher-request as the roles make them."""
    common: dict[str, Any] = {
        "created_on": NOW,
        "assertion": Assertion.PROXIMITY,
        "serial_number": "SN-1",
        "nonce": new_nonce(b"0123456789abcdef"),
    }
    voucher = Voucher(**common, pinned_domain_cert=DER)
    request = VoucherRequest(**common, proximity_registrar_cert=DER)
    return [
        next(iter(voucher.to_dict().values())),
        next(iter(request.to_dict().values())),
    ]


def _b64(size: int) -> str:
    return base64.b64encode(bytes(range(size % 256)) * (size // 256) + bytes(size % 256)).decode()


# Values tried in every leaf: wrong JSON types, strings that look like other types, bad enums,
# dates, base64 and lengths around the nonce's 8..32 bytes.
VALUES: tuple[object, ...] = (
    None,
    True,
    False,
    0,
    1,
    1.5,
    [],
    ["x"],
    {},
    {"a": 1},
    "",
    "true",
    "1",
    "x" * 5000,
    "verified",
    "logged",
    "proximity",
    "bogus",
    "Verified",
    "2026-11-26T12:00:00Z",
    "2026-11-26T12:00:00.123+02:00",
    "2026-13-01T00:00:00Z",
    "2026-11-26 12:00:00",
    "2026-11-26T12:00:00",
    "not base64!",
    "AAAA",
    "AAA",
    "AAAAAAAAAAA=",
    "-_XE9zK9q8Ll1qylMtLKeg",
    _b64(7),
    _b64(8),
    _b64(32),
    _b64(33),
    _b64(2000),
    "ÿÿÿÿ",
    "S\x00N",
)

EXTRA_MEMBERS: tuple[tuple[str, object], ...] = (
    ("extensions", {}),
    ("XMLName", "x"),
    ("serial", "S"),
    ("ietf-voucher:nonce", _b64(16)),
    ("ietf-voucher-request:serial-number", "S"),
    (f"{MODULE}:serial-number", "SN-1"),
    (f"{MODULE}:nonce", _b64(16)),
    (f"{MODULE}:bogus", 1),
    ("@", {}),
    ("@nonce", {}),
    ("voucher", {"serial-number": "S"}),
    ("nonce", {"value": _b64(16)}),
    ("serial-number", ["S"]),
)


def _undecided(body: dict[str, Any]) -> bool:
    """Members the fast check leaves to yangson by design: qualified names, metadata."""
    return any(":" in name or name.startswith("@") for name in body)


def _yangson_outcome(body: dict[str, Any], kind: ArtifactKind, model: DataModel) -> str:
    try:
        yang._validate_with_yangson(body, kind, model)
    except SchemaError as exc:
        return f"{exc.path}: {exc.message}"
    except Exception as exc:  # b64decode's ValueError, metadata's TypeError: kept as before
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def _outcome(body: dict[str, Any], kind: ArtifactKind, model: DataModel) -> str:
    try:
        validate_artifact({MEMBER_BY_KIND[kind]: body}, kind, model=model)
    except SchemaError as exc:
        return f"{exc.path}: {exc.message}"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def _mutations(body: dict[str, Any], leaves: list[str]) -> Iterator[dict[str, Any]]:
    """Each leaf set to each value, each member removed, extra members, the must cases."""
    yield body
    for leaf, value in itertools.product(leaves, VALUES):
        yield {**body, leaf: value}
    for name in body:
        yield {k: v for k, v in body.items() if k != name}
    for name, value in EXTRA_MEMBERS:
        yield {**body, name: value}
    without = {k: v for k, v in body.items() if k not in ("nonce", "expires-on")}
    yield {**without, "nonce": _b64(16), "expires-on": "2027-01-01T00:00:00Z"}
    yield {**without, "last-renewal-date": "2027-01-01T00:00:00Z"}
    yield {**without, "expires-on": "2027-01-01T00:00:00Z", "last-renewal-date": "2028-01-01Z"}
    yield {
        **without,
        "expires-on": "2027-01-01T00:00:00Z",
        "last-renewal-date": "2028-01-01T00:00:00Z",
    }
    yield {}


def _random_mutations(bodies: list[dict[str, Any]], leaves: list[str]) -> Iterator[dict[str, Any]]:
    """Two to four changes at once on random bodies (seeded: the same cases every run)."""
    rng = random.Random(17)
    names = leaves + [name for name, _ in EXTRA_MEMBERS]
    for _ in range(1500):
        body = dict(rng.choice(bodies))
        for _ in range(rng.randint(2, 4)):
            name = rng.choice(names)
            if rng.random() < 0.25:
                body.pop(name, None)
            else:
                body[name] = rng.choice(VALUES)
        yield body


def _assert_agree(
    body: dict[str, Any], kind: ArtifactKind, model: DataModel, counts: dict[str, int]
) -> None:
    fast = _checks(model)[kind].accepts(body)
    reference = _yangson_outcome(body, kind, model)
    assert _outcome(body, kind, model) == reference, (kind, body)
    if fast:
        assert reference == "ok", (kind, body, "fast check accepted what yangson refuses")
    elif not _undecided(body):
        assert reference != "ok", (kind, body, "fast check refused what yangson accepts")
    counts["fast-ok" if fast else "yangson-ok" if reference == "ok" else "refused"] += 1


def test_fast_check_agrees_with_yangson_on_vectors_and_mutations() -> None:
    model = _model()
    leaves = sorted(_checks(model)["voucher-request"].leaves)
    vectors = _vector_bodies()
    seeds = [*_project_bodies(), vectors[0], vectors[-1]]
    cases = [*vectors, *itertools.chain.from_iterable(_mutations(b, leaves) for b in seeds)]
    cases += list(_random_mutations([*_project_bodies(), *vectors], leaves))
    counts = {"fast-ok": 0, "yangson-ok": 0, "refused": 0}
    for body, kind in itertools.product(cases, KINDS):
        _assert_agree(body, kind, model, counts)
    assert counts["fast-ok"] >= 300 and counts["refused"] >= 3000, counts
    assert counts["yangson-ok"] >= 20, counts  # qualified names, left to yangson, still pass


def test_a_valid_body_does_not_reach_yangson(monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of the fast check: yangson's instance tree is built only for the rest."""
    reached: list[ArtifactKind] = []
    monkeypatch.setattr(yang, "_validate_with_yangson", lambda _b, kind, _m: reached.append(kind))
    voucher, request = _project_bodies()
    validate_artifact({MEMBER_BY_KIND["voucher"]: voucher}, "voucher")
    validate_artifact({MEMBER_BY_KIND["voucher-request"]: request}, "voucher-request")
    assert reached == []
    validate_artifact({MEMBER_BY_KIND["voucher"]: {**voucher, "nonce": "AAAA"}}, "voucher")
    assert reached == ["voucher"]


# --- the compiled rules are the schema's: a new must or when cannot be silently ignored -----


def _descendants(node: SchemaNode) -> Iterator[SchemaNode]:
    yield node
    for child in getattr(node, "children", ()):
        yield from _descendants(child)


def _schema_rules(model: DataModel, kind: ArtifactKind) -> set[tuple[str, str]]:
    """Every must and when from the artifact's holder container down, as yangson reads them."""
    module, name = yang._HOLDER_BY_KIND[kind].split(":")
    holder = model.schema.get_data_child(name, module)
    rules = set()
    for node in _descendants(holder):
        rules |= {(node.name, str(m.expression)) for m in node.must}
        if node.when is not None:
            rules.add((node.name, f"when {node.when}"))
    return rules


def _compiled_rules(check: BodyCheck) -> set[tuple[str, str]]:
    return {(name, r.expression) for name, leaf in check.leaves.items() for r in leaf.rules}


def _schema_leaves(model: DataModel, kind: ArtifactKind) -> set[str]:
    module, name = yang._HOLDER_BY_KIND[kind].split(":")
    body = model.schema.get_data_child(name, module).get_data_child("voucher", module)
    return {child.iname() for child in body.children}


def _assert_rules_compiled(model: DataModel) -> None:
    """Both bodies compiled, every member a compiled leaf, every must and when compiled."""
    checks = _checks(model)
    assert set(checks) == set(KINDS)
    for kind in KINDS:
        assert set(checks[kind].leaves) == _schema_leaves(model, kind), kind
        assert _compiled_rules(checks[kind]) == _schema_rules(model, kind), kind


def test_every_must_and_when_of_the_schema_is_compiled() -> None:
    model = _model()
    _assert_rules_compiled(model)
    must_leaves = {leaf for kind in KINDS for leaf, _ in _schema_rules(model, kind)}
    assert must_leaves == set(yang._MUST_RULES)  # each has its error message too


def _model_with(tmp_path: Path, old: str, new: str) -> DataModel:
    """The validation model with ``old`` replaced by ``new`` in ietf-voucher, or in the
    validation module when ``old`` is the holder container."""
    for module in yang_dir().glob("*.yang"):
        shutil.copy(module, tmp_path)
    changed = "zerotouch-voucher-validation" if "-artifact" in old else "ietf-voucher"
    target = next(tmp_path.glob(f"{changed}@*.yang"))
    text = target.read_text()
    assert old in text
    target.write_text(text.replace(old, new, 1))
    return build_validation_model([tmp_path, *pyang_module_dirs()])


NEW_RULES = (
    pytest.param(
        "leaf serial-number {\n        type string;",
        'leaf serial-number {\n        type string;\n        must "string-length(.) > 2";',
        {"serial-number": "SN"},
        True,
        id="must",
    ),
    pytest.param(
        "leaf idevid-issuer {\n        type binary;",
        "leaf idevid-issuer {\n        type binary;\n        when \"../assertion = 'verified'\";",
        {"idevid-issuer": _b64(22)},
        True,
        id="when",
    ),
    pytest.param(
        "container voucher {",
        "container voucher {\n      must \"serial-number != 'SN-1'\";",
        {},
        True,
        id="container-must",
    ),
    pytest.param(
        "leaf idevid-issuer {\n        type binary;",
        "leaf idevid-issuer {\n        type binary;\n        status obsolete;",
        {"idevid-issuer": _b64(22)},
        True,
        id="obsolete",
    ),
    pytest.param(
        "leaf idevid-issuer {",
        "choice pick {\n        mandatory true;\n        leaf a { type string; }\n      }\n"
        "      leaf idevid-issuer {",
        {},
        False,  # yangson accepts the body without the mandatory choice: still its verdict
        id="choice",
    ),
    pytest.param(
        "container voucher-artifact {",
        "leaf required {\n    type string;\n    mandatory true;\n    config false;\n  }\n"
        "  container voucher-artifact {",
        {},
        True,
        id="mandatory-top-level-leaf",
    ),
)


@pytest.mark.parametrize(("old", "new", "change", "refused"), NEW_RULES)
def test_a_new_rule_or_node_in_the_yang_fails_the_guard_and_is_left_to_yangson(
    tmp_path: Path, old: str, new: str, change: dict[str, Any], refused: bool
) -> None:
    model = _model_with(tmp_path, old, new)
    with pytest.raises(AssertionError):
        _assert_rules_compiled(model)
    body = {**_project_bodies()[0], **change}
    check = _checks(model).get("voucher")
    assert check is None or not check.accepts(body)
    assert _outcome(body, "voucher", model) == _yangson_outcome(body, "voucher", model)
    assert (_outcome(body, "voucher", model) != "ok") is refused


def test_bodies_left_to_yangson_validate_in_many_threads_on_a_new_model() -> None:
    """A qualified member name goes to yangson, so a fresh model's first validations still
    run through its instance tree in parallel (the MASA's thread pool answered 500 once): its
    schema patterns are all built before it is shared."""
    request = _project_bodies()[1]
    obj = {VR: {f"{MODULE}:{k}": v for k, v in request.items()}}
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(5):
            model = build_validation_model([yang_dir(), *pyang_module_dirs()])
            internal = [n for n in _descendants(model.schema) if isinstance(n, InternalNode)]
            assert all(n.schema_pattern is not None for n in internal)
            assert not _checks(model)["voucher-request"].accepts(obj[VR])
            assert _validate_together(model, obj, 8) == []
    finally:
        sys.setswitchinterval(interval)

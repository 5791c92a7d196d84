"""The YANG modules in yang/: IETF ones match the official schema tree, all pass pyang."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from yangson import DataModel

from zerotouch_plugin.artifacts.yang import (
    ArtifactKind,
    build_validation_model,
    pyang_module_dirs,
    validate_artifact,
    yang_dir,
)
from zerotouch_plugin.errors import SchemaError

PYANG = [sys.executable, "-m", "pyang"]
# Print yang-data structures, sx:structures and groupings too: the voucher modules hold no
# datastore nodes, so a plain tree would compare two empty outputs.
TREE = ["-f", "tree", "--tree-print-yang-data", "--tree-print-structures", "--tree-print-groupings"]
MODULES = sorted(yang_dir().glob("*.yang"))
IETF_MODULES = [m for m in MODULES if m.name.startswith(("ietf-", "iana-"))]


# The official copies, kept with the other public vectors (tests/vectors/data/PROVENANCE.md).
OFFICIAL_YANG = (
    Path(__file__).resolve().parents[2]
    / "vectors"
    / "data"
    / "examples"
    / "YangModels__yang"
    / "standard"
    / "ietf"
    / "RFC"
)


def official_module(file_name: str) -> Path:
    """The official copy of ``name@revision.yang``; every IETF module shipped has one."""
    path = OFFICIAL_YANG / file_name
    assert path.is_file(), f"no official copy of {file_name} in {OFFICIAL_YANG}"
    return path


def _search_path(*first: Path) -> list[str]:
    dirs = [*first, *pyang_module_dirs()]
    return ["-p", ":".join(str(d) for d in dirs)]


def _pyang(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PYANG, *args], capture_output=True, text=True, timeout=120)


def test_project_ships_the_voucher_modules() -> None:
    names = {m.name for m in MODULES}
    assert {
        "ietf-voucher@2018-05-09.yang",
        "ietf-voucher-request@2021-05-20.yang",
        "zerotouch-voucher-validation@2026-11-26.yang",
    } <= names


@pytest.mark.parametrize("module", IETF_MODULES, ids=lambda p: p.name)
def test_ietf_module_has_the_official_schema_tree(module: Path) -> None:
    official = official_module(module.name)
    ours = _pyang(*TREE, *_search_path(yang_dir()), str(module))
    theirs = _pyang(*TREE, *_search_path(OFFICIAL_YANG), str(official))
    assert ours.returncode == 0, ours.stderr
    assert theirs.returncode == 0, theirs.stderr
    assert ours.stdout.strip(), f"empty tree for {module.name}"
    assert ours.stdout == theirs.stdout, f"schema tree differs from {official}"


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_module_passes_pyang_lint(module: Path) -> None:
    mode = "--ietf" if module in IETF_MODULES else "--strict"
    result = _pyang(mode, *_search_path(yang_dir()), str(module))
    assert result.returncode == 0, result.stderr
    assert not re.search(r"error|warning", result.stderr, re.IGNORECASE), result.stderr


def test_file_name_matches_module_revision() -> None:
    for module in MODULES:
        text = module.read_text()
        name = re.search(r"^(?:module|submodule)\s+([\w.-]+)", text, re.MULTILINE)
        revision = re.search(r"^\s*revision\s+\"?(\d{4}-\d{2}-\d{2})", text, re.MULTILINE)
        assert name and revision, module.name
        assert module.name == f"{name.group(1)}@{revision.group(1)}.yang"


# --- beyond the tree: same constraints (enums, lengths, musts, mandatory) as the RFC copies --

_PINNED = "MIIB"  # any base64
_VOUCHER_CASES: list[dict[str, object]] = (
    [
        {"created-on": "2026-01-01T00:00:00Z", "assertion": a, "serial-number": "S"}
        | {"pinned-domain-cert": _PINNED}
        for a in ("verified", "logged", "proximity", "trusted", "")
    ]
    + [
        {
            "created-on": "2026-01-01T00:00:00Z",
            "assertion": "logged",
            "serial-number": "S",
            "pinned-domain-cert": _PINNED,
            **extra,
        }
        for extra in ({"nonce": base64.b64encode(bytes(n)).decode()} for n in (7, 8, 32, 33))
    ]
    + [
        {"assertion": "logged", "serial-number": "S", "pinned-domain-cert": _PINNED},
        {
            "created-on": "2026-01-01T00:00:00Z",
            "assertion": "logged",
            "pinned-domain-cert": _PINNED,
        },
        {"created-on": "2026-01-01T00:00:00Z", "assertion": "logged", "serial-number": "S"},
        {
            "created-on": "2026-01-01T00:00:00Z",
            "assertion": "logged",
            "serial-number": "S",
            "pinned-domain-cert": _PINNED,
            "expires-on": "2027-01-01T00:00:00Z",
            "nonce": base64.b64encode(bytes(16)).decode(),
        },
        {
            "created-on": "2026-01-01T00:00:00Z",
            "assertion": "logged",
            "serial-number": "S",
            "pinned-domain-cert": _PINNED,
            "last-renewal-date": "2027-01-01T00:00:00Z",
        },
        {
            "created-on": "2026-01-01T00:00:00Z",
            "assertion": "logged",
            "serial-number": "S",
            "pinned-domain-cert": _PINNED,
            "expires-on": "2027-01-01T00:00:00Z",
            "last-renewal-date": "2027-01-01T00:00:00Z",
            "domain-cert-revocation-checks": True,
            "idevid-issuer": _PINNED,
        },
        {"created-on": "x", "assertion": "logged", "serial-number": "S", "pinned-domain-cert": "!"},
    ]
)
_REQUEST_CASES: list[dict[str, object]] = [
    {"serial-number": "S"},
    {},
    {"serial-number": "S", "assertion": "bogus"},
    {"serial-number": "S", "prior-signed-voucher-request": _PINNED},
    {"serial-number": "S", "proximity-registrar-cert": _PINNED, "nonce": "AAAAAAAAAAA="},
    {"serial-number": "S", "nonce": "AAAA"},
    {"serial-number": "S", "expires-on": "2027-01-01T00:00:00Z", "nonce": "AAAAAAAAAAA="},
    {"serial-number": "S", "last-renewal-date": "2027-01-01T00:00:00Z"},
    {"serial-number": "S", "pinned-domain-cert": _PINNED, "created-on": "2026-01-01T00:00:00Z"},
]


def _outcome(obj: dict[str, object], kind: ArtifactKind, model: DataModel) -> str:
    try:
        validate_artifact(obj, kind, model=model)
    except SchemaError as exc:
        return f"{exc.path}: {exc.message}"
    return "ok"


def _without_descriptions(node: object) -> object:
    if isinstance(node, dict):
        return {k: _without_descriptions(v) for k, v in node.items() if k != "description"}
    return node


def test_validation_matches_the_official_modules(tmp_path: Path) -> None:
    """The validation model built on the official ietf-voucher/-request copies behaves as
    the one built on the project's."""
    validation = next(yang_dir().glob("zerotouch-voucher-validation@*.yang"))
    shutil.copy(validation, tmp_path)
    sources = []
    for name in ("ietf-voucher@2018-05-09.yang", "ietf-voucher-request@2021-05-20.yang"):
        official = official_module(name)
        shutil.copy(official, tmp_path / name)
        sources.append(str(official))
    ours = build_validation_model([yang_dir(), *pyang_module_dirs()])
    official_model = build_validation_model([tmp_path, *pyang_module_dirs()])
    assert _without_descriptions(json.loads(ours.schema_digest())) == _without_descriptions(
        json.loads(official_model.schema_digest())
    ), sources
    cases = [({"ietf-voucher:voucher": c}, "voucher") for c in _VOUCHER_CASES]
    cases += [({"ietf-voucher-request:voucher": c}, "voucher-request") for c in _REQUEST_CASES]
    outcomes = {"ok": 0, "error": 0}
    for obj, kind in cases:
        mine = _outcome(obj, kind, ours)  # type: ignore[arg-type]
        assert mine == _outcome(obj, kind, official_model), (obj, sources)  # type: ignore[arg-type]
        outcomes["ok" if mine == "ok" else "error"] += 1
    assert outcomes["ok"] >= 6 and outcomes["error"] >= 10, outcomes


def _validate_together(model: DataModel, obj: dict[str, object], threads: int) -> list[str]:
    """Validate ``obj`` in ``threads`` threads released at once; the failures seen."""
    start = threading.Barrier(threads)
    failures: list[str] = []

    def validate() -> None:
        start.wait()
        try:
            validate_artifact(obj, "voucher-request", model=model)
        except Exception as exc:  # any failure is the finding
            failures.append(repr(exc))

    workers = [threading.Thread(target=validate) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return failures


def test_a_new_model_validates_in_many_threads_at_once() -> None:
    """The MASA validates in a thread pool, so a fresh model's first validations run in
    parallel (they answered 500 once). A tiny GIL switch interval makes threads interleave
    inside yangson."""
    request: dict[str, object] = {
        "ietf-voucher-request:voucher": {
            "serial-number": "S",
            "created-on": "2026-01-01T00:00:00Z",
            "nonce": base64.b64encode(bytes(16)).decode(),
        }
    }
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(5):
            model = build_validation_model([yang_dir(), *pyang_module_dirs()])
            assert _validate_together(model, request, 8) == []
    finally:
        sys.setswitchinterval(interval)

"""The project's own YANG modules: ``pyang --strict`` clean, and ``zerotouch-bootstrap`` usable
by yangson (the validator behind the device datastores)."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
from yangson import DataModel
from yangson.enumerations import ContentType
from yangson.exceptions import RawTypeError, SemanticError, YangTypeError
from yangson.exceptions import SchemaError as YangsonSchemaError

YANG_DIR = Path(__file__).resolve().parents[3] / "yang"
PYANG_MODULES = Path(sysconfig.get_path("data")) / "share" / "yang" / "modules"
SEARCH = (YANG_DIR, PYANG_MODULES / "ietf", PYANG_MODULES / "iana")
PYANG = Path(sys.executable).parent / "pyang"
OWN_MODULES = sorted(
    p for p in YANG_DIR.glob("*.yang") if not p.name.startswith(("ietf-", "iana-"))
)
BOOTSTRAP_NS = "urn:zerotouch:params:xml:ns:yang:zerotouch-bootstrap"
FINGERPRINT = "sha256:" + "ab" * 32


def _search_path() -> str:
    return ":".join(str(d) for d in SEARCH)


def test_own_modules_present() -> None:
    names = {p.name for p in OWN_MODULES}
    assert "zerotouch-bootstrap@2026-12-05.yang" in names


@pytest.mark.parametrize("module", OWN_MODULES, ids=lambda p: p.name)
def test_pyang_strict(module: Path) -> None:
    result = subprocess.run(
        [str(PYANG), "--strict", "-p", _search_path(), str(module)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


@pytest.fixture(scope="module")
def model() -> DataModel:
    library = {
        "ietf-yang-library:modules-state": {
            "module-set-id": "bootstrap-test",
            "module": [
                {
                    "name": "ietf-yang-types",
                    "revision": "2013-07-15",
                    "namespace": "urn:ietf:params:xml:ns:yang:ietf-yang-types",
                    "conformance-type": "import",
                },
                {
                    "name": "ietf-inet-types",
                    "revision": "2013-07-15",
                    "namespace": "urn:ietf:params:xml:ns:yang:ietf-inet-types",
                    "conformance-type": "import",
                },
                {
                    "name": "zerotouch-bootstrap",
                    "revision": "2026-12-05",
                    "namespace": BOOTSTRAP_NS,
                    "conformance-type": "implement",
                },
            ],
        }
    }
    return DataModel(json.dumps(library), [str(d) for d in SEARCH])


def _state() -> dict[str, Any]:
    cert = {
        "subject": "CN=device-1",
        "issuer": "CN=Domain CA",
        "serial": "1f2e",
        "not-before": "2026-11-26T10:00:00Z",
        "not-after": "2027-11-26T10:00:00Z",
        "fingerprint": FINGERPRINT,
    }
    return {
        "zerotouch-bootstrap:bootstrap": {
            "phase": "enrolled",
            "phase-since": "2026-11-26T10:00:05Z",
            "started": "2026-11-26T10:00:00Z",
            "completed": "2026-11-26T10:00:05Z",
            "attempts": 2,
            "registrar": {
                "used": "https://127.0.0.1:8443",
                "tried": [
                    {
                        "uri": "https://127.0.0.1:8443",
                        "source": "configured",
                        "last-attempt": "2026-11-26T10:00:01Z",
                        "outcome": "ok",
                    }
                ],
            },
            "voucher": {
                "serial-number": "JADA123456789",
                "assertion": "logged",
                "created-on": "2026-11-26T10:00:02Z",
                "nonce": "62a2e7693d82fcda2624de58fb6722e5",
                "nonceless": False,
                "pinned-domain-cert-fingerprint": FINGERPRINT,
            },
            "ldevid": cert,
            "trust-anchor": [{**cert, "subject": "CN=Domain CA", "source": "est-cacerts"}],
            "last-error": {
                "time": "2026-11-26T10:00:01Z",
                "reason": "upstream-unavailable",
                "message": "MASA did not answer",
            },
            "event-history-size": 64,
            "event": [
                {
                    "sequence": 1,
                    "time": "2026-11-26T10:00:00Z",
                    "event": "start",
                    "phase": "discovering",
                },
                {
                    "sequence": 2,
                    "time": "2026-11-26T10:00:05Z",
                    "event": "enrolled",
                    "phase": "enrolled",
                    "detail": "LDevID installed",
                },
            ],
        }
    }


def _validate(model: DataModel, raw: dict[str, Any]) -> None:
    model.from_raw(raw).validate(ctype=ContentType.all)


def test_bootstrap_state_validates(model: DataModel) -> None:
    _validate(model, _state())


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("phase", "half-done"),
        ("phase-since", "yesterday"),
        ("attempts", -1),
    ],
)
def test_bad_leaf_value_rejected(model: DataModel, member: str, value: object) -> None:
    raw = _state()
    raw["zerotouch-bootstrap:bootstrap"][member] = value
    with pytest.raises((YangTypeError, YangsonSchemaError, ValueError)):
        _validate(model, raw)


def test_bad_fingerprint_rejected(model: DataModel) -> None:
    raw = _state()
    raw["zerotouch-bootstrap:bootstrap"]["ldevid"]["fingerprint"] = "sha1:abcd"
    with pytest.raises(YangTypeError):
        _validate(model, raw)


def test_event_needs_time_and_name(model: DataModel) -> None:
    raw = _state()
    del raw["zerotouch-bootstrap:bootstrap"]["event"][0]["time"]
    with pytest.raises(YangsonSchemaError, match="time"):
        _validate(model, raw)


def test_bootstrap_is_state_not_config(model: DataModel) -> None:
    with pytest.raises((YangsonSchemaError, SemanticError)):
        model.from_raw(_state()).validate(ctype=ContentType.config)


def test_rpc_and_notification_in_schema(model: DataModel) -> None:
    rpc = model.get_schema_node("/zerotouch-bootstrap:restart-bootstrap")
    assert rpc is not None
    reset = model.get_schema_node("/zerotouch-bootstrap:restart-bootstrap/input/factory-reset")
    assert reset is not None
    assert reset.default is False
    notif = model.get_schema_node("/zerotouch-bootstrap:bootstrap-phase-change")
    assert notif is not None


def test_voucher_nonceless_is_a_boolean(model: DataModel) -> None:
    raw = _state()
    raw["zerotouch-bootstrap:bootstrap"]["voucher"]["nonceless"] = True
    _validate(model, raw)
    raw["zerotouch-bootstrap:bootstrap"]["voucher"]["nonceless"] = "yes"
    with pytest.raises(RawTypeError, match="expected boolean"):
        _validate(model, raw)


def _discovery() -> dict[str, Any]:
    return {
        "methods": ["grasp", "mdns", "dns-sd", "vendor"],
        "cycle": 2,
        "searching": "mdns",
        "candidate": [
            {
                "address": "fe80::1%eth0",
                "port": 443,
                "interface": "eth0",
                "method": "grasp",
                "role": "proxy",
                "uri": "https://[fe80::1%25eth0]:443",
                "source": "GRASP AN_Proxy from fe80::1%eth0",
                "state": "failed",
                "failures": 1,
                "set-aside-until": "2026-11-26T10:00:09Z",
                "last-error": "upstream-unavailable: the registrar does not answer",
            },
            {"address": "registrar.example", "port": 8443, "method": "dns-sd"},
        ],
        "enrolled-by": {"method": "grasp", "role": "proxy", "address": "fe80::1%eth0"},
    }


def test_discovery_state_validates(model: DataModel) -> None:
    raw = _state()
    raw["zerotouch-bootstrap:bootstrap"]["discovery"] = _discovery()
    raw["zerotouch-bootstrap:bootstrap"]["registrar"]["tried"][0]["source"] = "dns-sd"
    _validate(model, raw)


@pytest.mark.parametrize(
    ("member", "value"),
    [("role", "relay"), ("method", "bonjour"), ("port", 70000), ("state", "waiting")],
)
def test_bad_candidate_rejected(model: DataModel, member: str, value: object) -> None:
    raw = _state()
    discovery = _discovery()
    discovery["candidate"][0][member] = value
    raw["zerotouch-bootstrap:bootstrap"]["discovery"] = discovery
    with pytest.raises((YangTypeError, YangsonSchemaError, ValueError)):
        _validate(model, raw)

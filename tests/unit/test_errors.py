from __future__ import annotations

import inspect

import pytest

from zerotouch_plugin import errors

NETCONF_TAGS = {
    "in-use",
    "invalid-value",
    "too-big",
    "missing-attribute",
    "bad-attribute",
    "unknown-attribute",
    "missing-element",
    "bad-element",
    "unknown-element",
    "unknown-namespace",
    "access-denied",
    "lock-denied",
    "resource-denied",
    "rollback-failed",
    "data-exists",
    "data-missing",
    "operation-not-supported",
    "operation-failed",
    "partial-operation",
    "malformed-message",
}

ALL = [
    obj
    for _, obj in inspect.getmembers(errors, inspect.isclass)
    if issubclass(obj, errors.ZerotouchError)
]


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_error_carries_valid_wire_codes(cls: type[errors.ZerotouchError]) -> None:
    assert cls.netconf_tag in NETCONF_TAGS
    assert 400 <= cls.http_status <= 599
    assert cls.reason and " " not in cls.reason


def test_every_leaf_error_is_local_or_remote() -> None:
    for cls in ALL:
        if cls in (errors.ZerotouchError,):
            continue
        assert issubclass(cls, (errors.LocalError, errors.RemoteError)), cls


def test_one_line_names_reason_and_path() -> None:
    err = errors.SchemaError("bad enum value\nnot allowed", path="/ietf-voucher:voucher/assertion")
    line = err.one_line()
    assert line.startswith("schema-error: bad enum value")
    assert "\n" not in line
    assert "/ietf-voucher:voucher/assertion" in line


def test_no_builtin_names_shadowed() -> None:
    import builtins

    assert not set(errors.__all__) & set(dir(builtins))

"""The collection's decisions as pure functions (module_utils/logic.py) and the inventory
plugin's host variables and groups, imported from the checkout as ansible-core would."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

ALLOW = {"decision": "allow", "manufacturer": None, "since": "2026-12-01T00:00:00Z"}
DENY_ACME = {"decision": "deny", "manufacturer": "CN=Acme", "since": "2026-12-01T00:00:00Z"}

POLICY_CASES = [
    # entries, wanted state, manufacturer, request expected
    ([], "allowed", None, "allow"),
    ([ALLOW], "allowed", None, None),
    ([ALLOW], "denied", None, "deny"),
    ([ALLOW], "absent", None, "remove"),
    ([], "absent", None, None),
    ([ALLOW, DENY_ACME], "denied", "CN=Acme", None),
    ([ALLOW, DENY_ACME], "allowed", "CN=Acme", "allow"),
    ([DENY_ACME], "absent", None, None),
]


@pytest.mark.parametrize(("entries", "state", "manufacturer", "action"), POLICY_CASES)
def test_policy_action(
    plugins: dict[str, ModuleType],
    entries: list[dict[str, Any]],
    state: str,
    manufacturer: str | None,
    action: str | None,
) -> None:
    logic = plugins["logic"]
    assert logic.policy_action(entries, state, manufacturer) == action
    after = logic.policy_after(entries, action, manufacturer)
    assert logic.policy_action(after, state, manufacturer) is None  # one request suffices


def record(state: str, **extra: Any) -> dict[str, Any]:
    return {"state": state, "last_error": None, "handoff": None, **extra}


HANDOFF_APPLIED = {"state": "applied", "at": "2026-12-05T07:00:01Z", "next_attempt_at": None}
HANDOFF_FAILED = {"state": "failed", "error": "connection refused", "next_attempt_at": None}
HANDOFF_RETRY = {**HANDOFF_FAILED, "next_attempt_at": "2026-12-05T07:00:09Z"}

VERDICT_CASES = [
    # record, handoff wanted, since, policy, verdict, words in the reason
    (None, False, None, [ALLOW], "wait", "never sent a voucher-request"),
    (record("voucher-requested"), False, None, [ALLOW], "wait", "phase voucher-requested"),
    (record("enroll-confirmed"), False, None, [ALLOW], "done", "enroll-confirmed"),
    (record("enroll-confirmed"), True, None, [ALLOW], "wait", "hand-off None"),
    (record("enroll-confirmed", handoff=HANDOFF_APPLIED), True, None, [ALLOW], "done", "applied"),
    (record("enroll-confirmed", handoff=HANDOFF_RETRY), True, None, [ALLOW], "wait", "refused"),
    (record("enroll-confirmed", handoff=HANDOFF_FAILED), True, None, [ALLOW], "failed", "refused"),
    (record("refused", last_error="policy-refused: unknown"), False, None, [ALLOW], "wait",
     "policy-refused: unknown"),
    (record("refused", last_error="on the deny list"), False, None, [{"decision": "deny"}],
     "failed", "deny list"),
    (record("enroll-confirmed", enroll_status_at="2026-12-05T07:00:00Z"), False,
     "2026-12-05T07:00:00Z", [ALLOW], "wait", "no enrollment confirmed since"),
    (record("enroll-confirmed", enroll_status_at="2026-12-05T07:00:00.5Z"), False,
     "2026-12-05T07:00:00Z", [ALLOW], "done", "enroll-confirmed"),
]  # fmt: skip


@pytest.mark.parametrize(("rec", "handoff", "since", "policy", "verdict", "words"), VERDICT_CASES)
def test_enrollment_verdict(
    plugins: dict[str, ModuleType],
    rec: dict[str, Any] | None,
    handoff: bool,
    since: str | None,
    policy: list[dict[str, Any]],
    verdict: str,
    words: str,
) -> None:
    got, reason = plugins["logic"].enrollment_verdict(
        rec, handoff=handoff, since=since, policy=policy
    )
    assert (got, words in reason) == (verdict, True), reason


def test_handoff_verdict_ignores_the_previous_outcome(plugins: dict[str, ModuleType]) -> None:
    verdict = plugins["logic"].handoff_verdict
    old = {"handoff": {"state": "applied", "at": "2026-12-05T07:00:00Z"}}
    assert verdict(old, "2026-12-05T07:00:00Z")[0] == "wait"
    new = {"handoff": {"state": "failed", "at": "2026-12-05T07:00:02Z", "error": "timeout"}}
    assert verdict(new, "2026-12-05T07:00:00Z") == ("failed", "hand-off failed: timeout")
    assert verdict({"handoff": {"state": "pending", "at": "2026-12-05T07:00:03Z"}}, None)[0] == (
        "wait"
    )


def test_day0_documents_compare_as_data(plugins: dict[str, ModuleType]) -> None:
    document = plugins["logic"].day0_document
    assert document('{"a": {"b": 1, "c": [1, 2]}}', "json") == document(
        '{\n  "a": {"c": [1, 2], "b": 1}\n}', "json"
    )
    assert document('{"a": [1, 2]}', "json") != document('{"a": [2, 1]}', "json")
    one = '<system xmlns="urn:x"><contact>a</contact></system>'
    two = '<system xmlns="urn:x">\n  <contact>a</contact>\n</system>\n'
    assert document(one, "xml") == document(two, "xml")
    assert document(one, "xml") != document(one.replace(">a<", ">b<"), "xml")


def test_changed_members_and_diff(plugins: dict[str, ModuleType]) -> None:
    logic = plugins["logic"]
    before = {"m:a": {"x": 1}, "m:b": {"y": [1, 2]}}
    after = {"m:a": {"x": 1}, "m:b": {"y": [1, 2, 3]}, "m:c": {}}
    assert logic.changed_members(before, after) == ["m:b", "m:c"]
    assert logic.changed_members(after, after) == []
    diff = logic.config_diff(before, after, ["m:b", "m:c"])
    assert '"m:c": {}' in diff["after"] and '"m:c"' not in diff["before"]
    assert "3" in diff["after"] and "3" not in diff["before"]


def test_with_operation_marks_top_level_nodes(plugins: dict[str, ModuleType]) -> None:
    edit = {"m:box": {"leaf": 1}, "m:list": [{"name": "a"}], "m:leaf": 5}
    marked = plugins["logic"].with_operation(edit, "replace")
    op = {"ietf-netconf:operation": "replace"}
    assert marked == {
        "m:box": {"leaf": 1, "@": op},
        "m:list": [{"name": "a", "@": op}],
        "m:leaf": 5,
        "@m:leaf": op,
    }
    assert edit["m:box"] == {"leaf": 1}  # the task's own value is left alone


def test_registrar_times_compare_as_times(plugins: dict[str, ModuleType]) -> None:
    later = plugins["logic"].later
    assert later("2026-12-05T07:00:00.000001Z", "2026-12-05T07:00:00Z")
    assert not later("2026-12-05T07:00:00Z", "2026-12-05T07:00:00.000000Z")
    assert later("2026-12-05T07:00:00Z", None)
    assert not later(None, None) and not later("yesterday", None)


def test_inventory_host_vars_and_groups(plugins: dict[str, ModuleType]) -> None:
    inventory = plugins["inventory"]
    rec = {
        "serial": "SN-1",
        "state": "enroll-confirmed",
        "audit_level": "clean",
        "dns_name": "sn-1.devices.example",
        "ldevid_not_after": "2027-01-01T00:00:00Z",
        "handoff": {"state": "applied"},
        "management": {"host": "192.0.2.7", "netconf_tls_port": 6513, "restconf_port": None},
    }
    host = inventory.host_vars(rec)
    assert host["ansible_host"] == "192.0.2.7"
    assert host["zerotouch_netconf_tls_port"] == 6513
    assert "zerotouch_restconf_port" not in host  # not reported: no variable
    assert host["zerotouch_tls_server_name"] == "sn-1.devices.example"
    assert inventory.groups_of(rec) == ["phase_enroll_confirmed", "handoff_applied", "audit_clean"]
    bare = inventory.host_vars({"serial": "SN-2", "management": None})
    assert "ansible_host" not in bare
    assert inventory.groups_of({"serial": "SN-2"}) == ["phase_none", "handoff_none", "audit_none"]

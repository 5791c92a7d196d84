# Copyright: zerotouch contributors
# Apache License 2.0 (see the repository's LICENSE)
"""Decisions the modules take, as pure functions: whether a change is needed, what the diff
shows, and whether a device's registrar record means enrolled, still on its way, or stuck.

No I/O here, so that each decision is unit tested on its own.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

ENROLLED_STATE = "enroll-confirmed"
HANDOFF_FINAL = frozenset({"applied", "failed"})

POLICY_DECISIONS = {"allowed": "allow", "denied": "deny"}


def canonical(value: Any) -> str:
    """One text per JSON value: equal values, equal texts (object members sorted)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def pretty(value: Any) -> str:
    """The text the diff shows: indented JSON with sorted members, newline-terminated."""
    if value is None:
        return ""
    return json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def parse_time(text: Any) -> datetime | None:
    """An RFC 3339 time of the registrar (``...Z``), or None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def later(text: Any, than: Any) -> bool:
    """Whether registrar time ``text`` is after ``than`` (None: any time is later)."""
    when, before = parse_time(text), parse_time(than)
    if when is None:
        return False
    return before is None or when > before


def policy_action(
    entries: list[dict[str, Any]], state: str, manufacturer: str | None
) -> str | None:
    """The admin request (``allow``, ``deny``, ``remove``) that brings the policy of one
    serial and manufacturer (None: any manufacturer) to ``state``; None if it is there."""
    mine = [e for e in entries if e.get("manufacturer") == manufacturer]
    if state == "absent":
        return "remove" if mine else None
    decision = POLICY_DECISIONS[state]
    if mine and all(e.get("decision") == decision for e in mine):
        return None
    return decision


def policy_after(
    entries: list[dict[str, Any]], action: str | None, manufacturer: str | None
) -> list[dict[str, Any]]:
    """The policy entries once ``action`` is done (for the diff and check mode)."""
    others = [e for e in entries if e.get("manufacturer") != manufacturer]
    if action is None:
        return entries
    if action == "remove":
        return others
    return [*others, {"decision": action, "manufacturer": manufacturer}]


def policy_view(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries without their timestamps, in a stable order, as the diff shows them."""
    view = [{"decision": e.get("decision"), "manufacturer": e.get("manufacturer")} for e in entries]
    return sorted(view, key=canonical)


def day0_document(text: str | bytes, fmt: str) -> Any:
    """A day-0 document in the form compared for idempotence: JSON parsed, XML as its
    canonical text with whitespace between elements dropped."""
    if fmt == "json":
        return json.loads(text)
    from lxml import etree  # only XML documents need lxml

    parser = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)
    data = text.encode() if isinstance(text, str) else text
    root = etree.fromstring(data, parser)
    return etree.tostring(root, method="c14n").decode()


def media_format(media_type: str) -> str:
    """``json`` or ``xml`` for a day-0 media type the registrar answers with."""
    return "xml" if media_type.endswith("xml") else "json"


def enrollment_verdict(
    record: dict[str, Any] | None,
    *,
    handoff: bool,
    since: str | None = None,
    policy: list[dict[str, Any]] | None = None,
) -> tuple[str, str]:
    """(``done`` | ``wait`` | ``failed``, reason) for one device's registrar record.

    ``handoff``: enrolled is not enough, the day-0 hand-off must be applied too. ``since``:
    an enrollment confirmed at or before this registrar time does not count (after a
    factory reset the old enrollment is not the one awaited). A device keeps retrying after
    a refusal, so a failed phase is waited out, unless ``policy`` denies the serial (no
    retry can succeed) or a failed hand-off has no further attempt scheduled.
    """
    entries = policy or []
    if any(e.get("decision") == "deny" for e in entries) and not any(
        e.get("decision") == "allow" for e in entries
    ):
        error = (record or {}).get("last_error")
        phase = (record or {}).get("state") or "none"
        return "failed", f"the registrar's policy denies it (phase {phase}, last error: {error})"
    if record is None:
        return "wait", "the registrar has no record of it: it never sent a voucher-request"
    state = str(record.get("state"))
    error = record.get("last_error")
    reason = f"phase {state}" + (f", last error: {error}" if error else "")
    if since is not None and not later(record.get("enroll_status_at"), since):
        return "wait", f"no enrollment confirmed since {since} ({reason})"
    if state != ENROLLED_STATE:
        return "wait", reason
    if not handoff:
        return "done", reason
    hand = record.get("handoff") or {}
    hstate = hand.get("state")
    if hstate == "applied":
        return "done", f"{reason}, hand-off applied"
    detail = f"{reason}, hand-off {hstate}" + (
        f": {hand.get('error')}" if hand.get("error") else ""
    )
    if hstate == "failed" and not hand.get("next_attempt_at"):
        return "failed", detail
    return "wait", detail


def handoff_verdict(record: dict[str, Any] | None, after: str | None) -> tuple[str, str]:
    """(``done`` | ``wait`` | ``failed``, reason) of a hand-off pushed once the record's
    hand-off time was ``after``: only a final state recorded later counts (the previous
    outcome is not this push's)."""
    hand = (record or {}).get("handoff") or {}
    state = hand.get("state")
    if state not in HANDOFF_FINAL or (after is not None and not later(hand.get("at"), after)):
        return "wait", f"hand-off {state}"
    if state == "failed":
        return "failed", f"hand-off failed: {hand.get('error')}"
    return "done", "hand-off applied"


def changed_members(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Top-level members whose content differs between two RFC 7951 trees."""
    names = sorted(set(before) | set(after))
    return [n for n in names if canonical(before.get(n)) != canonical(after.get(n))]


def config_diff(
    before: dict[str, Any], after: dict[str, Any], members: list[str]
) -> dict[str, str]:
    """Ansible's diff of two configurations, limited to ``members`` (what was touched)."""
    return {
        "before": pretty({m: before[m] for m in members if m in before}),
        "after": pretty({m: after[m] for m in members if m in after}),
    }


def with_operation(edit: dict[str, Any], operation: str) -> dict[str, Any]:
    """``edit`` with the RFC 6241 ``operation`` on each top-level container and list entry
    (the RFC 7952 annotation form the device's edit engine reads)."""
    annotation = {"ietf-netconf:operation": operation}
    out: dict[str, Any] = {}
    for member, value in edit.items():
        if isinstance(value, dict):
            out[member] = {**value, "@": annotation}
        elif isinstance(value, list) and all(isinstance(v, dict) for v in value):
            out[member] = [{**v, "@": annotation} for v in value]
        else:
            out[member] = value
            out["@" + member] = annotation
    return out

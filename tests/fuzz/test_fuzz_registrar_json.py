"""The JSON bodies the registrar reads from others under fuzzing: a pledge's voucher_status and
enrollstatus telemetry (RFC 8995 §5.7, §5.9.4) gives a StatusReport or a 400; a MASA audit log
(RFC 8995 §5.8.1) gives a verdict or UpstreamInvalid (502 to our client), in budget."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.mutate import mutated_json
from tests.fuzz.oracle import handled
from zerotouch_plugin.errors import InvalidInput, SchemaError, UpstreamInvalid
from zerotouch_plugin.roles.registrar import (
    AuditLevel,
    AuditVerdict,
    StatusReport,
    evaluate_audit_log,
    parse_status_report,
)

OWN_ID = b"\x01" * 20
OTHER_ID = b"\x02" * 20
STATUS_SEEDS = (
    {
        "version": 1,
        "status": False,
        "reason": "Informative human readable message",
        "reason-context": {"additional": "JSON"},
    },
    {"version": 1, "status": True},
)
AUDIT_SEEDS = (
    {
        "version": "1",
        "events": [
            {
                "date": "2019-05-15T17:25:55.644-04:00",
                "domainID": base64.b64encode(OWN_ID).decode(),
                "nonce": "VOUFT-WwrEv0NuAQEHoV7Q",
                "assertion": "proximity",
                "truncated": "0",
            },
            {
                "date": "2017-05-15T17:25:55.644-04:00",
                "domainID": base64.urlsafe_b64encode(OTHER_ID).decode().rstrip("="),
                "nonce": None,
                "assertion": "logged",
                "truncated": 1,
            },
        ],
        "truncation": {"nonced duplicates": "0", "nonceless duplicates": 1, "arbitrary": "2"},
    },
    {"version": "1", "events": []},
)


@given(mutated_json(STATUS_SEEDS))
def test_status_reports_parse_or_refuse(data: bytes) -> None:
    result = handled(
        lambda: parse_status_report(data), len(data), allowed=(InvalidInput, SchemaError)
    )
    if isinstance(result, StatusReport):
        assert isinstance(result.status, bool)
        # The reason is stored in a PostgreSQL text column and logged: no NUL, valid UTF-8.
        assert result.reason is None or "\x00" not in result.reason.encode("utf-8").decode()


@given(mutated_json(AUDIT_SEEDS))
def test_audit_logs_judged_or_refused(data: bytes) -> None:
    result = handled(
        lambda: evaluate_audit_log(data, own_ids=[OWN_ID]), len(data), allowed=(UpstreamInvalid,)
    )
    if isinstance(result, AuditVerdict):
        assert result.level in AuditLevel
        if result.nonceless_other:
            assert result.level is AuditLevel.ALERT


@given(st.binary(max_size=1024))
def test_raw_bodies_parse_or_refuse(data: bytes) -> None:
    handled(lambda: parse_status_report(data), len(data), allowed=(InvalidInput, SchemaError))
    handled(
        lambda: evaluate_audit_log(data, own_ids=[OWN_ID]), len(data), allowed=(UpstreamInvalid,)
    )

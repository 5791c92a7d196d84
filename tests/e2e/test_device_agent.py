"""The pledge agent inside ``zerotouch device run``, with real processes on 127.0.0.1: MASA,
registrar and devices, read with ncclient over NETCONF/SSH (the explicitly configured
pre-enrollment access) and NETCONF/TLS, and with curl over RESTCONF."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from ncclient import manager
from ncclient.operations.rpc import RPCError

from tests.e2e.test_brski_flow import FakeRegistrar, Lab, make_lab, masa_voucher
from tests.support.device_process import DeviceProcess, start_device
from tests.support.ncclient_tls import tls_session
from tests.support.processes import run_cli
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.config import DEFAULT_DEVICE_DOMAIN, hash_password
from zerotouch_plugin.roles.pledge import PATH_VOUCHER_STATUS
from zerotouch_plugin.roles.registrar import device_dns_name
from zerotouch_plugin.services import certfiles

NS = "urn:zerotouch:params:xml:ns:yang:zerotouch-bootstrap"
STATE_FILTER = f'<bootstrap xmlns="{NS}"/>'
PASSWORD = hash_password("secret", salt=b"fixed-test-salt!", iterations=1000)


@contextmanager
def agent_lab(root: Path, registrar_settings: str = "") -> Iterator[Lab]:
    """MASA and registrar running (``registrar_settings`` added to registrar.toml), and an
    operator's client certificate of the domain in ``nms``."""
    lab = make_lab(root)
    with (lab.domain / "registrar.toml").open("a") as fh:
        fh.write(registrar_settings)
    try:
        lab.start_masa()
        lab.start_registrar()
        run_cli("registrar", "issue-client-cert", "--dir", lab.domain, "--name", "nms",
                "--out", lab.root / "nms")  # fmt: skip
        yield lab
    finally:
        lab.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with agent_lab(tmp_path_factory.mktemp("agent")) as lab:
        yield lab


def make_device(
    lab: Lab, *, allow: bool = True, rounds: int = 0, cli: bool = False
) -> tuple[str, Path]:
    """A device folder (from ``zerotouch vendor idevid`` with ``cli``) with a device.toml
    whose only pre-enrollment access is one NETCONF/SSH user, and quick retries."""
    serial, folder = lab.pledge(allow=allow, cli=cli)
    (folder / "device.toml").write_text(
        f'registrars = ["{lab.registrar_url}"]\n'
        "bootstrap_retry_delay = 0.3\nbootstrap_max_delay = 1.0\nbootstrap_timeout = 10.0\n"
        f"bootstrap_rounds = {rounds}\n"
        f'[[users]]\nname = "admin"\npassword = "{PASSWORD}"\n'
    )
    return serial, folder


LISTEN = {
    "netconf-ssh": "127.0.0.1:0",
    "netconf-tls": "127.0.0.1:0",
    "restconf": "127.0.0.1:0",
}


def run_device(folder: Path, *extra: str) -> DeviceProcess:
    return start_device(folder, LISTEN, extra=extra, wait=["netconf-ssh", "netconf-tls"])


def ssh(process: DeviceProcess) -> manager.Manager:
    return manager.connect(
        host="127.0.0.1", port=process.ports["netconf-ssh"], username="admin",
        password="secret", hostkey_verify=False, allow_agent=False, look_for_keys=False,
        timeout=15,
    )  # fmt: skip


def tls(
    process: DeviceProcess, cert: Path, key: Path, ca: Path
) -> AbstractContextManager[manager.Manager]:
    """NETCONF/TLS verified against the domain CA; the LDevID names the device by its serial
    (RFC 8995 §2.3.1), not by address, so no host name check. Ended by close-session and the
    device (tests/support/ncclient_tls.py: ncclient's own close races its reader thread)."""
    return tls_session(process.ports["netconf-tls"], cert=cert, key=key, ca=ca, timeout=15)


def state_of(m: manager.Manager) -> etree._Element:
    reply = m.get(filter=("subtree", STATE_FILTER))
    found = reply.data_ele.find(f"{{{NS}}}bootstrap")
    assert found is not None, reply.xml
    return found


def text(element: etree._Element, path: str) -> str | None:
    """Text at a ``/``-separated path of local names in the bootstrap namespace."""
    node = element.find("/".join(f"{{{NS}}}{step}" for step in path.split("/")))
    return None if node is None else node.text


def events(element: etree._Element) -> list[str]:
    return [str(text(e, "event")) for e in element.findall(f"{{{NS}}}event")]


def poll(
    process: DeviceProcess, check: Callable[[etree._Element], bool], timeout: float = 45
) -> etree._Element:
    """The bootstrap state over NETCONF/SSH, once ``check`` holds for it."""
    deadline = time.monotonic() + timeout
    with ssh(process) as m:
        while True:
            state = state_of(m)
            if check(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(etree.tostring(state, pretty_print=True).decode())
            time.sleep(0.2)


def restconf_state(process: DeviceProcess, nms: Path, serial: str) -> dict[str, Any]:
    """GET over RESTCONF with curl, the device named by the DNS name of its LDevID."""
    port = process.ports["restconf"]
    name = device_dns_name(serial, DEFAULT_DEVICE_DOMAIN)
    result = subprocess.run(
        ["curl", "-sS", "--fail", "--cacert", nms / "ca.pem", "--cert", nms / "cert.pem",
         "--key", nms / "key.pem", "-H", "Accept: application/yang-data+json",
         "--resolve", f"{name}:{port}:127.0.0.1",
         f"https://{name}:{port}/restconf/data/zerotouch-bootstrap:bootstrap"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    body: dict[str, Any] = json.loads(result.stdout)["zerotouch-bootstrap:bootstrap"]
    return body


def phase_changes(m: manager.Manager, *, until: str, timeout: float = 45) -> list[str]:
    """Phases of the bootstrap-phase-change notifications received, up to ``until``."""
    phases: list[str] = []
    deadline = time.monotonic() + timeout
    while until not in phases:
        remaining = deadline - time.monotonic()
        notification = m.take_notification(block=True, timeout=max(remaining, 0.1))
        assert notification is not None, f"no {until} notification; saw {phases}"
        root = etree.fromstring(notification.notification_xml.encode())
        change = root.find(f"{{{NS}}}bootstrap-phase-change")
        if change is not None:
            phases.append(str(text(change, "phase")))
    return phases


def refused(connect: Callable[[], AbstractContextManager[Any]]) -> bool:
    try:
        with connect():
            return False
    except Exception:  # ncclient wraps the TLS alert or the closed connection variously
        return True


# ---------------------------------------------------------------------------------------------


def test_device_bootstraps_switches_tls_and_keeps_its_identity(lab: Lab, tmp_path: Path) -> None:
    serial, folder = make_device(lab, cli=True)
    nms = lab.root / "nms"
    process = run_device(folder, "--registrar", lab.registrar_url)
    try:
        assert process.wait_for("enrolled ") == f"enrolled {serial}"
        state = poll(process, lambda s: text(s, "phase") == "enrolled")
        assert text(state, "registrar/used") == lab.registrar_url
        assert text(state, "bootstrap-path") == "brski"
        assert text(state, "voucher/serial-number") == serial
        assert text(state, "ldevid/fingerprint") == certs.fingerprint(
            certfiles.load_cert_file(folder / "ldevid.pem")
        )
        assert text(state, "trust-anchor/source") == "pinned-domain-cert"
        seen = events(state)
        for name in ("bootstrap-started", "attempt-started", "voucher-valid", "installed",
                     "enrolled"):  # fmt: skip
            assert name in seen, seen

        # the registrar got enrollstatus with the management ports (contract C5 part A)
        assert lab.state(serial) == "enroll-confirmed"

        # NETCONF/TLS now accepts a domain client, and RESTCONF listens
        with tls(process, nms / "cert.pem", nms / "key.pem", nms / "ca.pem") as m:
            assert text(state_of(m), "phase") == "enrolled"
        process.wait_for("listening restconf", timeout=10)
        assert restconf_state(process, nms, serial)["phase"] == "enrolled"

        # refused: no client certificate, the manufacturer IDevID, another domain's cert
        ca = str(nms / "ca.pem")
        assert refused(lambda: manager.connect_tls(
            host="127.0.0.1", port=process.ports["netconf-tls"], ca_certs=ca, timeout=10,
            protocol=ssl.PROTOCOL_TLS_CLIENT, check_hostname=False))  # fmt: skip
        assert refused(
            lambda: tls(process, folder / "idevid.pem", folder / "idevid.key", nms / "ca.pem")
        )
        other_ca = certs.make_ca("other domain CA", now=datetime.now(UTC))
        other = certs.issue_client(other_ca, "nms", now=datetime.now(UTC))
        certfiles.write_certs(tmp_path / "cert.pem", [other.cert])
        certfiles.write_key(tmp_path / "key.pem", other.key)
        assert refused(
            lambda: tls(process, tmp_path / "cert.pem", tmp_path / "key.pem", nms / "ca.pem")
        )
    finally:
        process.stop()

    # a restart keeps the identity and does not bootstrap again
    ldevid = (folder / "ldevid.pem").read_bytes()
    process = run_device(folder, "--registrar", lab.registrar_url)
    try:
        assert process.wait_for("enrolled ") == f"enrolled {serial} (already)"
        state = poll(process, lambda s: text(s, "phase") == "enrolled")
        seen = events(state)
        assert seen[-2:] == ["agent-started", "already-enrolled"], seen
        assert seen.count("bootstrap-started") == 1  # the history survived the restart
        assert text(state, "voucher/serial-number") == serial  # rebuilt from voucher.cms
        assert (folder / "ldevid.pem").read_bytes() == ldevid
        # restart-bootstrap on an enrolled device needs factory-reset
        with (
            tls(process, nms / "cert.pem", nms / "key.pem", nms / "ca.pem") as m,
            pytest.raises(RPCError, match="factory-reset"),
        ):
            m.dispatch(etree.fromstring(f'<restart-bootstrap xmlns="{NS}"/>'))
    finally:
        process.stop()


def test_masa_down_at_first_then_up(lab: Lab) -> None:
    serial, folder = make_device(lab)
    lab.stop_masa()
    process = run_device(folder)
    try:
        state = poll(process, lambda s: text(s, "phase") == "waiting-retry")
        assert text(state, "next-attempt") is not None
        detail = " ".join(str(text(e, "detail")) for e in state.findall(f"{{{NS}}}event"))
        assert "503" in detail, detail
        with ssh(process) as m:
            m.create_subscription()
            # The MASA is still down, so the device keeps failing and waiting: after the next
            # wait (the subscription may start mid-attempt), a subscriber sees a whole retry
            # cycle. Only then does the MASA come up: no race with the retry timer.
            phase_changes(m, until="waiting-retry")
            cycle = phase_changes(m, until="waiting-retry")
            assert cycle == ["requesting-voucher", "waiting-retry"], cycle
            lab.start_masa()
            up = phase_changes(m, until="enrolled")
        # Failed tries may still end before the MASA listens; the last one enrolls.
        assert up[-4:] == ["requesting-voucher", "voucher-accepted", "enrolling", "enrolled"], up
        assert set(up[:-4]) <= {"requesting-voucher", "waiting-retry"}, up
        assert process.wait_for("enrolled ") == f"enrolled {serial}"
        state = poll(process, lambda s: text(s, "phase") == "enrolled")
        # The persisted history has it all, in order: waits, then a voucher, then enrolled.
        seen = events(state)
        last_wait = len(seen) - 1 - seen[::-1].index("waiting-retry")
        assert last_wait < seen.index("voucher-valid", last_wait) < seen.index("enrolled"), seen
        assert text(state, "last-error/reason") is None  # cleared by the enrollment
    finally:
        process.stop()
        if lab.masa is None:
            lab.start_masa()


def test_killed_mid_bootstrap_resumes_and_enrolls(lab: Lab) -> None:
    serial, folder = make_device(lab)
    lab.stop_masa()
    process = run_device(folder)
    try:
        poll(process, lambda s: "attempt-started" in events(s))
        process.kill()
        # leftovers of an install cut short: key and certificate without the commit point
        (folder / "ldevid.key").write_text("partial")
        (folder / "ldevid.pem").write_text("partial")
        lab.start_masa()
        process = run_device(folder)
        assert process.wait_for("enrolled ") == f"enrolled {serial}"
        state = poll(process, lambda s: text(s, "phase") == "enrolled")
        started = [
            e for e in state.findall(f"{{{NS}}}event") if text(e, "event") == "agent-started"
        ]
        assert "interrupted" in str(text(started[-1], "detail"))
        assert "discarded an incomplete domain identity" in process.log
        certfiles.load_identity(folder / "ldevid.pem", folder / "ldevid.key")
    finally:
        process.stop()
        if lab.masa is None:
            lab.start_masa()


def test_serial_not_allowed_stays_unenrolled_then_restart_bootstrap(lab: Lab) -> None:
    serial, folder = make_device(lab, allow=False, rounds=1)
    process = run_device(folder)
    try:
        state = poll(process, lambda s: text(s, "phase") == "failed")
        assert text(state, "last-error/reason") == "policy-refused"
        assert "gave up after 1 round" in str(text(state, "last-error/message"))
        tried = state.find(f"{{{NS}}}registrar/{{{NS}}}tried")
        assert tried is not None and text(tried, "outcome") == "policy-refused"
        assert not (folder / "ldevid.pem").exists()
        # the owner allows it; restart-bootstrap (RPC over the SSH access) enrolls it
        run_cli("registrar", "allow", "--dir", lab.domain, "--serial", serial)
        with ssh(process) as m:
            reply = m.dispatch(etree.fromstring(f'<restart-bootstrap xmlns="{NS}"/>'))
            assert "discovering" in reply.xml
        assert process.wait_for("enrolled ") == f"enrolled {serial}"
        first = (folder / "ldevid.pem").read_bytes()
        # restart-bootstrap with factory-reset forgets the identity and enrolls anew
        reset = f'<restart-bootstrap xmlns="{NS}"><factory-reset>true</factory-reset>'
        reset += "</restart-bootstrap>"
        with ssh(process) as m:
            m.dispatch(etree.fromstring(reset))
        assert process.wait_for("enrolled ", nth=2) == f"enrolled {serial}"
        assert (folder / "ldevid.pem").read_bytes() != first
        state = poll(process, lambda s: text(s, "phase") == "enrolled")
        assert "factory-reset" in events(state)
    finally:
        process.stop()
    result = run_cli("device", "factory-reset", "--dir", folder)
    assert "domain-ca.pem" in result.stdout and "erased" in result.stdout
    for name in (
        "domain-ca.pem",
        "ldevid.pem",
        "ldevid.key",
        "voucher.cms",
        "bootstrap-state.json",
    ):
        assert not (folder / name).exists(), name
    assert (folder / "idevid.pem").exists()


@contextmanager
def serving(fake: FakeRegistrar) -> Iterator[str]:
    """A hostile registrar on its own event loop in a thread (the device is a process that
    the test polls synchronously meanwhile); yields its URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-registrar", daemon=True)
    thread.start()
    try:
        runner, url = asyncio.run_coroutine_threadsafe(fake.start(), loop).result(30)
        try:
            yield url
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_voucher_failing_a_check_is_never_accepted_then_the_right_registrar_enrolls(
    lab: Lab, tmp_path: Path
) -> None:
    """A registrar of another domain relays a genuine MASA voucher for this device that pins
    the real domain (a man in the middle, RFC 8995 §5.6.2): the agent refuses it on every
    attempt, reports it, keeps retrying and writes nothing; restarted with the right
    registrar second in its list, it enrolls there."""
    evil = tmp_path / "R-evil"
    run_cli("registrar", "init", "--dir", evil, "--manufacturer-ca", lab.vendor / "ca.pem",
            "--ca-name", "evil domain CA")  # fmt: skip
    serial, folder = make_device(lab)
    fake = FakeRegistrar(
        certfiles.load_identity(evil / "registrar.pem", evil / "registrar.key"),
        certfiles.load_cert_file(lab.vendor / "ca.pem"),
        lambda pvr, _: masa_voucher(lab, pvr),
    )
    domain_files = ("ldevid.pem", "ldevid.key", "domain-ca.pem", "voucher.cms")
    with serving(fake) as evil_url:
        process = run_device(folder, "--registrar", evil_url)
        try:
            state = poll(
                process,
                lambda s: (
                    int(text(s, "attempts") or 0) >= 2 and text(s, "phase") == "waiting-retry"
                ),
            )
            assert text(state, "last-error/reason") == "untrusted-signer"
            assert "man-in-the-middle" in str(text(state, "last-error/message"))
            tried = state.find(f"{{{NS}}}registrar/{{{NS}}}tried")
            assert tried is not None and text(tried, "uri") == evil_url
            assert text(tried, "outcome") == "untrusted-signer"
            seen = events(state)
            assert seen.count("voucher-invalid") >= 2 and "voucher-valid" not in seen, seen
            assert state.find(f"{{{NS}}}voucher") is None
            assert state.find(f"{{{NS}}}ldevid") is None
        finally:
            process.stop()
        # every attempt told the registrar why (voucher_status false), none went further
        assert len(fake.reports) >= 2, fake.reports
        for path, report in fake.reports:
            assert path == PATH_VOUCHER_STATUS and report["status"] is False, report
            assert "man-in-the-middle" in report["reason"], report
        assert not [name for name in domain_files if (folder / name).exists()]
        assert lab.state(serial) is None  # the real registrar never saw it

        process = run_device(folder, "--registrar", evil_url, "--registrar", lab.registrar_url)
        try:
            assert process.wait_for("enrolled ") == f"enrolled {serial}"
            state = poll(process, lambda s: text(s, "phase") == "enrolled")
        finally:
            process.stop()
    assert text(state, "registrar/used") == lab.registrar_url
    outcomes = {
        text(t, "uri"): text(t, "outcome")
        for t in state.findall(f"{{{NS}}}registrar/{{{NS}}}tried")
    }
    assert outcomes == {evil_url: "untrusted-signer", lab.registrar_url: "ok"}, outcomes
    assert text(state, "last-error/reason") is None
    pinned = certs.fingerprint(certfiles.load_cert_file(lab.domain / "ca.pem"))
    assert text(state, "voucher/pinned-domain-cert-fingerprint") == pinned
    assert lab.state(serial) == "enroll-confirmed"
    certfiles.load_identity(folder / "ldevid.pem", folder / "ldevid.key")


def restconf_restart(
    process: DeviceProcess, nms: Path, serial: str, body: str | None
) -> tuple[int, str]:
    """POST .../operations/zerotouch-bootstrap:restart-bootstrap with curl: (status, body);
    status 0 when no connection could be made."""
    port = process.ports["restconf"]
    name = device_dns_name(serial, DEFAULT_DEVICE_DOMAIN)
    data = [] if body is None else ["-H", "Content-Type: application/yang-data+json", "-d", body]
    result = subprocess.run(
        ["curl", "-sS", "-X", "POST", "--cacert", nms / "ca.pem", "--cert", nms / "cert.pem",
         "--key", nms / "key.pem", "-H", "Accept: application/yang-data+json", *data,
         "--resolve", f"{name}:{port}:127.0.0.1", "-w", "\n%{http_code}",
         f"https://{name}:{port}/restconf/operations/zerotouch-bootstrap:restart-bootstrap"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    out, _, status = result.stdout.rpartition("\n")
    return int(status or 0), out


def test_restart_bootstrap_over_restconf_needs_factory_reset(lab: Lab) -> None:
    serial, folder = make_device(lab)
    nms = lab.root / "nms"
    process = run_device(folder, "--registrar", lab.registrar_url)
    try:
        process.wait_for(f"enrolled {serial}")
        process.wait_for("listening restconf", timeout=10)
        ldevid = (folder / "ldevid.pem").read_bytes()
        for body in (None, '{"zerotouch-bootstrap:input": {"factory-reset": false}}'):
            status, answer = restconf_restart(process, nms, serial, body)
            assert status == 409, (status, answer)
            error = json.loads(answer)["ietf-restconf:errors"]["error"][0]
            assert error["error-tag"] == "data-exists", error
            assert "factory-reset true" in error["error-message"], error
        assert (folder / "ldevid.pem").read_bytes() == ldevid
        assert restconf_state(process, nms, serial)["phase"] == "enrolled"

        status, answer = restconf_restart(
            process, nms, serial, '{"zerotouch-bootstrap:input": {"factory-reset": true}}'
        )
        assert status == 200, (status, answer)
        assert json.loads(answer) == {"zerotouch-bootstrap:output": {"phase": "discovering"}}
        # the device bootstraps anew (the serial is still allowed): a new LDevID
        assert process.wait_for("enrolled ", nth=2) == f"enrolled {serial}"
        assert "RESTCONF waits for a domain identity" in process.log  # it stopped meanwhile
        assert (folder / "ldevid.pem").read_bytes() != ldevid
        state = restconf_state(process, nms, serial)
        names = [e["event"] for e in state["event"]]
        assert names.index("restart-requested") < names.index("factory-reset"), names
        assert state["phase"] == "enrolled" and names[-1] == "enrolled", names
    finally:
        process.stop()

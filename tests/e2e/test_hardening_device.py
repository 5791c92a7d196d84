"""Issue 11 items 1 and 2 against ``zerotouch device run`` (a real process) on 127.0.0.1.

A long XPath filter no longer holds the device: SIGTERM during one ends the process at once,
its worker too. Large edits (NETCONF edit-config, RESTCONF PATCH) are validated in time that
grows with the edit, off the event loop, so other sessions are answered meanwhile; an edit over
``max_edit_entries`` is refused (too-big, 413) and changes nothing.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ncclient import manager
from ncclient.operations.rpc import RPCError

from tests.support.device_pki import DevicePki, make_device_pki
from tests.support.device_process import DeviceProcess, device, start_device, write_device_config
from zerotouch_plugin.config import hash_password
from zerotouch_plugin.services.certfiles import write_certs, write_key

IF_NS = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
SYS_NS = "urn:ietf:params:xml:ns:yang:ietf-system"
ETH = "iana-if-type:ethernetCsmacd"
BUDGET = 12_000  # max_edit_entries of the device under test
PASSWORD = hash_password("secret", salt=b"fixed-test-salt!", iterations=10_000)


def _config(folder: Path, extra: str = "") -> Path:
    write_device_config(
        folder,
        f'max_edit_entries = {BUDGET}\n\n[[users]]\nname = "admin"\npassword = "{PASSWORD}"\n'
        + extra,
    )
    return folder


@pytest.fixture(scope="module")
def pki() -> DevicePki:
    return make_device_pki()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, pki: DevicePki) -> Iterator[DeviceProcess]:
    folder = _config(tmp_path_factory.mktemp("device"))
    write_certs(folder / "ldevid.pem", [pki.server.cert, *pki.server.chain])
    write_key(folder / "ldevid.key", pki.server.key)
    write_certs(folder / "domain-ca.pem", [pki.ca.cert])
    listen = {"netconf-ssh": "127.0.0.1:0", "restconf": "127.0.0.1:0"}
    with device(folder, listen) as process:
        yield process


def _ssh(process: DeviceProcess) -> manager.Manager:
    return manager.connect(
        host="127.0.0.1",
        port=process.ports["netconf-ssh"],
        username="admin",
        password="secret",
        hostkey_verify=False,
        allow_agent=False,
        look_for_keys=False,
        timeout=60,
    )


def _interfaces(count: int, start: int = 0) -> str:
    entries = "".join(
        f"<interface><name>eth{i}</name><type>ianaift:ethernetCsmacd</type>"
        f"<description>port {i}</description></interface>"
        for i in range(start, start + count)
    )
    return (
        f'<config><interfaces xmlns="{IF_NS}" '
        f'xmlns:ianaift="urn:ietf:params:xml:ns:yang:iana-if-type">{entries}</interfaces></config>'
    )


def _count(m: manager.Manager) -> int:
    flt = ("subtree", f'<interfaces xmlns="{IF_NS}"><interface><name/></interface></interfaces>')
    data = m.get_config(source="running", filter=flt).data_ele
    return len(data.findall(f".//{{{IF_NS}}}interface"))


def _remove_all(m: manager.Manager) -> None:
    m.edit_config(
        target="running",
        config=f'<config><interfaces xmlns="{IF_NS}" '
        'xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="remove"/></config>',
    )


def _served_meanwhile(job: Callable[[], object], probe: Callable[[], object]) -> float:
    """Run ``job`` in a thread and ``probe`` repeatedly until it ends: the slowest probe."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            job()
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    slowest = 0.0
    probes = 0
    while thread.is_alive() or probes < 3:
        started = time.monotonic()
        probe()
        slowest = max(slowest, time.monotonic() - started)
        probes += 1
    thread.join()
    if errors:
        raise errors[0]
    return slowest


def test_large_netconf_edit_leaves_other_sessions_served(running: DeviceProcess) -> None:
    """10,000 interfaces in one edit-config took 40 s, the device deaf meanwhile; now the
    edit takes seconds and another session's get-config is answered meanwhile. One more
    interface then costs milliseconds, not a revalidation of the 10,000."""
    with _ssh(running) as m, _ssh(running) as other:
        started = time.monotonic()
        flt = ("subtree", f'<system xmlns="{SYS_NS}"/>')
        slowest = _served_meanwhile(
            lambda: m.edit_config(target="running", config=_interfaces(10_000)),
            lambda: other.get_config(source="running", filter=flt),
        )
        assert time.monotonic() - started < 30
        assert slowest < 1.0, slowest
        started = time.monotonic()
        m.edit_config(target="running", config=_interfaces(1, 10_000))
        assert time.monotonic() - started < 1.0
        assert _count(other) == 10_001
        _remove_all(m)


def test_large_restconf_patch_leaves_netconf_served(running: DeviceProcess, pki: DevicePki) -> None:
    """RESTCONF PATCH of 10,000 interfaces, a NETCONF session answered meanwhile."""
    entries = [{"name": f"eth{i}", "type": ETH, "description": f"port {i}"} for i in range(10_000)]
    body = json.dumps({"ietf-interfaces:interfaces": {"interface": entries}}).encode()
    status: list[int] = []

    def patch() -> None:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", running.ports["restconf"], context=pki.client_context(), timeout=60
        )
        headers = {"Content-Type": "application/yang-data+json"}
        conn.request("PATCH", "/restconf/data/ietf-interfaces:interfaces", body, headers)
        status.append(conn.getresponse().status)
        conn.close()

    with _ssh(running) as other:
        flt = ("subtree", f'<system xmlns="{SYS_NS}"/>')
        slowest = _served_meanwhile(patch, lambda: other.get_config(source="running", filter=flt))
        assert status == [204]
        assert slowest < 1.0, slowest
        assert _count(other) == 10_000
        _remove_all(other)


def test_an_edit_over_the_budget_is_refused(running: DeviceProcess, pki: DevicePki) -> None:
    """More entries than max_edit_entries: too-big over NETCONF, 413 over RESTCONF, nothing
    changed; the same entries in two edits are accepted."""
    with _ssh(running) as m:
        with pytest.raises(RPCError) as err:
            m.edit_config(target="running", config=_interfaces(BUDGET + 1))
        assert err.value.tag == "too-big"
        assert f"budget of {BUDGET}" in str(err.value.message)
        assert _count(m) == 0
        entries = [{"name": f"x{i}", "type": ETH} for i in range(BUDGET + 1)]
        body = json.dumps({"ietf-interfaces:interfaces": {"interface": entries}}).encode()
        conn = http.client.HTTPSConnection(
            "127.0.0.1", running.ports["restconf"], context=pki.client_context(), timeout=60
        )
        conn.request(
            "PATCH",
            "/restconf/data/ietf-interfaces:interfaces",
            body,
            {"Content-Type": "application/yang-data+json", "Accept": "application/yang-data+json"},
        )
        reply = conn.getresponse()
        assert reply.status == 413
        assert b"too-big" in reply.read()
        conn.close()
        assert _count(m) == 0
        half = (BUDGET + 1) // 2
        m.edit_config(target="running", config=_interfaces(half))
        m.edit_config(target="running", config=_interfaces(BUDGET + 1 - half, half))
        assert _count(m) == BUDGET + 1
        _remove_all(m)


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found |= {int(c) for c in text}
    return found


def test_sigterm_during_a_long_filter_ends_the_device(tmp_path: Path) -> None:
    """Issue 11 item 1: during the endless filter the device ignored SIGTERM. With a 60 s
    budget, a filter that runs long is evaluated by the worker while the device stays
    responsive: SIGTERM ends it within seconds, cleanly, and the worker with it."""
    _config(tmp_path, "\n[netconf_limits]\nxpath_budget = 60\n")
    process = start_device(tmp_path, {"netconf-ssh": "127.0.0.1:0"})
    try:
        m = _ssh(process)
        m.get(filter=("xpath", "/*"))  # starts the worker
        workers = _children(process.proc.pid)
        assert len(workers) == 1
        outcome: list[BaseException] = []

        def costly() -> None:
            try:
                m.get(filter=("xpath", "//*[//*]"))
            except Exception as exc:  # the session ends with the device: no reply
                outcome.append(exc)

        client = threading.Thread(target=costly, daemon=True)
        client.start()
        time.sleep(0.5)
        started = time.monotonic()
        process.proc.send_signal(signal.SIGTERM)
        assert process.proc.wait(10) == 0
        assert time.monotonic() - started < 5
        deadline = time.monotonic() + 5
        while any(Path(f"/proc/{pid}").exists() for pid in workers):
            assert time.monotonic() < deadline, "the XPath worker outlived the device"
            time.sleep(0.05)
        client.join(10)
        assert [type(e).__name__ for e in outcome] == ["SessionCloseError"]
        assert "Traceback" not in process.log, process.log
    finally:
        process.stop()
        process.log_path.unlink(missing_ok=True)
    with pytest.raises(ProcessLookupError):
        os.kill(next(iter(workers)), 0)

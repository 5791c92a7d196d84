"""``zerotouch fleet`` end to end: 20 virtual devices in one process against a real
``zerotouch masa serve`` and ``zerotouch registrar serve --auto-accept`` on 127.0.0.1.

Nineteen IDevIDs come from the manufacturer the registrar trusts, one from another
manufacturer: the nineteen enroll and are configured by the registrar's day-0 hand-off (read
back over NETCONF/TLS with ncclient and an NMS certificate of the domain, and in the
registrar's device list), the twentieth fails with its reason in the summary. The ncclient
sessions end by the server (``tests/support/ncclient_tls.py``): ncclient's own close races
its reader thread and can break the next session's TLS stream on a loaded machine.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from tests.e2e.test_brski_flow import Lab, make_lab
from tests.support.ncclient_tls import tls_session
from tests.support.processes import run_cli

COUNT = 20
UNTRUSTED = f"FLEET-{COUNT:05d}"
SYS_NS = "urn:ietf:params:xml:ns:yang:ietf-system"
CONTACT = "noc@fleet.example"
DAY0 = {"ietf-system:system": {"contact": CONTACT, "location": "fleet test rack"}}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = make_lab(tmp_path_factory.mktemp("fleet"))
    try:
        lab.start_masa()
        lab.start_registrar("--auto-accept")
        yield lab
    finally:
        lab.close()


def _fleet(lab: Lab, ids: Path, work: Path, log: Path) -> subprocess.Popen[str]:
    with log.open("w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "zerotouch_plugin", "fleet", "--count", str(COUNT),
             "--idevids", str(ids), "--registrar", lab.registrar_url, "--workdir", str(work),
             "--rounds", "2", "--retry-delay", "0.3", "--handoff-wait", "90", "--json",
             "--hold"],
            stdout=subprocess.PIPE, stderr=err, text=True,
        )  # fmt: skip


def _read_contact(port: int, nms: Path, ca: Path, datastore: str) -> str | None:
    with tls_session(port, cert=nms / "cert.pem", key=nms / "key.pem", ca=ca) as session:
        reply = session.get_config(
            datastore, filter=("subtree", f'<system xmlns="{SYS_NS}"><contact/></system>')
        )
        node = etree.fromstring(reply.data_xml.encode()).find(f".//{{{SYS_NS}}}contact")
        return None if node is None else node.text


def _admin_devices(lab: Lab, admin: Path) -> dict[str, dict[str, Any]]:
    context = ssl.create_default_context(cafile=str(lab.domain / "ca.pem"))
    context.check_hostname = False
    context.load_cert_chain(admin / "cert.pem", admin / "key.pem")
    url = f"{lab.registrar_url}/admin/devices"
    with urllib.request.urlopen(url, context=context, timeout=20) as answer:
        return {d["serial"]: d for d in json.loads(answer.read())["devices"]}


def test_a_fleet_of_20_enrolls_and_is_configured_except_the_untrusted_one(
    lab: Lab, tmp_path: Path
) -> None:
    ids = tmp_path / "idevids"
    # the last device's IDevID comes from a manufacturer the registrar does not trust
    other = tmp_path / "other-vendor"
    run_cli("vendor", "init", "--dir", other, "--masa-url", f"https://127.0.0.1:{lab.masa_port}")
    run_cli("vendor", "idevid", "--dir", other, "--serial", UNTRUSTED, "--out", ids / UNTRUSTED)
    prepared = run_cli("fleet", "--count", str(COUNT), "--idevids", ids, "--vendor", lab.vendor,
                       "--prepare-only")  # fmt: skip
    assert f"{COUNT - 1} issued" in prepared.stderr
    (tmp_path / "day0.json").write_text(json.dumps(DAY0))
    run_cli("registrar", "day0", "--dir", lab.domain, "--default", "--file", tmp_path / "day0.json")
    issue = ("registrar", "issue-client-cert", "--dir", lab.domain)
    run_cli(*issue, "--name", "nms", "--out", tmp_path / "nms")
    run_cli(*issue, "--name", "ops", "--admin", "--out", tmp_path / "admin")

    log = tmp_path / "fleet.log"
    fleet = _fleet(lab, ids, tmp_path / "work", log)
    try:
        assert fleet.stdout is not None
        line = fleet.stdout.readline()
        assert line, f"fleet exited {fleet.poll()} without a summary:\n{log.read_text()}"
        summary = json.loads(line)
        trusted = sorted(s for s in summary["devices"] if s != UNTRUSTED)
        assert summary["count"] == COUNT
        assert (summary["enrolled"], summary["configured"]) == (COUNT - 1, COUNT - 1), summary
        assert sum(summary["failed"].values()) == 1, summary
        (failure,) = summary["failures"]
        assert failure["serial"] == UNTRUSTED
        assert failure["reason"] in summary["failed"]
        assert failure["reason"] != "timeout", failure
        assert summary["enroll_seconds"] > 0 and summary["configure_seconds"] > 0
        assert log.read_text().startswith(f"fleet: {COUNT} devices listening")  # on stderr

        # the devices keep listening (--hold): the NMS reads the day-0 configuration back
        ca = lab.domain / "ca.pem"
        for serial in (trusted[0], trusted[len(trusted) // 2], trusted[-1]):
            port = summary["devices"][serial]
            assert _read_contact(port, tmp_path / "nms", ca, "running") == CONTACT
            assert _read_contact(port, tmp_path / "nms", ca, "startup") == CONTACT

        records = _admin_devices(lab, tmp_path / "admin")
        for serial in trusted:
            assert records[serial]["state"] == "enroll-confirmed", records[serial]
            assert records[serial]["handoff"]["state"] == "applied", records[serial]
        assert UNTRUSTED not in records or records[UNTRUSTED]["state"] != "enroll-confirmed"
    finally:
        fleet.send_signal(signal.SIGTERM)
        status = fleet.wait(30)
    assert status == 1, log.read_text()  # one device failed
    assert not any((tmp_path / "work" / serial / "ldevid.pem").exists() for serial in [UNTRUSTED])
    assert all((tmp_path / "work" / s / "domain-ca.pem").exists() for s in trusted)
    assert os.stat(tmp_path / "work" / trusted[0] / "idevid.key").st_mode & 0o077 == 0

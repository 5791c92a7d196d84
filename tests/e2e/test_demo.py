"""``zerotouch demo`` end to end: the command as a subprocess, its JSON summary, the files it
left, and the processes it must not leave behind."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lxml import etree

from tests.support.admin_openapi import check_admin_answer
from tests.support.ncclient_tls import tls_session
from tests.support.processes import REPO

SYS_NS = "urn:ietf:params:xml:ns:yang:ietf-system"
STEPS = [
    "manufacturer-pki",
    "idevids",
    "masa",
    "domain-pki",
    "client-certs",
    "policy",
    "day0",
    "registrar",
    "devices",
    "enrollment",
    "handoff",
    "nms-read",
    "refusals",
]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _demo(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "zerotouch_plugin", "demo", *map(str, args)]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=_env(), check=False
    )


def _pids_in(folder: Path) -> list[int]:
    """Live processes whose working folder is ``folder`` (the demo runs every child there)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == folder.resolve():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _summary(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(result.stdout)  # --json: nothing else on stdout
    return summary


def _openssl_verify(ca: Path, cert: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca), str(cert)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_whole_demo_flow_with_two_devices(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    result = _demo("--json", "--workdir", workdir, "--devices", "2")
    summary = _summary(result)
    assert result.returncode == 0, (summary, result.stderr)
    assert summary["ok"] is True and summary["failed_step"] is None
    names = [step["name"] for step in summary["steps"]]
    assert sorted(names) == sorted([*STEPS, "stop"]) and names[-1] == "stop"
    for step in summary["steps"]:
        assert step["ok"] is True, step
        assert step["seconds"] >= 0 and step["detail"], step
    assert 0 < summary["total_seconds"] < 120
    assert summary["workdir"] == str(workdir.resolve()) and summary["kept"] is False
    assert json.loads((workdir / "summary.json").read_text()) == summary

    endpoints = summary["endpoints"]
    assert endpoints["masa"].startswith("https://127.0.0.1:")
    assert endpoints["registrar"].startswith("https://127.0.0.1:")
    devices = endpoints["devices"]
    assert [d["serial"] for d in devices] == ["DEMO-0001", "DEMO-0002"]
    for index, device in enumerate(devices, start=1):
        folder = workdir / device["folder"]
        assert device["hostname"] == f"demo-device-{index}"
        assert device["netconf-tls"].startswith("127.0.0.1:")
        # The day-0 hand-off reached startup (copy-config running -> startup).
        startup = json.loads((folder / "startup.json").read_text())
        assert startup["ietf-system:system"]["hostname"] == f"demo-device-{index}"
        # The LDevID the agent installed chains to the owner's domain CA, not the vendor's.
        verified = _openssl_verify(workdir / "registrar/ca.pem", folder / "ldevid.pem")
        assert verified.returncode == 0 and ": OK" in verified.stdout, verified.stderr
        foreign = _openssl_verify(workdir / "vendor/ca.pem", folder / "ldevid.pem")
        assert foreign.returncode != 0
    assert "registrar day0" in (workdir / "logs/commands.log").read_text()
    assert not list((workdir / "run").glob("*.pid"))
    assert _pids_in(workdir) == []


def test_keep_leaves_working_services_until_stop(tmp_path: Path) -> None:
    workdir = tmp_path / "kept"
    result = _demo("--keep", "--workdir", workdir)  # the text view, this time
    summary = json.loads((workdir / "summary.json").read_text())
    try:
        assert result.returncode == 0, (result.stdout, result.stderr)
        lines = result.stdout.splitlines()
        assert lines[0].startswith(f"zerotouch demo: 1 device on 127.0.0.1, work folder {workdir}")
        assert sum(" ok " in line for line in lines) == len(STEPS) + 1  # and "keep"
        assert "FAIL" not in result.stdout and "all 14 steps held" in result.stdout
        assert f"zerotouch demo --stop --workdir {workdir}" in [line.strip() for line in lines]
        assert any(line.strip().startswith("curl --cacert registrar/ca.pem") for line in lines)
        assert summary["kept"] is True
        pids = summary["pids"]
        assert set(pids) == {"masa", "registrar", "device-1"}
        assert sorted(_pids_in(workdir)) == sorted(pids.values())
        registrar = summary["endpoints"]["registrar"]
        admin = subprocess.run(
            ["curl", "-sS", "--fail", "--cacert", "registrar/ca.pem", "--cert", "admin/cert.pem",
             "--key", "admin/key.pem", "-w", "\n%{content_type}", f"{registrar}/admin/devices"],
            capture_output=True, text=True, timeout=30, check=False, cwd=workdir,
        )  # fmt: skip
        assert admin.returncode == 0, admin.stderr
        # the console's one-time login link, printed with the rest (docs/console.md)
        (link,) = [line.strip() for line in lines if "/console/login#token=" in line]
        assert link.startswith(f"{registrar}/console/login#token=")
        listing, _, media = admin.stdout.rpartition("\n")
        check_admin_answer("GET", "/admin/devices", 200, media, listing.encode())
        (record,) = json.loads(listing)["devices"]
        assert record["serial"] == "DEMO-0001" and record["state"] == "enroll-confirmed"
        device = summary["endpoints"]["devices"][0]
        # the NMS curl command the demo prints, run as printed: by the LDevID's DNS name
        # (as a client checks the server), host name checked (no -k)
        (printed,) = [
            line.strip() for line in lines
            if line.strip().startswith("curl --cacert registrar/ca.pem --cert nms/cert.pem")
        ]  # fmt: skip
        command = shlex.split(printed)
        assert "-k" not in command and "--insecure" not in command
        restconf_port = device["restconf"].rsplit(":", 1)[1]
        name = "demo-0001.devices.zerotouch.internal"
        assert f"{name}:{restconf_port}:127.0.0.1" in command, printed
        restconf = subprocess.run(
            [*command, "-sS", "--fail"],
            capture_output=True, text=True, timeout=30, check=False, cwd=workdir,
        )  # fmt: skip
        assert restconf.returncode == 0, restconf.stderr
        assert json.loads(restconf.stdout)["ietf-system:system"]["hostname"] == "demo-device-1"
        # the serial alone is no name the LDevID carries: curl without -k refuses it
        by_serial = f"{device['serial']}:{restconf_port}"
        refused = subprocess.run(
            ["curl", "-sS", "--fail", "--cacert", "registrar/ca.pem", "--cert", "nms/cert.pem",
             "--key", "nms/key.pem", "--resolve", f"{by_serial}:127.0.0.1",
             f"https://{by_serial}/restconf/data/ietf-system:system/hostname"],
            capture_output=True, text=True, timeout=30, check=False, cwd=workdir,
        )  # fmt: skip
        assert refused.returncode == 60, refused.stderr  # CURLE_PEER_FAILED_VERIFICATION
        port = int(device["netconf-tls"].rsplit(":", 1)[1])
        with tls_session(
            port,
            cert=workdir / "nms/cert.pem",
            key=workdir / "nms/key.pem",
            ca=workdir / "registrar/ca.pem",
            timeout=15,
        ) as session:
            reply = session.get_config("running")
            data = etree.fromstring(reply.data_xml.encode())
            assert data.findtext(f".//{{{SYS_NS}}}hostname") == "demo-device-1"
    finally:
        stopped = _demo("--stop", "--workdir", workdir, timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    assert "masa" in stopped.stdout and "device-1" in stopped.stdout
    deadline = time.monotonic() + 10
    while _pids_in(workdir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _pids_in(workdir) == []
    assert not list((workdir / "run").glob("*.pid"))


def _start_and_wait_for(workdir: Path, service: str) -> subprocess.Popen[str]:
    """``zerotouch demo --json`` in the background, once ``service`` announced its port."""
    command = [sys.executable, "-m", "zerotouch_plugin", "demo", "--json", "--workdir", workdir]
    demo = subprocess.Popen(
        list(map(str, command)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_env(),
    )  # fmt: skip
    out = workdir / f"logs/{service}.out"
    deadline = time.monotonic() + 60
    while not (out.exists() and "listening" in out.read_text()):
        assert demo.poll() is None and time.monotonic() < deadline, demo.communicate()
        time.sleep(0.02)
    return demo


def test_a_killed_masa_fails_the_named_step_and_stops_everything(tmp_path: Path) -> None:
    workdir = tmp_path / "killed"
    demo = _start_and_wait_for(workdir, "masa")
    try:
        os.kill(int((workdir / "run/masa.pid").read_text()), signal.SIGKILL)
        stdout, stderr = demo.communicate(timeout=90)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 1, stderr
    summary = json.loads(stdout)
    assert summary["ok"] is False
    failed = [step for step in summary["steps"] if not step["ok"]]
    assert [step["name"] for step in failed] == [summary["failed_step"]]
    assert summary["failed_step"] != "stop"
    assert "masa exited unexpectedly (signal 9)" in failed[0]["detail"]
    assert "logs/masa.log" in failed[0]["logs"]
    assert summary["steps"][-1]["name"] == "stop" and summary["steps"][-1]["ok"]
    assert _pids_in(workdir) == []


def test_sigterm_stops_everything_and_says_interrupted(tmp_path: Path) -> None:
    workdir = tmp_path / "interrupted"
    demo = _start_and_wait_for(workdir, "registrar")
    demo.send_signal(signal.SIGTERM)
    stdout, stderr = demo.communicate(timeout=60)
    assert demo.returncode == 128 + signal.SIGTERM, stderr
    summary = json.loads(stdout)
    assert summary["ok"] is False and summary["failed_step"] == "interrupted"
    assert summary["steps"][-1]["name"] == "stop" and summary["steps"][-1]["ok"]
    assert _pids_in(workdir) == []


def test_services_end_with_a_killed_demo(tmp_path: Path) -> None:
    # SIGKILL leaves the demo no chance to clean up: the kernel ends its services
    # (PR_SET_PDEATHSIG), so nothing is left running.
    workdir = tmp_path / "killed-demo"
    demo = _start_and_wait_for(workdir, "registrar")
    assert _pids_in(workdir)
    demo.kill()
    demo.communicate(timeout=30)
    deadline = time.monotonic() + 15
    while _pids_in(workdir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _pids_in(workdir) == []


def test_workdir_must_be_fresh(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("something")
    result = _demo("--workdir", tmp_path)
    assert result.returncode == 1
    assert "config-error" in result.stderr and "not an empty folder" in result.stderr
    assert _demo("--devices", "0").returncode == 1

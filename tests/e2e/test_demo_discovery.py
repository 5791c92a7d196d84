"""``zerotouch demo --discovery``: the devices in their own network namespaces find the join
proxy by GRASP and enroll through it; without root it says so and exits 1; every namespace
is removed at the end, also when the demo is stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _command(*args: str | os.PathLike[str]) -> list[str]:
    return [sys.executable, "-m", "zerotouch_plugin", "demo", "--discovery", *map(str, args)]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _demo_namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return {line.split()[0] for line in listed.stdout.splitlines() if "zt-demo-" in line}


@pytest.fixture
def root() -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        message = "zerotouch demo --discovery needs root and iproute2"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def test_without_root_it_says_so_and_exits_1(tmp_path: Path) -> None:
    """An unprivileged user (a user namespace: euid 65534, no capabilities in the host)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) missing")
    workdir = tmp_path / "demo"
    result = subprocess.run(
        ["unshare", "--user", *_command("--workdir", workdir)],
        capture_output=True, text=True, timeout=60, env=_env(), check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        "zerotouch demo --discovery: network namespaces need root: run "
        "'sudo zerotouch demo --discovery'"
    )
    assert "Traceback" not in result.stderr
    assert not workdir.exists()


def test_devices_find_the_proxy_by_grasp_and_enroll(root: None, tmp_path: Path) -> None:
    before = _demo_namespaces()
    result = subprocess.run(
        _command("--devices", "2", "--json", "--workdir", tmp_path / "demo"),
        capture_output=True, text=True, timeout=300, env=_env(), check=False,
    )  # fmt: skip
    summary = json.loads(result.stdout)
    assert result.returncode == 0 and summary["ok"], result.stdout
    steps = [step["name"] for step in summary["steps"]]
    assert steps[-3:] == ["enrollment", "how-found", "stop"]
    assert "handoff" not in steps  # the registrar cannot reach devices behind a join proxy
    assert len(summary["found"]) == 2
    for line, name in zip(summary["found"], ("device-1", "device-2"), strict=True):
        assert line.startswith(f"{name} found grasp proxy [fe80::"), line
        assert "(GRASP AN_Proxy from fe80::" in line and "enrolled through https://[fe80::" in line
    assert "removed 4 network namespaces" in summary["steps"][-1]["detail"]
    assert _demo_namespaces() == before


def test_sigterm_stops_everything_and_removes_the_namespaces(root: None, tmp_path: Path) -> None:
    before = _demo_namespaces()
    proc = subprocess.Popen(
        _command("--workdir", tmp_path / "demo"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 120
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while not any("start the join proxy" in line for line in seen):
            assert time.monotonic() < deadline and selector.select(deadline - time.monotonic())
            line = proc.stdout.readline()
            assert line, f"demo ended early: {seen}"
            seen.append(line)
    assert len(_demo_namespaces() - before) == 3  # registrar, proxy, device-1
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "removed 3 network namespaces" in out
    assert "interrupted after" in out
    assert _demo_namespaces() == before

"""The zerotouch.brski collection against a real demo world: the collection installed with
``ansible-galaxy`` into a temporary collections path, ``zerotouch demo --keep`` with two
devices on 127.0.0.1 (and the inventory it writes), playbooks run with ``ansible-playbook``
as a subprocess."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support.processes import REPO, run_cli

PACKAGE = "ansible_collections.zerotouch.brski.plugins"
BIN = Path(sys.executable).parent
COLLECTION = REPO / "ansible"
PLAYBOOKS = COLLECTION / "playbooks"
DEVICES = 2
RECAP = re.compile(
    r"^(?P<host>\S+)\s*: ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)


def tool(name: str) -> str:
    """An Ansible command of this virtual environment; in CI its absence fails."""
    path = BIN / name
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed in {BIN} (pip install -e '.[test]')")
        pytest.skip(f"{name} is not installed in {BIN}: pip install -e '.[test]'")
    return str(path)


@dataclass(frozen=True)
class Ansible:
    """Runs Ansible commands with the installed collection and a private ANSIBLE_HOME."""

    collections: Path
    home: Path

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            ANSIBLE_COLLECTIONS_PATH=str(self.collections),
            ANSIBLE_HOME=str(self.home),
            ANSIBLE_LOCAL_TEMP=str(self.home / "tmp"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_HOST_KEY_CHECKING="0",
            ANSIBLE_RETRY_FILES_ENABLED="0",
            ANSIBLE_PYTHON_INTERPRETER=sys.executable,
            PATH=os.pathsep.join([str(BIN), env.get("PATH", "")]),
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        )
        return env

    def run(
        self, command: str, *args: str | Path, timeout: float = 240
    ) -> subprocess.CompletedProcess[str]:
        return self.run_in(self.home, command, *args, timeout=timeout)

    def run_in(
        self, folder: Path, command: str, *args: str | Path, timeout: float = 240
    ) -> subprocess.CompletedProcess[str]:
        """``command ARGS`` in ``folder``; its output, whatever its exit status."""
        return subprocess.run(
            [tool(command), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(),
            cwd=folder,
            check=False,
        )

    def playbook(self, inventory: Path, name: str, *args: str) -> Run:
        result = self.run("ansible-playbook", "-i", inventory, PLAYBOOKS / name, *args)
        return Run(result)

    def module(
        self, name: str, arguments: dict[str, Any], *flags: str
    ) -> tuple[int, dict[str, Any]]:
        """One module on localhost (``ansible -m``): exit status and the module's result."""
        result = self.run(
            "ansible", "localhost", "-c", "local", "-m", f"zerotouch.brski.{name}",
            "-a", json.dumps(arguments), "-o", *flags,
        )  # fmt: skip
        line = next((ln for ln in result.stdout.splitlines() if ln.startswith("localhost |")), "")
        assert " => " in line, f"no result from {name}:\n{result.stdout}\n{result.stderr}"
        return result.returncode, json.loads(line.split(" => ", 1)[1])


@dataclass(frozen=True)
class Run:
    """One ansible-playbook run: its recap per host."""

    result: subprocess.CompletedProcess[str]

    @property
    def output(self) -> str:
        return f"{self.result.stdout}\n{self.result.stderr}"

    def recap(self) -> dict[str, dict[str, int]]:
        return {
            m["host"]: {k: int(v) for k, v in m.groupdict().items() if k != "host"}
            for m in RECAP.finditer(self.result.stdout)
        }

    def ok(self) -> Run:
        assert self.result.returncode == 0, self.output
        return self

    def changed(self) -> dict[str, int]:
        return {host: counts["changed"] for host, counts in self.recap().items()}


@pytest.fixture(scope="session")
def ansible(tmp_path_factory: pytest.TempPathFactory) -> Ansible:
    """The collection installed from the checkout, as a user would (no Galaxy server)."""
    root = tmp_path_factory.mktemp("ansible")
    home = root / "home"
    home.mkdir()
    runner = Ansible(root / "collections", home)
    result = runner.run(
        "ansible-galaxy", "collection", "install", COLLECTION, "-p", runner.collections, "--force"
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert (runner.collections / "ansible_collections/zerotouch/brski/galaxy.yml").is_file() or (
        runner.collections / "ansible_collections/zerotouch/brski/MANIFEST.json"
    ).is_file()
    return runner


@dataclass(frozen=True)
class World:
    """A kept demo: its folder, summary and the inventories it wrote."""

    folder: Path
    summary: dict[str, Any]

    @property
    def hosts(self) -> Path:
        return self.folder / "ansible/hosts.yml"

    @property
    def plugin_config(self) -> Path:
        return self.folder / "ansible/registrar.zerotouch.yml"

    @property
    def registrar(self) -> str:
        return str(self.summary["endpoints"]["registrar"])

    def port(self, serial: str) -> int:
        for device in self.summary["endpoints"]["devices"]:
            if device["serial"] == serial:
                return int(device["netconf-tls"].rsplit(":", 1)[1])
        raise KeyError(serial)

    @property
    def serials(self) -> list[str]:
        return [d["serial"] for d in self.summary["endpoints"]["devices"]]

    def registrar_args(self) -> dict[str, str]:
        return {
            "url": self.registrar,
            "client_cert": str(self.folder / "admin/cert.pem"),
            "client_key": str(self.folder / "admin/key.pem"),
            "ca": str(self.folder / "registrar/ca.pem"),
        }

    def device_args(self, serial: str, port: int | None = None) -> dict[str, Any]:
        return {
            "host": "127.0.0.1",
            "port": self.port(serial) if port is None else port,
            "serial": serial,
            "client_cert": str(self.folder / "nms/cert.pem"),
            "client_key": str(self.folder / "nms/key.pem"),
            "ca": str(self.folder / "registrar/ca.pem"),
            "yang_cache": str(self.folder / "ansible/yang-cache"),
        }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """``zerotouch demo --keep`` with two devices; stopped at the end of the module."""
    folder = tmp_path_factory.mktemp("demo")
    result = run_cli(
        "demo",
        "--keep",
        "--json",
        "--devices",
        DEVICES,
        "--workdir",
        folder,
        check=False,
        timeout=180,
    )
    try:
        summary = json.loads(result.stdout)
        assert summary["ok"] and summary["kept"], result.stdout + result.stderr
        yield World(folder, summary)
    finally:
        run_cli("demo", "--stop", "--workdir", folder, check=False)
        shutil.rmtree(folder / "ansible/yang-cache", ignore_errors=True)


@pytest.fixture(scope="module")
def plugins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModuleType]]:
    """``logic``, ``device`` (module_utils) and the inventory plugin, importable from an
    ``ansible_collections`` tree made of the checkout, as ansible-core imports them."""
    root = tmp_path_factory.mktemp("collections")
    (root / "ansible_collections/zerotouch").mkdir(parents=True)
    (root / "ansible_collections/zerotouch/brski").symlink_to(COLLECTION)
    sys.path.insert(0, str(root))
    try:
        yield {
            "logic": importlib.import_module(f"{PACKAGE}.module_utils.logic"),
            "device": importlib.import_module(f"{PACKAGE}.module_utils.device"),
            "inventory": importlib.import_module(f"{PACKAGE}.inventory.registrar"),
        }
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if n.startswith("ansible_collections")]:
            del sys.modules[name]

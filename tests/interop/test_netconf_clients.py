"""Third-party NETCONF clients against ``zerotouch device run`` (a real process) over SSH:
netconf-console (PyPI, on ncclient) and yangcli (Debian's yuma123, on libssh2); and curl on
the same device's RESTCONF, sharing its datastores and honouring NETCONF locks."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest
from ncclient import manager

from tests.support.device_pki import make_device_pki
from tests.support.device_process import DeviceProcess, device, write_device_config
from zerotouch_plugin.services.certfiles import write_certs, write_key

NETCONF_CONSOLE = Path(sys.executable).parent / "netconf-console"
SYSTEM_NS = "urn:ietf:params:xml:ns:yang:ietf-system"
PASSWORD = "s3cret-pass"
KEY_PASSPHRASE = "key-pass"  # netconf-console passes -p as the key's passphrase


@dataclass
class Device:
    process: DeviceProcess
    folder: Path
    key_file: Path
    pki_files: dict[str, Path]

    @property
    def port(self) -> int:
        return self.process.ports["netconf-ssh"]

    def curl(self, method: str, path: str, body: str | None = None) -> tuple[int, str]:
        curl = shutil.which("curl")
        assert curl is not None, "curl missing: run scripts/setup-system.sh"
        files = self.pki_files
        args = [curl, "-sS", "-X", method, "--max-time", "20", "-w", "\n%{http_code}"]
        args += ["--cacert", str(files["ca"]), "--cert", str(files["cert"])]
        args += ["--key", str(files["key"]), "-H", "Accept: application/yang-data+json"]
        if body is not None:
            args += ["-H", "Content-Type: application/yang-data+json", "--data-binary", body]
        url = f"https://127.0.0.1:{self.process.ports['restconf']}/restconf/data{path}"
        out = subprocess.run(
            [*args, url], capture_output=True, text=True, timeout=60, check=False
        ).stdout
        text, _, code = out.rpartition("\n")
        return int(code or 0), text


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Device]:
    folder = tmp_path_factory.mktemp("device")
    key = asyncssh.generate_private_key("ssh-ed25519")
    key_file = folder.parent / f"{folder.name}-client_ed25519"
    key.write_private_key(key_file, passphrase=KEY_PASSPHRASE)
    key_file.chmod(0o600)
    public = key.export_public_key().decode().strip()
    write_device_config(
        folder,
        f'[[users]]\nname = "admin"\npassword = "{PASSWORD}"\n\n'
        f'[[users]]\nname = "operator"\nauthorized_keys = [{json.dumps(public)}]\n',
    )
    startup = {"ietf-system:system": {"hostname": "interop-dev", "contact": "noc"}}
    (folder / "startup.json").write_text(json.dumps(startup))
    pki = make_device_pki()
    write_certs(folder / "ldevid.pem", [pki.server.cert])
    write_key(folder / "ldevid.key", pki.server.key)
    write_certs(folder / "domain-ca.pem", [pki.ca.cert])
    pki_files = pki.write(folder.parent / f"{folder.name}-pki")
    listeners = {"netconf-ssh": "127.0.0.1:0", "restconf": "127.0.0.1:0"}
    with device(folder, listeners) as process:
        yield Device(process, folder, key_file, pki_files)


# -- netconf-console --------------------------------------------------------------------------


def console(dev: Device, *args: str, auth: tuple[str, ...] | None = None) -> tuple[int, str]:
    login = auth if auth is not None else ("-u", "admin", "-p", PASSWORD)
    result = subprocess.run(
        [str(NETCONF_CONSOLE), "--host", "127.0.0.1", "--port", str(dev.port), *login, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


def test_console_hello(dev: Device) -> None:
    code, out = console(dev, "--hello")
    assert code == 0, out
    assert "urn:ietf:params:netconf:base:1.1" in out
    assert "module=zerotouch-bootstrap&amp;revision=2026-12-05" in out


def test_console_get_config(dev: Device) -> None:
    code, out = console(dev, "--get-config")
    assert code == 0, out
    assert f'<system xmlns="{SYSTEM_NS}">' in out
    assert "<hostname>interop-dev</hostname>" in out


def test_console_edit_config(dev: Device, tmp_path: Path) -> None:
    edit = tmp_path / "edit.xml"
    edit.write_text(f'<system xmlns="{SYSTEM_NS}"><location>row 3, rack 9</location></system>')
    code, out = console(dev, "--edit-config", str(edit))
    assert code == 0, out
    assert "<ok" in out
    code, out = console(dev, "--get-config")
    assert "<location>row 3, rack 9</location>" in out


def test_console_public_key_login(dev: Device) -> None:
    code, out = console(
        dev,
        "--get-config",
        auth=("-u", "operator", "--privKeyFile", str(dev.key_file), "-p", KEY_PASSPHRASE),
    )
    assert code == 0, out
    assert "<hostname>interop-dev</hostname>" in out


def test_console_wrong_password_refused(dev: Device) -> None:
    code, out = console(dev, "--get-config", auth=("-u", "admin", "-p", "wrong"))
    assert code != 0
    assert "<hostname>" not in out


def test_console_invalid_edit_reports_rpc_error(dev: Device, tmp_path: Path) -> None:
    before = console(dev, "--get-config")[1]
    edit = tmp_path / "bad.xml"
    edit.write_text(f'<system xmlns="{SYSTEM_NS}"><hostname>{"x" * 300}</hostname></system>')
    _, out = console(dev, "--edit-config", str(edit))
    assert "<error-tag>invalid-value</error-tag>" in out, out
    assert console(dev, "--get-config")[1] == before


def test_console_xpath_wildcards(dev: Device) -> None:
    """Issue 9 item 11: ``--get -x /*`` was an internal error."""
    for args in (("--get", "-x", "/*"), ("--get-config", "-x", "//*")):
        code, out = console(dev, *args)
        assert code == 0, out
        assert "<hostname>interop-dev</hostname>" in out
        assert "rpc-error" not in out


def test_console_operations_without_namespace(dev: Device, tmp_path: Path) -> None:
    """Issue 9 item 12: ``--rpc`` sends the file's element as the operation, here in no
    namespace; the raw mode sends whole ``<rpc>`` messages as written."""
    (tmp_path / "get.xml").write_text("<get-config><source><running/></source></get-config>")
    code, out = console(dev, "--rpc", str(tmp_path / "get.xml"))
    assert code == 0, out
    assert "<hostname>interop-dev</hostname>" in out
    raw = (
        '<rpc message-id="7" xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">'
        '<get xmlns=""/></rpc>]]>]]>'
    )
    (tmp_path / "raw.xml").write_text(raw)
    code, out = console(dev, str(tmp_path / "raw.xml"))
    assert code == 0, out
    assert "<hostname>interop-dev</hostname>" in out and "yang-library" in out


# -- yangcli (yuma123) -----------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _tidy_yuma_home() -> Iterator[None]:
    """yangcli keeps a ``~/.yuma/tmp`` in the account's home whatever HOME says: remove what
    these tests created."""
    folder = Path(pwd.getpwuid(os.getuid()).pw_dir) / ".yuma"
    had_folder, had_tmp = folder.exists(), (folder / "tmp").exists()
    yield
    if not had_tmp:
        shutil.rmtree(folder / "tmp", ignore_errors=True)
    if not had_folder:
        with contextlib.suppress(OSError):
            folder.rmdir()


def yangcli(dev: Device, home: Path, *args: str) -> str:
    binary = shutil.which("yangcli")
    assert binary is not None, "yangcli missing: run scripts/setup-system.sh (Debian yangcli)"
    result = subprocess.run(
        [
            binary,
            "--server=127.0.0.1",
            f"--ncport={dev.port}",
            "--user=admin",
            f"--password={PASSWORD}",
            "--batch-mode",
            "--timeout=20",
            "--display-mode=xml",
            f"--home={home}",
            "--autoaliases=false",  # no aliases, user variables or history files
            "--autouservars=false",
            "--autohistory=false",
            *args,
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},  # yuma keeps ~/.yuma state
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_yangcli_hello(dev: Device, tmp_path: Path) -> None:
    out = yangcli(dev, tmp_path, "--run-command=pwd")  # a local command: only the hello
    assert "Protocol version set to: RFC 6241 (base:1.1)" in out
    assert "zerotouch-bootstrap@2026-12-05" in out
    assert "ietf-system@2014-08-06" in out


def test_yangcli_get_config(dev: Device, tmp_path: Path) -> None:
    out = yangcli(dev, tmp_path, "--run-command=sget-config /system source=running")
    assert "RPC Data Reply" in out
    assert "<hostname>interop-dev</hostname>" in out


def test_yangcli_edit_config(dev: Device, tmp_path: Path) -> None:
    script = tmp_path / "edit.script"
    script.write_text(
        "merge /system/contact value=yangcli-operator\nsget-config /system source=running\n"
    )
    out = yangcli(dev, tmp_path, f"--run-script={script}")
    assert "RPC OK Reply" in out
    assert "<contact>yangcli-operator</contact>" in out
    code, console_out = console(dev, "--get-config")
    assert code == 0
    assert "<contact>yangcli-operator</contact>" in console_out  # seen by another client


def test_yangcli_create_existing_is_data_exists(dev: Device, tmp_path: Path) -> None:
    out = yangcli(dev, tmp_path, "--run-command=create /system/hostname value=another")
    assert "<error-tag>data-exists</error-tag>" in out
    assert "/sys:system/sys:hostname" in out
    assert "<hostname>interop-dev</hostname>" in console(dev, "--get-config")[1]


# -- RESTCONF on the same datastores ------------------------------------------------------


def test_netconf_and_restconf_share_the_datastores(dev: Device, tmp_path: Path) -> None:
    edit = tmp_path / "edit.xml"
    edit.write_text(f'<system xmlns="{SYSTEM_NS}"><contact>set-over-netconf</contact></system>')
    assert console(dev, "--edit-config", str(edit))[0] == 0
    code, body = dev.curl("GET", "/ietf-system:system/contact")
    assert code == 200, body
    assert json.loads(body) == {"ietf-system:contact": "set-over-netconf"}
    patch = json.dumps({"ietf-system:system": {"contact": "set-over-restconf"}})
    assert dev.curl("PATCH", "/ietf-system:system", patch)[0] == 204
    assert "<contact>set-over-restconf</contact>" in console(dev, "--get-config")[1]


def test_netconf_lock_blocks_restconf_writes(dev: Device) -> None:
    patch = json.dumps({"ietf-system:system": {"location": "while-locked"}})
    with manager.connect(
        host="127.0.0.1",
        port=dev.port,
        username="admin",
        password=PASSWORD,
        hostkey_verify=False,
        look_for_keys=False,
        allow_agent=False,
        timeout=30,
    ) as session:
        session.lock("running")
        code, body = dev.curl("PATCH", "/ietf-system:system", patch)
        assert code == 409, body
        assert json.loads(body)["ietf-restconf:errors"]["error"][0]["error-tag"] == "in-use"
        session.unlock("running")
    assert dev.curl("PATCH", "/ietf-system:system", patch)[0] == 204
    assert "<location>while-locked</location>" in console(dev, "--get-config")[1]

"""ncclient against ``zerotouch device run`` (a real process) over SSH and TLS on 127.0.0.1.

RFC 6241 operations, subtree filters (§6), edit-config variants (§7.2), locks across two
sessions (§7.5), copy-config to startup and a restart, RFC 7589 mutual TLS with refusals.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest
from lxml import etree
from ncclient import manager
from ncclient.operations.rpc import RPCError
from ncclient.transport.errors import AuthenticationError

from tests.support.device_pki import DevicePki, make_device_pki
from tests.support.device_process import DeviceProcess, device, write_device_config
from tests.support.ncclient_tls import ended
from zerotouch_plugin.config import hash_password
from zerotouch_plugin.device.datastore import STARTUP_FILE
from zerotouch_plugin.services.certfiles import write_certs, write_key

IF_NS = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
SYS_NS = "urn:ietf:params:xml:ns:yang:ietf-system"
NC_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
LISTEN = {"netconf-ssh": "127.0.0.1:0", "netconf-tls": "127.0.0.1:0"}


def _iface(name: str, extra: str = "", op: str = "") -> str:
    attr = f' nc:operation="{op}"' if op else ""
    return (
        f'<config xmlns:nc="{NC_NS}"><interfaces xmlns="{IF_NS}" '
        'xmlns:ianaift="urn:ietf:params:xml:ns:yang:iana-if-type">'
        f"<interface{attr}><name>{name}</name><type>ianaift:ethernetCsmacd</type>{extra}"
        "</interface></interfaces></config>"
    )


def _hostname(name: str) -> str:
    return f'<config><system xmlns="{SYS_NS}"><hostname>{name}</hostname></system></config>'


def _data(reply: object) -> etree._Element:
    return etree.fromstring(reply.data_xml.encode())  # type: ignore[attr-defined]


def _names(reply: object) -> list[str]:
    return [str(e.text) for e in _data(reply).iter(f"{{{IF_NS}}}name")]


@pytest.fixture(scope="module")
def pki() -> DevicePki:
    return make_device_pki()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, pki: DevicePki) -> Path:
    path = tmp_path_factory.mktemp("device")
    write_certs(path / "ldevid.pem", [pki.server.cert, *pki.server.chain])
    write_key(path / "ldevid.key", pki.server.key)
    write_certs(path / "domain-ca.pem", [pki.ca.cert])
    key = asyncssh.generate_private_key("ssh-ed25519")
    (path / "ops_key").write_bytes(key.export_private_key("openssh"))
    (path / "ops_key").chmod(0o600)
    public = key.export_public_key("openssh").decode().strip()
    write_device_config(
        path,
        f"""
[[users]]
name = "admin"
password = "{hash_password("secret", salt=b"fixed-test-salt!", iterations=10_000)}"

[[users]]
name = "ops"
authorized_keys = ["{public}"]

[[cert_to_name]]
fingerprint = "*"
map_type = "common-name"

[netconf_limits]
xpath_budget = 0.5
""",
    )
    return path


@pytest.fixture(scope="module")
def running(folder: Path) -> Iterator[DeviceProcess]:
    with device(folder, LISTEN) as process:
        yield process


def _ssh(process: DeviceProcess, **kwargs: object) -> manager.Manager:
    options: dict[str, object] = {"username": "admin", "password": "secret"}
    options.update(kwargs)
    return manager.connect(
        host="127.0.0.1",
        port=process.ports["netconf-ssh"],
        hostkey_verify=False,
        allow_agent=False,
        look_for_keys=False,
        timeout=15,
        **options,
    )


def _tls(process: DeviceProcess, pki_files: dict[str, Path], prefix: str = "") -> manager.Manager:
    return manager.connect_tls(
        host="127.0.0.1",
        port=process.ports["netconf-tls"],
        certfile=str(pki_files[f"{prefix}cert"]),
        keyfile=str(pki_files[f"{prefix}key"]),
        ca_certs=str(pki_files["ca"]),
        protocol=ssl.PROTOCOL_TLS_CLIENT,
        timeout=15,
    )


@dataclass(frozen=True)
class Connect:
    """New ncclient sessions to the running device over SSH, or over TLS (RFC 7589)."""

    transport: str
    open: Callable[[], manager.Manager]  # a session the device ends (kill-session)

    def __call__(self) -> AbstractContextManager[manager.Manager]:
        """A session ended by close-session on the way out; over TLS after the device ended it
        (tests/support/ncclient_tls.py: ncclient's own close races its reader thread)."""
        session = self.open()
        return ended(session, 15) if self.transport == "tls" else session


@pytest.fixture(params=["ssh", "tls"])
def connect(
    request: pytest.FixtureRequest, running: DeviceProcess, pki: DevicePki, tmp_path: Path
) -> Connect:
    if request.param == "ssh":
        return Connect("ssh", lambda: _ssh(running))
    files = pki.write(tmp_path / "pki")
    return Connect("tls", lambda: _tls(running, files))


def test_hello_advertises_base_11_and_yang_library(running: DeviceProcess) -> None:
    with _ssh(running) as m:
        caps = list(m.server_capabilities)
        assert "urn:ietf:params:netconf:base:1.1" in caps
        assert any(
            c.startswith("urn:ietf:params:netconf:capability:yang-library:1.1") for c in caps
        )
        assert any("module=ietf-system" in c and "timezone-name" in c for c in caps)
        assert m.session_id is not None


def test_edit_config_variants_and_subtree_filters(connect: Connect) -> None:
    with connect() as m:
        m.edit_config(target="running", config=_iface("ge0", "<description>up</description>"))
        m.edit_config(target="running", config=_iface("ge1"))
        with pytest.raises(RPCError) as err:
            m.edit_config(target="running", config=_iface("ge0", op="create"))
        assert err.value.tag == "data-exists"
        m.edit_config(target="running", config=_iface("ge0", op="replace"))
        flt = f'<interfaces xmlns="{IF_NS}"><interface><name>ge0</name></interface></interfaces>'
        reply = m.get_config(source="running", filter=("subtree", flt))
        assert _names(reply) == ["ge0"]
        assert _data(reply).find(f".//{{{IF_NS}}}description") is None  # replaced
        # selection node: only the names of every interface
        sel = f'<interfaces xmlns="{IF_NS}"><interface><name/></interface></interfaces>'
        reply = m.get_config(source="running", filter=("subtree", sel))
        assert {"ge0", "ge1"} <= set(_names(reply))
        assert _data(reply).find(f".//{{{IF_NS}}}type") is None
        # content match nodes are ANDed: no entry is ge0 and disabled
        both = (
            f'<interfaces xmlns="{IF_NS}"><interface><name>ge0</name>'
            "<enabled>false</enabled></interface></interfaces>"
        )
        assert _names(m.get_config(source="running", filter=("subtree", both))) == []
        # another namespace selects nothing of ietf-interfaces
        other = '<interfaces xmlns="urn:example:other"/>'
        assert len(_data(m.get_config(source="running", filter=("subtree", other)))) == 0
        m.edit_config(target="running", config=_iface("ge1", op="delete"))
        with pytest.raises(RPCError) as err:
            m.edit_config(target="running", config=_iface("ge1", op="delete"))
        assert err.value.tag == "data-missing"
        m.edit_config(target="running", config=_iface("ge1", op="remove"))
        assert "ge1" not in _names(m.get_config(source="running"))
        m.edit_config(target="running", config=_iface("ge0", op="delete"))


def test_xpath_filter(running: DeviceProcess) -> None:
    with _ssh(running) as m:
        m.edit_config(target="running", config=_iface("xp0", "<description>x</description>"))
        select = "/if:interfaces/if:interface[if:name='xp0']/if:description"
        reply = m.get_config(source="running", filter=("xpath", ({"if": IF_NS}, select)))
        entry = _data(reply).find(f".//{{{IF_NS}}}interface")
        assert entry is not None
        assert [etree.QName(c).localname for c in entry] == ["name", "description"]
        with pytest.raises(RPCError) as err:
            m.get_config(source="running", filter=("xpath", ({"if": IF_NS}, "/if:interfaces[")))
        assert err.value.tag == "invalid-value"
        m.edit_config(target="running", config=_iface("xp0", op="delete"))


@pytest.mark.parametrize("select", ["/*", "//*", "/*/*", "/*[1] | //if:name"])
def test_xpath_wildcards_give_data(connect: Connect, select: str) -> None:
    """Issue 9 item 11: ``m.get(filter=("xpath", "/*"))`` was an internal error (KeyError)."""
    with connect() as m:
        m.edit_config(target="running", config=_iface("wc0"))
        flt = ("xpath", ({"if": IF_NS}, select))
        data = _data(m.get(filter=flt))
        assert len(data) and data.find(f".//{{{IF_NS}}}interface") is not None
        assert "wc0" in _names(m.get_config(source="running", filter=flt))
        with pytest.raises(RPCError) as err:
            m.get(filter=("xpath", "/*[1 div 0]"))
        assert err.value.tag == "operation-failed"
        assert "internal error" not in str(err.value.message)
        m.edit_config(target="running", config=_iface("wc0", op="delete"))


def test_costly_xpath_filters_are_bounded(connect: Connect, running: DeviceProcess) -> None:
    """Issue 11 item 1: ``//*[//*[//*[1]]]`` pinned the device at 100 % CPU for good. It is
    refused at once (resource-denied); ``//*[//*]`` (about 2 s here) is stopped at the
    configured budget (0.5 s) in the XPath worker, while another session is served, and the
    device goes on answering filters."""
    with connect() as m, _ssh(running) as other:
        m.get(filter=("xpath", "/*"))  # the worker is started: its start is not the budget's
        started = time.monotonic()
        with pytest.raises(RPCError) as err:
            m.get(filter=("xpath", "//*[//*[//*[1]]]"))
        assert time.monotonic() - started < 2
        assert err.value.tag == "resource-denied"
        assert "nests 3 tree-wide paths" in str(err.value.message)
        failure: list[RPCError] = []

        def costly() -> None:
            try:
                m.get(filter=("xpath", "//*[//*]"))
            except RPCError as exc:
                failure.append(exc)

        worker = threading.Thread(target=costly)
        started = time.monotonic()
        worker.start()
        time.sleep(0.2)
        answered = time.monotonic()
        assert _data(other.get_config(source="running")) is not None
        assert time.monotonic() - answered < 0.5  # ncclient polls replies every 0.1 s
        worker.join(10)
        assert not worker.is_alive()
        assert time.monotonic() - started < 3
        assert failure and failure[0].tag == "resource-denied", failure
        assert "budget of 0.5 s" in str(failure[0].message)
        flt = ("xpath", ({"sys": SYS_NS}, "/sys:system"))
        assert _data(m.get_config(source="running", filter=flt)) is not None


def test_dispatch_of_operations_without_namespace(connect: Connect) -> None:
    """Issue 9 item 12: ``dispatch`` of an element built without namespace (ncclient's and
    Ansible netconf_rpc's examples) runs the base operation."""
    with connect() as m:
        reply = m.dispatch(etree.Element("get"))
        assert (
            reply.ok and etree.fromstring(reply.xml.encode()).find(f"{{{NC_NS}}}data") is not None
        )
        reply = m.dispatch(etree.Element("get-config"), source="running")
        assert reply.ok
        for op in ("lock", "unlock"):
            element = etree.fromstring(f"<{op}><target><running/></target></{op}>")
            assert m.dispatch(element).ok
        copy = "<copy-config><target><startup/></target><source><running/></source></copy-config>"
        assert m.dispatch(etree.fromstring(copy)).ok


def test_invalid_edit_reports_path_and_changes_nothing(connect: Connect, folder: Path) -> None:
    with connect() as m:
        m.edit_config(target="running", config=_hostname("good"))
        m.copy_config(source="running", target="startup")
        before = m.get_config(source="running").data_xml
        startup_file = (folder / STARTUP_FILE).read_bytes()
        with pytest.raises(RPCError) as err:
            m.edit_config(target="running", config=_hostname("bad..name"))
        assert err.value.tag == "invalid-value"
        assert err.value.path is not None and "hostname" in err.value.path
        with pytest.raises(RPCError) as err:
            m.edit_config(target="running", config=_iface("x", "<mtu>9000</mtu>"))
        assert err.value.tag == "unknown-element"  # no such leaf in ietf-interfaces
        assert err.value.info is not None and "<bad-element>mtu</bad-element>" in err.value.info
        m.edit_config(target="running", config=_hostname("tested"), test_option="test-only")
        assert m.get_config(source="running").data_xml == before
        assert (folder / STARTUP_FILE).read_bytes() == startup_file  # byte-identical
        m.validate(source="running")


@pytest.mark.parametrize("option", ["rollback-on-error", "stop-on-error", "continue-on-error"])
def test_error_option_edits_are_all_or_nothing(running: DeviceProcess, option: str) -> None:
    """A valid hostname and an invalid interface in one edit: whatever the error-option, the
    edit is refused whole (docs/cli/device.md: edits are all-or-nothing) and running is
    unchanged."""
    with _ssh(running) as m:
        m.edit_config(target="running", config=_hostname("before-error"))
        before = m.get_config(source="running").data_xml
        mixed = (
            f'<config><system xmlns="{SYS_NS}"><hostname>after-error</hostname></system>'
            f'<interfaces xmlns="{IF_NS}"><interface><name>bad</name><mtu>1</mtu></interface>'
            "</interfaces></config>"
        )
        with pytest.raises(RPCError) as err:
            m.edit_config(target="running", config=mixed, error_option=option)
        assert err.value.tag == "unknown-element"
        assert m.get_config(source="running").data_xml == before


def test_default_operation_none_and_replace(running: DeviceProcess) -> None:
    with _ssh(running) as m:
        m.edit_config(target="running", config=_iface("nn0"))
        m.edit_config(
            target="running",
            config=_iface("nn0", "<description>kept out</description>"),
            default_operation="none",
        )
        flt = f'<interfaces xmlns="{IF_NS}"><interface><name>nn0</name></interface></interfaces>'
        reply = m.get_config(source="running", filter=("subtree", flt))
        assert _data(reply).find(f".//{{{IF_NS}}}description") is None
        m.edit_config(target="running", config=_hostname("only"), default_operation="replace")
        data = _data(m.get_config(source="running"))
        assert data.find(f".//{{{IF_NS}}}interface") is None  # whole datastore replaced
        assert data.findtext(f".//{{{SYS_NS}}}hostname") == "only"


def test_locks_across_two_sessions_and_kill_session(
    connect: Connect, running: DeviceProcess
) -> None:
    """Session a over the transport under test, b over SSH: locks hold across sessions
    and across transports (RFC 6241 §7.5, §7.9)."""
    a = connect.open()  # ended by b's kill-session
    with _ssh(running) as b:
        a.lock(target="running")
        with pytest.raises(RPCError) as err:
            b.lock(target="running")
        assert err.value.tag == "lock-denied"
        assert str(a.session_id) in etree.tostring(err.value.xml).decode()
        with pytest.raises(RPCError) as err:
            b.edit_config(target="running", config=_hostname("blocked"))
        assert err.value.tag == "in-use"
        with pytest.raises(RPCError) as err:
            b.unlock(target="running")
        assert err.value.tag == "operation-failed"
        a.edit_config(target="running", config=_hostname("holder"))
        b.kill_session(session_id=str(a.session_id))  # releases a's lock (RFC 6241 §7.9)
        deadline = time.monotonic() + 10
        while a.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not a.connected
        b.lock(target="running")
        b.edit_config(target="running", config=_hostname("after-kill"))
        b.unlock(target="running")


def test_get_returns_state_and_yang_library(connect: Connect) -> None:
    with connect() as m:
        flt = (
            '<yang-library xmlns="urn:ietf:params:xml:ns:yang:ietf-yang-library">'
            "<module-set><module><name>ietf-system</name></module></module-set></yang-library>"
        )
        data = _data(m.get(filter=("subtree", flt)))
        ns = "urn:ietf:params:xml:ns:yang:ietf-yang-library"
        assert [e.text for e in data.iter(f"{{{ns}}}name") if e.text == "ietf-system"]
        assert data.findtext(f".//{{{ns}}}revision") == "2014-08-06"
        schema = m.get_schema("ietf-interfaces")
        assert "module ietf-interfaces" in schema.data


def test_public_key_and_wrong_password(running: DeviceProcess, folder: Path) -> None:
    with _ssh(running, username="ops", password=None, key_filename=str(folder / "ops_key")) as m:
        assert _data(m.get_config(source="running")) is not None
    with pytest.raises(AuthenticationError):
        _ssh(running, password="wrong")


def test_tls_mutual_auth_and_refusals(
    running: DeviceProcess, pki: DevicePki, tmp_path: Path
) -> None:
    files = pki.write(tmp_path)
    with ended(_tls(running, files), 15) as m:
        m.edit_config(target="running", config=_hostname("via-tls"))
        data = _data(m.get_config(source="running"))
        assert data.findtext(f".//{{{SYS_NS}}}hostname") == "via-tls"
    with pytest.raises(Exception):  # noqa: B017 - ncclient raises several types
        _tls(running, files, prefix="stranger-")
    ctx = ssl.create_default_context(cafile=str(files["ca"]))
    with (
        socket.create_connection(("127.0.0.1", running.ports["netconf-tls"]), timeout=10) as raw,
        pytest.raises((ssl.SSLError, ConnectionError)),
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"<hello/>]]>]]>")
        assert tls.recv(100) == b""  # server closes: no client certificate
        raise ConnectionError("closed")


def test_notification_on_config_change(running: DeviceProcess) -> None:
    with _ssh(running) as listener, _ssh(running) as writer:
        listener.create_subscription()
        writer.edit_config(target="running", config=_hostname("notified"))
        note = listener.take_notification(timeout=10)
        assert note is not None
        change = etree.fromstring(note.notification_xml.encode())[1]
        ns = "urn:ietf:params:xml:ns:yang:ietf-netconf-notifications"
        assert change.tag == f"{{{ns}}}netconf-config-change"
        assert change.findtext(f"{{{ns}}}datastore") == "running"


@pytest.mark.parametrize("transport", ["ssh", "tls"])
def test_copy_config_to_startup_survives_restart(
    folder: Path, tmp_path: Path, pki: DevicePki, transport: str
) -> None:
    for name in ("device.toml", "ldevid.pem", "ldevid.key", "domain-ca.pem"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    (tmp_path / "ldevid.key").chmod(0o600)
    files = pki.write(tmp_path / "pki")

    def session(process: DeviceProcess) -> AbstractContextManager[manager.Manager]:
        return _ssh(process) if transport == "ssh" else ended(_tls(process, files), 15)

    with device(tmp_path, LISTEN) as first, session(first) as m:
        m.edit_config(target="running", config=_hostname("persisted"))
        m.edit_config(target="running", config=_iface("st0"))
        m.copy_config(source="running", target="startup")
        m.edit_config(target="running", config=_hostname("not-saved"))
    host_key = (tmp_path / "ssh_host_ed25519_key").read_bytes()
    with device(tmp_path, LISTEN) as again, session(again) as m:
        data = _data(m.get_config(source="running"))
        assert data.findtext(f".//{{{SYS_NS}}}hostname") == "persisted"
        assert "st0" in _names(m.get_config(source="startup"))
        # and back: startup -> running undoes an unsaved change
        m.edit_config(target="running", config=_hostname("unsaved"))
        m.copy_config(source="startup", target="running")
        data = _data(m.get_config(source="running"))
        assert data.findtext(f".//{{{SYS_NS}}}hostname") == "persisted"
        m.delete_config(target="startup")
        assert len(_data(m.get_config(source="startup"))) == 0
        with pytest.raises(RPCError):
            m.delete_config(target="running")
        m.copy_config(source="running", target="startup")
        assert "st0" in _names(m.get_config(source="startup"))
    assert (tmp_path / "ssh_host_ed25519_key").read_bytes() == host_key  # host key persisted


def test_listeners_bind_only_the_address_given(folder: Path, tmp_path: Path) -> None:
    """Every listener on 127.0.0.2 (loopback): reachable there, refused on 127.0.0.1."""
    for name in ("device.toml", "ldevid.pem", "ldevid.key", "domain-ca.pem"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    (tmp_path / "ldevid.key").chmod(0o600)
    listeners = {
        "netconf-ssh": "127.0.0.2:0",
        "netconf-tls": "127.0.0.2:0",
        "restconf": "127.0.0.2:0",
    }
    with device(tmp_path, listeners) as process:
        assert set(process.ports) == set(listeners)
        for port in process.ports.values():
            socket.create_connection(("127.0.0.2", port), timeout=5).close()
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=5)

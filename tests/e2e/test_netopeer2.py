"""netopeer2 on sysrepo as a second host of the pledge agent (tests/support/netopeer2.py)."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography import x509
from ncclient import manager
from ncclient.operations.errors import OperationError
from ncclient.operations.rpc import RPCError
from ncclient.transport.errors import TransportError
from ncclient.xml_ import to_ele

from tests.e2e.test_brski_flow import Lab
from tests.e2e.test_device_agent import agent_lab
from tests.support.ncclient_tls import close_after_server, ended
from tests.support.netopeer2 import Netopeer2, netopeer2_server
from tests.support.processes import free_port, run_cli
from tests.support.waiting import wait_until
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.artifacts.signer import SigningIdentity
from zerotouch_plugin.artifacts.yang import yang_dir
from zerotouch_plugin.errors import Conflict
from zerotouch_plugin.roles.bootstrap import NOTIFICATION, BootstrapState
from zerotouch_plugin.services.sysrepo_host import SysrepoHost, install_modules

NETCONF_SERVER_NS = "urn:ietf:params:xml:ns:yang:ietf-netconf-server"


@pytest.fixture
def netopeer2() -> Iterator[Netopeer2]:
    """A running netopeer2-server with the agent's YANG module installed before its start."""
    with netopeer2_server(start=False) as server:
        assert server.isolated(install_modules)
        server.start()
        yield server


@dataclass(frozen=True)
class Login:
    """How a test logs in to a Netopeer2 over SSH (picklable, for ``isolated``)."""

    port: int
    user: str
    key: Path

    @classmethod
    def of(cls, server: Netopeer2) -> Login:
        return cls(server.ssh_port, server.user, server.ssh_key)

    def session(self) -> manager.Manager:
        return manager.connect(
            host="127.0.0.1",
            port=self.port,
            username=self.user,
            key_filename=str(self.key),
            hostkey_verify=False,
            look_for_keys=False,
            allow_agent=False,
            timeout=30,
        )


def test_the_fixture_serves_netconf_over_ssh_on_loopback_only(netopeer2: Netopeer2) -> None:
    with Login.of(netopeer2).session() as session:
        assert "urn:ietf:params:netconf:base:1.1" in session.server_capabilities
        # NETCONF 1.1 servers list their modules in the YANG library (RFC 8526), not as
        # capabilities.
        assert any(
            c.startswith("urn:ietf:params:netconf:capability:yang-library:1.1")
            for c in session.server_capabilities
        )
        reply = session.get_config(
            source="running",
            filter=("subtree", f'<netconf-server xmlns="{NETCONF_SERVER_NS}"/>'),
        )
    endpoints = reply.data.findall(f".//{{{NETCONF_SERVER_NS}}}endpoint")
    assert [e.findtext(f"{{{NETCONF_SERVER_NS}}}name") for e in endpoints] == ["test-ssh"]
    address = reply.data.findtext(f".//{{{NETCONF_SERVER_NS}}}local-address")
    assert address == "127.0.0.1"
    assert int(reply.data.findtext(f".//{{{NETCONF_SERVER_NS}}}local-port")) == netopeer2.ssh_port


# -- the plugin host on its own (no BRSKI yet) ------------------------------------------------

NOW = datetime.now(UTC)
T = TypeVar("T")
RESTART_RPC = "zerotouch-bootstrap:restart-bootstrap"
REFUSED = (OSError, TransportError, OperationError)  # connection refused, TLS handshake failed
IF_NS = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
BOOTSTRAP_NS = "urn:zerotouch:params:xml:ns:yang:zerotouch-bootstrap"
INTERFACE = f"""<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">
  <interfaces xmlns="{IF_NS}"><interface>
    <name>uplink0</name><description>set by a domain client</description>
    <type xmlns:ianaift="urn:ietf:params:xml:ns:yang:iana-if-type">ianaift:ethernetCsmacd</type>
  </interface></interfaces>
</config>"""


def tls_connect(
    port: int, client: certs.Identity, ca: x509.Certificate, folder: Path
) -> manager.Manager:
    """ncclient over TLS as ``client``, trusting ``ca`` for the device's certificate; to be
    ended by ``close_after_server`` (tests/support/ncclient_tls.py: ncclient's own close races
    its reader thread)."""
    folder.mkdir(exist_ok=True)
    (folder / "client.pem").write_bytes(certs.certs_pem([client.cert]) + certs.key_pem(client.key))
    (folder / "ca.pem").write_bytes(certs.certs_pem([ca]))
    return manager.connect_tls(
        host="127.0.0.1",
        port=port,
        certfile=str(folder / "client.pem"),
        ca_certs=str(folder / "ca.pem"),
        protocol=ssl.PROTOCOL_TLS_CLIENT,
        check_hostname=False,
        timeout=10,
    )


def tls_session(
    port: int, client: certs.Identity, ca: x509.Certificate, folder: Path
) -> AbstractContextManager[manager.Manager]:
    """``tls_connect``, ended by close-session and the server on the way out."""
    return ended(tls_connect(port, client, ca, folder), 10)


def presented(port: int, client: certs.Identity) -> x509.Certificate:
    """The certificate the TLS endpoint presents to a new handshake as ``client``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with tempfile.TemporaryDirectory() as folder:
        pem = Path(folder) / "client.pem"
        pem.write_bytes(certs.certs_pem([client.cert]) + certs.key_pem(client.key))
        context.load_cert_chain(pem)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def serve_and_ask(folder: Path, login: Login) -> tuple[Any, ...]:
    """In a child process: the host serves a state, an RPC and a notification; a NETCONF
    client of netopeer2 reads, calls (once refused by the agent) and receives them."""
    calls: list[dict[str, Any]] = []
    loop = asyncio.new_event_loop()
    host = SysrepoHost(folder, tls_port=free_port())

    async def restart(args: dict[str, Any]) -> dict[str, Any]:
        calls.append(args)
        if args.get("factory-reset") is not True:
            raise Conflict("the device is enrolled")
        return {"zerotouch-bootstrap:phase": "discovering"}

    async def emit() -> None:
        host.emit_event(NOTIFICATION, {"phase": "discovering", "time": "2026-12-05T08:00:00Z"})

    def client() -> tuple[Any, ...]:
        with login.session() as session:
            session.create_subscription()
            state = session.get(("subtree", f'<bootstrap xmlns="{BOOTSTRAP_NS}"/>'))
            reply = session.dispatch(
                to_ele(
                    f'<restart-bootstrap xmlns="{BOOTSTRAP_NS}"><factory-reset>true'
                    "</factory-reset></restart-bootstrap>"
                )
            )
            try:
                session.dispatch(to_ele(f'<restart-bootstrap xmlns="{BOOTSTRAP_NS}"/>'))
                refused = None
            except RPCError as exc:
                refused = (exc.tag, exc.message)
            asyncio.run_coroutine_threadsafe(emit(), loop).result(10)
            notifications = []  # netopeer2 also reports the RPC executions
            while (notification := session.take_notification(timeout=10)) is not None:
                notifications.append(notification.notification_xml)
                if "bootstrap-phase-change" in notification.notification_xml:
                    break
        return (
            state.data.findtext(f".//{{{BOOTSTRAP_NS}}}phase"),
            to_ele(reply.xml).findtext(f".//{{{BOOTSTRAP_NS}}}phase"),
            notifications[-1] if notifications else "",
            refused,
        )

    async def scenario() -> tuple[Any, ...]:
        await host.open()
        try:
            state = BootstrapState(history_size=8)
            state.agent_started(now=NOW)
            host.publish_state(state.to_yang())
            host.register_rpc(RESTART_RPC, restart)
            return await asyncio.to_thread(client)
        finally:
            await host.close()

    try:
        return (*loop.run_until_complete(scenario()), calls)
    finally:
        loop.close()


def test_the_host_serves_state_rpc_and_notification_through_netopeer2(
    netopeer2: Netopeer2, tmp_path: Path
) -> None:
    phase, answered, notification, refused, calls = netopeer2.isolated(
        serve_and_ask, tmp_path, Login.of(netopeer2)
    )
    assert phase == "factory-default"
    assert answered == "discovering"
    assert calls == [{"factory-reset": True}, {"factory-reset": False}]  # the YANG default
    assert refused is not None and refused[0] == "operation-failed"
    assert "the device is enrolled" in refused[1]
    assert "bootstrap-phase-change" in notification and "discovering" in notification


OLD_MODULE = Path(__file__).parent / "data" / "zerotouch-bootstrap@2026-11-26.yang"


def installed_revision(server: Netopeer2) -> str:
    """The revision of zerotouch-bootstrap that ``sysrepoctl -l`` lists."""
    rows = [r.split("|") for r in server.run("sysrepoctl", "-l").splitlines()]
    found = [r[1].strip() for r in rows if len(r) > 1 and r[0].strip() == "zerotouch-bootstrap"]
    assert len(found) == 1, found
    return found[0]


def serve_path(folder: Path, login: Login) -> str | None:
    """In a child process: the host serves the state of a device SZTP onboarded; what a
    NETCONF client of netopeer2 reads as its bootstrap-path."""
    loop = asyncio.new_event_loop()
    host = SysrepoHost(folder, tls_port=free_port())

    def client() -> str | None:
        with login.session() as session:
            state = session.get(("subtree", f'<bootstrap xmlns="{BOOTSTRAP_NS}"/>'))
        found = state.data.findtext(f".//{{{BOOTSTRAP_NS}}}bootstrap-path")
        return None if found is None else str(found)

    async def scenario() -> str | None:
        await host.open()
        try:
            state = BootstrapState(history_size=8)
            state.already_bootstrapped("https://sztp.example:8443", now=NOW)
            host.publish_state(state.to_yang())
            return await asyncio.to_thread(client)
        finally:
            await host.close()

    try:
        return loop.run_until_complete(scenario())
    finally:
        loop.close()


def test_install_modules_updates_an_older_revision(tmp_path: Path) -> None:
    """A device that has the module's first revision gets the current one from
    ``--install-modules``, and netopeer2 then serves the leaves only the new one has."""
    with netopeer2_server(start=False) as server:
        server.run("sysrepoctl", "-i", str(OLD_MODULE))
        assert installed_revision(server) == "2026-11-26"
        current = sorted(yang_dir().glob("zerotouch-bootstrap@*.yang"))[-1].stem.split("@")[1]
        assert current > "2026-11-26"
        out = server.cli("netopeer2-plugin", "--install-modules").split()
        assert out == ["zerotouch-bootstrap", "updated", "from", "revision", "2026-11-26",
                       "to", current]  # fmt: skip
        assert installed_revision(server) == current
        again = server.cli("netopeer2-plugin", "--install-modules").split()
        assert again == ["zerotouch-bootstrap", "already", "installed"]
        server.start()
        assert server.isolated(serve_path, tmp_path, Login.of(server)) == "sztp"


# A device's own NACM: every group denied everything; the domain's rules must come first.
DENY_ALL = json.dumps(
    {
        "ietf-netconf-acm:nacm": {
            "rule-list": [
                {
                    "name": "device-deny-all",
                    "group": ["*"],
                    "rule": [{"name": "deny", "module-name": "*", "action": "deny"}],
                }
            ]
        }
    }
)
PKI_NAMES = ("domain", "ldevid", "renewed", "admin", "outsider")


def write_pki(folder: Path) -> None:
    """A domain CA, two LDevIDs it issued (the second a renewal), a domain client and a
    client of another domain, as PEM files (keys do not pickle into a child process)."""
    domain = certs.make_ca("domain CA", now=NOW)
    made = {
        "domain": domain,
        "ldevid": certs.issue_tls_server(domain, "device", hosts=["127.0.0.1"], now=NOW),
        "renewed": certs.issue_tls_server(domain, "device", hosts=["127.0.0.1"], now=NOW),
        "admin": certs.issue_client(domain, "zerotouch-registrar", now=NOW),
        "outsider": certs.issue_client(
            certs.make_ca("another domain CA", now=NOW), "zerotouch-registrar", now=NOW
        ),
    }
    folder.mkdir()
    for name, identity in made.items():
        (folder / f"{name}.pem").write_bytes(
            certs.certs_pem([identity.cert]) + certs.key_pem(identity.key)
        )


def read_pki(folder: Path) -> dict[str, certs.Identity]:
    return {
        name: certs.Identity(
            certs.load_certs(data := (folder / f"{name}.pem").read_bytes())[0],
            certs.load_private_key(data),
        )
        for name in PKI_NAMES
    }


def configure(
    port: int, client: certs.Identity, pki: dict[str, certs.Identity], folder: Path
) -> bool:
    with tls_session(port, client, pki["domain"].cert, folder / "client") as session:
        return bool(session.edit_config(target="running", config=INTERFACE).ok)


def install_and_renew(folder: Path, port: int) -> None:
    """In a child process: TLS refused before the identity, open to the domain's clients
    only once installed; a renewal keeps the open session and is presented to new ones."""
    pki = read_pki(folder / "pki")

    async def scenario() -> None:
        host = SysrepoHost(folder, tls_port=port)
        await host.open()
        try:
            assert host.installed_identity() is None and host.management_ports() == {}
            with pytest.raises(REFUSED):
                await asyncio.to_thread(configure, port, pki["admin"], pki, folder)
            await host.install_identity(SigningIdentity.of(pki["ldevid"]), [pki["domain"].cert])
            assert await asyncio.to_thread(configure, port, pki["admin"], pki, folder)
            with pytest.raises(REFUSED):
                await asyncio.to_thread(configure, port, pki["outsider"], pki, folder)
            session = await asyncio.to_thread(
                tls_connect, port, pki["admin"], pki["domain"].cert, folder / "client"
            )
            try:
                renewed = SigningIdentity.of(pki["renewed"])
                await host.install_identity(renewed, [pki["domain"].cert])
                reply = await asyncio.to_thread(session.get_config, source="running")
                assert "set by a domain client" in reply.data_xml
            finally:
                await asyncio.to_thread(close_after_server, session, 10)
            assert await asyncio.to_thread(presented, port, pki["admin"]) == renewed.cert
        finally:
            await host.close()

    asyncio.run(scenario())


def restart_and_forget(folder: Path, port: int) -> None:
    """In a child process, after netopeer2 restarted from startup: a new host finds the
    renewed identity and the listener works; forget closes it again."""
    pki = read_pki(folder / "pki")

    async def scenario() -> None:
        host = SysrepoHost(folder, tls_port=port)
        await host.open()
        try:
            installed = host.installed_identity()
            assert installed is not None and installed.ldevid == pki["renewed"].cert
            assert installed.anchors == (pki["domain"].cert,)
            assert installed.signer is not None  # the key read back from the keystore
            assert certs.spki(installed.signer.public_key()) == certs.spki(pki["renewed"].cert)
            assert host.management_ports() == {"netconf-tls-port": port}
            assert await asyncio.to_thread(configure, port, pki["admin"], pki, folder)
            await host.forget_identity()
            assert host.installed_identity() is None and host.management_ports() == {}
            with pytest.raises(REFUSED):
                await asyncio.to_thread(configure, port, pki["admin"], pki, folder)
        finally:
            await host.close()

    asyncio.run(scenario())


def test_the_identity_opens_a_tls_listener_for_the_domain_only_and_survives_restart(
    netopeer2: Netopeer2, tmp_path: Path
) -> None:
    write_pki(tmp_path / "pki")
    port = free_port()
    netopeer2.run("sysrepocfg", "--edit", "-d", "running", "-f", "json", "-m",
                  "ietf-netconf-acm", stdin=DENY_ALL)  # fmt: skip
    netopeer2.isolated(install_and_renew, tmp_path, port)
    startup = netopeer2.run("sysrepocfg", "-X", "-d", "startup", "-m", "ietf-netconf-server")
    assert "zerotouch-tls" in startup and "test-ssh" in startup
    netopeer2.restart()  # running is rebuilt from startup
    netopeer2.isolated(restart_and_forget, tmp_path, port)
    startup = netopeer2.run("sysrepocfg", "-X", "-d", "startup", "-m", "ietf-netconf-server")
    assert "zerotouch-tls" not in startup and "test-ssh" in startup
    interfaces = netopeer2.run("sysrepocfg", "-X", "-d", "running", "-m", "ietf-interfaces")
    assert "set by a domain client" in interfaces


# -- a netopeer2 device bootstraps with BRSKI ----------------------------------------------------


def day0_interfaces(description: str) -> str:
    return json.dumps(
        {
            "ietf-interfaces:interfaces": {
                "interface": [
                    {
                        "name": "uplink0",
                        "type": "iana-if-type:ethernetCsmacd",
                        "description": description,
                        "enabled": True,
                    }
                ]
            }
        }
    )


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60) -> T:
    """``wait_until`` every 0.5 s: a probe opens a NETCONF session or reads a file."""
    return wait_until(what, probe, timeout, interval=0.5)


HANDOFF_SETTINGS = (
    "handoff_attempts = 60\nhandoff_backoff = 0.2\nhandoff_max_backoff = 0.5\n"
    "handoff_timeout = 10.0\nhandoff_poll = 1.0\n"
)
FAST_AGENT = "bootstrap_retry_delay = 0.3\nbootstrap_max_delay = 1.0\nbootstrap_timeout = 10.0\n"
LIFETIME = 20  # ldevid_lifetime_seconds of the renewal lab: renewals every ~10 s at 0.5


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with agent_lab(tmp_path_factory.mktemp("netopeer2"), HANDOFF_SETTINGS) as lab:
        yield lab


@pytest.fixture(scope="module")
def short_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    settings = f"ldevid_lifetime_seconds = {LIFETIME}\n"
    with agent_lab(tmp_path_factory.mktemp("netopeer2-renewal"), settings) as lab:
        yield lab


def nms_client(lab: Lab) -> tuple[certs.Identity, x509.Certificate]:
    """The operator's domain client certificate (``agent_lab``) and the domain CA."""
    nms = lab.root / "nms"
    client = certs.Identity(
        certs.load_certs((nms / "cert.pem").read_bytes())[0],
        certs.load_private_key((nms / "key.pem").read_bytes()),
    )
    return client, certs.load_certs((nms / "ca.pem").read_bytes())[0]


def bootstrap_state(server: Netopeer2) -> dict[str, Any]:
    """``/zerotouch-bootstrap:bootstrap`` as netopeer2's datastore serves it (the plugin's
    operational data), RFC 7951."""
    out = server.run("sysrepocfg", "-X", "-d", "operational", "-f", "json",
                     "-x", "/zerotouch-bootstrap:bootstrap")  # fmt: skip
    return dict(json.loads(out or "{}").get("zerotouch-bootstrap:bootstrap", {}))


def enrolled(server: Netopeer2) -> dict[str, Any] | None:
    state = bootstrap_state(server)
    return state if state.get("phase") == "enrolled" else None


@pytest.fixture
def vendor_netopeer2() -> Iterator[Netopeer2]:
    """netopeer2 set up as docs/netopeer2.md tells a vendor: the agent's module installed
    with ``zerotouch netopeer2-plugin --install-modules`` before netopeer2-server starts."""
    with netopeer2_server(start=False) as server:
        assert server.cli("netopeer2-plugin", "--install-modules").split() == [
            "zerotouch-bootstrap",
            "installed",
        ]
        server.start()
        yield server


def test_a_netopeer2_device_enrolls_and_is_configured_by_the_day0_handoff(
    lab: Lab, vendor_netopeer2: Netopeer2, tmp_path: Path
) -> None:
    """Enrollment through the real MASA and registrar, TLS refused before it and to another
    domain after, the day-0 hand-off read back over TLS, ``registrar devices`` showing the
    hand-off applied as for a reference device; then a factory reset by RPC and a new
    enrollment."""
    netopeer2 = vendor_netopeer2
    serial, folder = lab.pledge()
    (folder / "agent.toml").write_text(FAST_AGENT)
    (tmp_path / "day0.json").write_text(day0_interfaces("configured by the registrar"))
    run_cli("registrar", "day0", "--dir", lab.domain, "--serial", serial,
            "--file", tmp_path / "day0.json")  # fmt: skip
    ops_client, domain_ca = nms_client(lab)
    outsider = certs.issue_client(certs.make_ca("another domain", now=NOW), "ops", now=NOW)
    port = free_port()

    def read_interfaces(client: certs.Identity) -> str:
        with tls_session(port, client, domain_ca, tmp_path / "client") as session:
            return str(session.get_config(source="startup").data_xml)

    with pytest.raises(REFUSED):  # before enrollment nothing accepts TLS clients
        read_interfaces(ops_client)
    plugin = netopeer2.plugin("--dir", folder, "--registrar", lab.registrar_url,
                              "--netconf-tls", f"127.0.0.1:{port}")  # fmt: skip
    try:
        state = wait_for("phase enrolled", lambda: enrolled(netopeer2))
        assert state["bootstrap-path"] == "brski"

        def handoff() -> dict[str, Any] | None:
            record = lab.device(serial)
            done = record is not None and record["handoff"]["state"] in ("applied", "failed")
            return record if done else None

        record = wait_for("the day-0 hand-off", handoff)
        assert record["state"] == "enroll-confirmed", record
        assert record["handoff"]["state"] == "applied", record["handoff"]
        startup = read_interfaces(ops_client)
        assert "configured by the registrar" in startup
        with pytest.raises(REFUSED):
            read_interfaces(outsider)
        table = run_cli("registrar", "devices", "--dir", lab.domain).stdout
        assert any(row.startswith(serial) and " applied (" in row for row in table.splitlines())

        # factory reset over NETCONF/SSH (the recovery user): the identity goes, the agent
        # bootstraps again and netopeer2 presents a new LDevID
        first = presented(port, ops_client)
        with Login.of(netopeer2).session() as session:
            rpc = f'<restart-bootstrap xmlns="{BOOTSTRAP_NS}"><factory-reset>true</factory-reset>'
            reply = session.dispatch(to_ele(rpc + "</restart-bootstrap>"))
        assert to_ele(reply.xml).findtext(f".//{{{BOOTSTRAP_NS}}}phase") is not None

        def enrolled_again() -> dict[str, Any] | None:
            state = enrolled(netopeer2)
            events = [e.get("event") for e in (state or {}).get("event", [])]
            return state if "factory-reset" in events else None

        wait_for("enrolled again after the factory reset", enrolled_again)
        again = presented(port, ops_client)
        assert again != first and certs.serial_number_of(again) == serial
    finally:
        plugin.stop()
        plugin.log_path.unlink(missing_ok=True)


def test_a_netopeer2_device_renews_its_ldevid_twice_without_dropping_sessions(
    short_lab: Lab, vendor_netopeer2: Netopeer2, tmp_path: Path
) -> None:
    netopeer2 = vendor_netopeer2
    serial, folder = short_lab.pledge()
    (folder / "agent.toml").write_text(FAST_AGENT + "renew_fraction = 0.5\n")
    client, domain_ca = nms_client(short_lab)
    port = free_port()

    def renewed() -> list[str] | None:
        """The serials of the renewed LDevIDs once there are two (``ldevid-renewed``)."""
        events = bootstrap_state(netopeer2).get("event", [])
        serials = [str(e.get("detail")) for e in events if e.get("event") == "ldevid-renewed"]
        return serials if len(serials) >= 2 else None

    plugin = netopeer2.plugin("--dir", folder, "--registrar", short_lab.registrar_url,
                              "--netconf-tls", f"127.0.0.1:{port}")  # fmt: skip
    try:
        wait_for("phase enrolled", lambda: enrolled(netopeer2))
        first = presented(port, client)
        with tls_session(port, client, domain_ca, tmp_path / "client") as session:
            serials = wait_for("two renewals", renewed, timeout=4 * LIFETIME)
            # the session opened under the first LDevID still answers
            assert session.get(("subtree", f'<bootstrap xmlns="{BOOTSTRAP_NS}"/>')).ok
        latest = presented(port, client)
    finally:
        plugin.stop()
        plugin.log_path.unlink(missing_ok=True)
    assert len(set(serials)) == len(serials) >= 2
    assert format(first.serial_number, "x") not in serials
    assert format(latest.serial_number, "x") in serials
    assert latest.subject == first.subject and latest.public_key() != first.public_key()
    assert certs.serial_number_of(latest) == serial
    assert short_lab.state(serial) == "enroll-confirmed"

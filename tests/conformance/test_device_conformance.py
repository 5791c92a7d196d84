"""Standard tools against the device server: the conformance suite, device part.

The conformance suite plays other implementations and standard tools against zerotouch's
servers, the way deployments will meet them. Here the reference device runs as a real
process (``zerotouch device run``, NETCONF over SSH and TLS, RESTCONF) and is driven by
ncclient (including ``dispatch`` of an operation without a namespace, as its own examples
and Ansible's ``netconf_rpc`` send it), netconf-console, curl and ``openssl s_client``.

``CASES`` is the one table: for every interoperability item that concerns the device server
(listed below), what a tool sends and what it must get back (data, ``<ok/>``, an rpc-error
and its tag, an HTTP status, a refused connection) and, where the outcome is only visible
there, the line the device must log. Each item has its cases:

* 11: XPath filters (``/*``, ``//*``, ``/*/*``, predicates, unions, nonsense) on get and
  get-config give data or a proper rpc-error, never an internal error;
* 12: base operations in no namespace (ncclient ``dispatch``, netconf-console ``--rpc``, raw
  sessions over SSH and TLS) are accepted like those in the base namespace;
* 15: RESTCONF ``ietf-restconf-monitoring`` (§9.1) with the true capability URIs, in the
  YANG library; ``Accept-Patch`` on OPTIONS; ``WWW-Authenticate`` on 401; refused TLS
  handshakes logged as NETCONF/TLS logs them;
* 16: cert-to-name rules naming an intermediate CA or the root of the presented chain map
  the client over NETCONF/TLS and RESTCONF; a rule naming an unrelated CA maps nothing.

The PKI: trust anchors ``Root A`` and ``Root B``; ``alice`` is issued by ``Intermediate A``
(under Root A), ``bob`` by ``Intermediate B`` (under Root B), ``carol`` by ``Intermediate
C`` (under Root A); each presents its intermediate in the handshake. The rules name
Intermediate A, Root B and an unrelated CA, so alice maps only through her intermediate,
bob only through his root, and carol through nothing. ``stranger`` is issued by a CA that
no one trusts.
"""

from __future__ import annotations

import json
import re
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree
from ncclient import manager
from ncclient.operations.rpc import RPCError

from tests.support.device_process import DeviceProcess, start_device, write_device_config
from tests.support.ncclient_tls import ended
from zerotouch_plugin.artifacts.certs import (
    Identity,
    fingerprint,
    issue_client,
    issue_intermediate_ca,
    issue_tls_server,
    make_ca,
)
from zerotouch_plugin.services.certfiles import write_certs, write_key

NETCONF_CONSOLE = Path(sys.executable).parent / "netconf-console"
CURL = shutil.which("curl")
OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(
    CURL is None or OPENSSL is None, reason="curl or openssl missing: run scripts/setup-system.sh"
)

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
SYS = "urn:ietf:params:xml:ns:yang:ietf-system"
RCMON = "urn:ietf:params:xml:ns:yang:ietf-restconf-monitoring"
PREFIXES = {"if": IF, "sys": SYS}
PASSWORD = "conformance-pass"
CAPABILITIES = (
    "urn:ietf:params:restconf:capability:defaults:1.0?basic-mode=explicit",
    "urn:ietf:params:restconf:capability:depth:1.0",
    "urn:ietf:params:restconf:capability:with-defaults:1.0",
)
NOT_IMPLEMENTED = (  # RFC 8040 §9.1.1 URIs the server must not claim
    "urn:ietf:params:restconf:capability:fields:1.0",
    "urn:ietf:params:restconf:capability:filter:1.0",
    "urn:ietf:params:restconf:capability:replay:1.0",
)
HELLO = (
    f'<hello xmlns="{NC}"><capabilities><capability>urn:ietf:params:netconf:base:1.0'
    "</capability></capabilities></hello>]]>]]>"
)
BARE_GET = f'<rpc message-id="101" xmlns="{NC}"><get xmlns=""/></rpc>]]>]]>'
CLOSE = f'<rpc message-id="102" xmlns="{NC}"><close-session/></rpc>]]>]]>'


# -- the device under test -------------------------------------------------------------------


@dataclass
class Dut:
    process: DeviceProcess
    files: Path  # PEM files of the clients: ca.pem, <who>.pem (with its chain), <who>.key

    def port(self, listener: str) -> int:
        return self.process.ports[listener]

    def cert(self, who: str) -> tuple[str, str]:
        return str(self.files / f"{who}.pem"), str(self.files / f"{who}.key")


def _pki(folder: Path) -> tuple[Identity, list[Identity], dict[str, Identity], Identity]:
    """(device identity, trust anchors, clients by name, the unrelated CA); PEM files."""
    now = datetime.now(UTC) - timedelta(minutes=5)
    root_a, root_b = make_ca("Root A", now=now), make_ca("Root B", now=now)
    unrelated = make_ca("Unrelated CA", now=now)
    clients = {
        "alice": issue_client(issue_intermediate_ca(root_a, "Intermediate A", now=now), "alice",
                              now=now),
        "bob": issue_client(issue_intermediate_ca(root_b, "Intermediate B", now=now), "bob",
                            now=now),
        "carol": issue_client(issue_intermediate_ca(root_a, "Intermediate C", now=now), "carol",
                              now=now),
        "stranger": issue_client(unrelated, "stranger", now=now),
    }  # fmt: skip
    folder.mkdir()
    write_certs(folder / "ca.pem", [root_a.cert])
    for who, identity in clients.items():
        write_certs(folder / f"{who}.pem", [identity.cert, *identity.chain])
        write_key(folder / f"{who}.key", identity.key)
    device = issue_tls_server(root_a, "device", hosts=["127.0.0.1"], now=now)
    return device, [root_a, root_b], clients, unrelated


@pytest.fixture(scope="module")
def dut(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dut]:
    folder = tmp_path_factory.mktemp("device")
    device, anchors, clients, unrelated = _pki(folder.parent / f"{folder.name}-clients")
    write_certs(folder / "ldevid.pem", [device.cert, *device.chain])
    write_key(folder / "ldevid.key", device.key)
    write_certs(folder / "domain-ca.pem", [a.cert for a in anchors])
    rules = [
        (clients["alice"].chain[0], "via-intermediate"),  # Intermediate A
        (anchors[1].cert, "via-root"),  # Root B
        (unrelated.cert, "unrelated"),
    ]
    toml = f'[[users]]\nname = "admin"\npassword = "{PASSWORD}"\n'
    for cert, name in rules:
        toml += (
            f'\n[[cert_to_name]]\nfingerprint = "{fingerprint(cert)}"\n'
            f'map_type = "specified"\nname = "{name}"\n'
        )
    write_device_config(folder, toml)
    startup = {
        "ietf-system:system": {"hostname": "conformance"},
        "ietf-interfaces:interfaces": {
            "interface": [{"name": "eth0", "type": "iana-if-type:ethernetCsmacd"}]
        },
    }
    (folder / "startup.json").write_text(json.dumps(startup))
    listeners = {
        "netconf-ssh": "127.0.0.1:0",
        "netconf-tls": "127.0.0.1:0",
        "restconf": "127.0.0.1:0",
    }
    process = start_device(folder, listeners, verbose=True)  # INFO: sessions and their users
    try:
        yield Dut(process, folder.parent / f"{folder.name}-clients")
    finally:
        status = process.stop()
        log = process.log
        process.log_path.unlink(missing_ok=True)
        assert status == 0, f"device exited {status}:\n{log}"


# -- what a tool got ----------------------------------------------------------------------


@dataclass(frozen=True)
class Got:
    """A tool's outcome, reduced to what the table compares."""

    kind: str  # "data", "ok", "rpc-error", "http", "refused"
    code: str = ""  # the error-tag, or the HTTP status
    text: str = ""  # the reply (data, message, headers and body) for ``has``/``lacks``


Tool = Callable[[Dut], Got]


def _netconf_reply(xml: str) -> Got:
    root = etree.fromstring(xml.encode())
    error = root.find(f".//{{{NC}}}rpc-error")
    if error is not None:
        return Got("rpc-error", error.findtext(f"{{{NC}}}error-tag") or "", xml)
    if root.find(f".//{{{NC}}}data") is not None:
        return Got("data", text=xml)
    return Got("ok" if root.find(f".//{{{NC}}}ok") is not None else "?", text=xml)


def _ssh(dut: Dut) -> manager.Manager:
    return manager.connect(
        host="127.0.0.1", port=dut.port("netconf-ssh"), username="admin", password=PASSWORD,
        hostkey_verify=False, allow_agent=False, look_for_keys=False, timeout=30,
    )  # fmt: skip


def _tls(dut: Dut, who: str = "alice") -> manager.Manager:
    certfile, keyfile = dut.cert(who)
    return manager.connect_tls(
        host="127.0.0.1", port=dut.port("netconf-tls"), certfile=certfile, keyfile=keyfile,
        ca_certs=str(dut.files / "ca.pem"), protocol=ssl.PROTOCOL_TLS_CLIENT, timeout=30,
    )  # fmt: skip


def ncclient(transport: str, call: Callable[[manager.Manager], object], who: str = "") -> Tool:
    """One ncclient session over ``ssh`` or ``tls`` (as ``who``); the reply of ``call``."""

    def run(dut: Dut) -> Got:
        try:
            session = _ssh(dut) if transport == "ssh" else _tls(dut, who or "alice")
        except Exception as exc:  # ncclient raises several types for a refused session
            return Got("refused", text=f"{type(exc).__name__}: {exc}")
        # ncclient's own close of a TLS session races its reader thread (ncclient_tls.py)
        with session if transport == "ssh" else ended(session, 30) as m:
            try:
                reply = call(m)
            except RPCError as exc:
                return Got("rpc-error", exc.tag or "", str(exc.message))
            return _netconf_reply(reply.xml)  # type: ignore[attr-defined]

    return run


def xpath(op: str, select: str, prefixes: bool = False) -> Callable[[manager.Manager], object]:
    """get or get-config with an XPath filter, as ``m.get(filter=("xpath", select))``."""
    criteria: object = (PREFIXES, select) if prefixes else select
    if op == "get":
        return lambda m: m.get(filter=("xpath", criteria))
    return lambda m: m.get_config(source="running", filter=("xpath", criteria))


def bare(xml: str, **kwargs: str) -> Callable[[manager.Manager], object]:
    """``dispatch`` of an operation element built without a namespace."""
    return lambda m: m.dispatch(etree.fromstring(xml), **kwargs)


def netconf_console(*args: str, stdin_file: str = "", content: str = "") -> Tool:
    """netconf-console over SSH; ``content`` is written to the file named ``stdin_file``."""

    def run(dut: Dut) -> Got:
        extra = list(args)
        if stdin_file:
            path = dut.files / stdin_file
            path.write_text(content)
            extra.append(str(path))
        result = subprocess.run(
            [str(NETCONF_CONSOLE), "--host", "127.0.0.1", "--port", str(dut.port("netconf-ssh")),
             "-u", "admin", "-p", PASSWORD, *extra],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        out = result.stdout + result.stderr
        tag = re.search(r"<(?:\w+:)?error-tag>([^<]+)<", out)
        if tag:
            return Got("rpc-error", tag.group(1), out)
        if result.returncode != 0:
            return Got("refused", text=out)
        if re.search(r"<(?:\w+:)?data[ >/]", out):
            return Got("data", text=out)
        return Got("ok", text=out)

    return run


def curl(method: str, path: str, *, who: str | None = "alice", accept: str = "json") -> Tool:
    """curl with the client's certificate and chain (``who=None``: no certificate)."""

    def run(dut: Dut) -> Got:
        args = [str(CURL), "-sS", "-i", "-X", method, "--max-time", "20", "-w", "\n%{http_code}"]
        args += ["--cacert", str(dut.files / "ca.pem")]
        if who is not None:
            certfile, keyfile = dut.cert(who)
            args += ["--cert", certfile, "--key", keyfile]
        args += ["-H", f"Accept: application/yang-data+{accept}"]
        url = f"https://127.0.0.1:{dut.port('restconf')}{path}"
        result = subprocess.run(
            [*args, url], capture_output=True, text=True, timeout=60, check=False
        )
        out, _, code = result.stdout.rpartition("\n")
        if not code.strip() or code.strip() == "000":
            return Got("refused", text=result.stderr)
        return Got("http", code.strip(), out)

    return run


def s_client(listener: str, who: str, stdin: str = "") -> Tool:
    """``openssl s_client`` as ``who`` (a raw NETCONF session when ``stdin`` is given)."""

    def run(dut: Dut) -> Got:
        certfile, keyfile = dut.cert(who)
        result = subprocess.run(
            [str(OPENSSL), "s_client", "-connect", f"127.0.0.1:{dut.port(listener)}",
             "-CAfile", str(dut.files / "ca.pem"), "-cert", certfile, "-key", keyfile,
             "-cert_chain", certfile,  # -cert sends the first certificate only
             "-quiet", "-no_ign_eof" if not stdin else "-ign_eof"],
            input=stdin, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        replies = [m for m in result.stdout.split("]]>]]>") if "<rpc-reply" in m]
        if not replies:
            return Got("refused", text=result.stdout + result.stderr)
        return _netconf_reply(replies[0].strip())

    return run


# -- the table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """What ``tool`` does on behalf of an issue-9 item, and what it must get."""

    item: int
    does: str  # the test id: tool, transport, request
    tool: Tool
    kind: str  # Got.kind
    code: str = ""  # Got.code, when it matters
    has: tuple[str, ...] = ()  # in the reply
    lacks: tuple[str, ...] = ()  # not in the reply
    log: tuple[str, ...] = ()  # together in one new line of the device log


GET_SYSTEM_XML = "<get-config><source><running/></source></get-config>"
COPY_BARE = "<copy-config><target><startup/></target><source><running/></source></copy-config>"
STATE = "/restconf/data/ietf-restconf-monitoring:restconf-state"

CASES: list[Case] = [
    # 11: XPath filters give data or a proper rpc-error
    Case(11, "ncclient-ssh get xpath /*", ncclient("ssh", xpath("get", "/*")), "data",
         has=("<yang-library", "<restconf-state", "<hostname>conformance</hostname>")),
    Case(11, "ncclient-tls get-config xpath /*", ncclient("tls", xpath("get-config", "/*")),
         "data", has=("<hostname>conformance</hostname>", "<name>eth0</name>"),
         lacks=("<yang-library",)),
    Case(11, "ncclient-ssh get xpath //*", ncclient("ssh", xpath("get", "//*")), "data",
         has=("<netconf-state",)),
    Case(11, "ncclient-tls get xpath /*/*", ncclient("tls", xpath("get", "/*/*")), "data",
         has=("<capabilities>",)),
    Case(11, "ncclient-ssh get-config predicate and union",
         ncclient("ssh", xpath("get-config", "//if:interface[if:name='eth0']/if:type"
                               " | /sys:system/sys:hostname", prefixes=True)),
         "data", has=("<name>eth0</name>", "<hostname>conformance</hostname>")),
    Case(11, "ncclient-ssh get union with a number",
         ncclient("ssh", xpath("get", "/sys:system | 1", prefixes=True)), "rpc-error",
         "invalid-value", has=("wrong type",)),
    Case(11, "ncclient-ssh get-config unclosed predicate",
         ncclient("ssh", xpath("get-config", "/if:interfaces[", prefixes=True)), "rpc-error",
         "invalid-value"),
    Case(11, "ncclient-tls get predicate 1 div 0", ncclient("tls", xpath("get", "//*[1 div 0]")),
         "rpc-error", "operation-failed", has=("could not be evaluated",),
         lacks=("internal error",)),
    Case(11, "netconf-console get xpath /*", netconf_console("--get", "/*"), "data",
         has=("<hostname>conformance</hostname>",)),
    Case(11, "netconf-console get-config xpath //*", netconf_console("--get-config", "//*"),
         "data", has=("<hostname>conformance</hostname>",)),
    # 12: base operations without a namespace
    Case(12, "ncclient-ssh dispatch bare get", ncclient("ssh", bare("<get/>")), "data",
         has=("<yang-library",)),
    Case(12, "ncclient-tls dispatch bare get-config", ncclient("tls", bare(GET_SYSTEM_XML)),
         "data", has=("<hostname>conformance</hostname>",)),
    Case(12, "ncclient-ssh dispatch bare copy-config", ncclient("ssh", bare(COPY_BARE)), "ok"),
    Case(12, "ncclient-ssh dispatch bare lock and unlock",
         ncclient("ssh", lambda m: [bare(f"<{op}><target><running/></target></{op}>")(m)
                                    for op in ("lock", "unlock")][-1]), "ok"),
    Case(12, "ncclient-ssh dispatch bare non-base operation",
         ncclient("ssh", bare("<get-schema><identifier>ietf-system</identifier></get-schema>")),
         "rpc-error", "operation-not-supported"),  # RFC 6022's own namespace: not guessed
    Case(12, "netconf-console rpc bare get", netconf_console("--rpc", stdin_file="get.xml",
                                                             content="<get/>"),
         "data", has=("<yang-library",)),
    Case(12, "netconf-console raw session bare get",
         netconf_console(stdin_file="raw.xml", content=BARE_GET), "data",
         has=("<yang-library",)),
    Case(12, "openssl-s_client raw tls session bare get",
         s_client("netconf-tls", "alice", HELLO + BARE_GET + CLOSE), "data",
         has=("<yang-library",)),
    # 15: RESTCONF monitoring, OPTIONS, 401, refused handshakes
    Case(15, "curl get restconf-state json", curl("GET", STATE), "http", "200",
         has=CAPABILITIES, lacks=NOT_IMPLEMENTED),
    Case(15, "curl get restconf-state xml", curl("GET", STATE, accept="xml"), "http", "200",
         has=(f'<restconf-state xmlns="{RCMON}">', CAPABILITIES[0].replace("&", "&amp;"))),
    Case(15, "curl get yang-library lists the module",
         curl("GET", "/restconf/data/ietf-yang-library:yang-library"), "http", "200",
         has=('"ietf-restconf-monitoring"', '"2017-01-26"')),
    Case(15, "ncclient-ssh get restconf-state",
         ncclient("ssh", lambda m: m.get(filter=("subtree", f'<restconf-state xmlns="{RCMON}"/>'))),
         "data", has=CAPABILITIES[1:]),
    Case(15, "curl options data resource",
         curl("OPTIONS", "/restconf/data/ietf-system:system"), "http", "200",
         has=("Allow: GET, HEAD, PUT, PATCH, POST, DELETE, OPTIONS",
              "Accept-Patch: application/yang-data+json, application/yang-data+xml"),
         lacks=("yang-patch",)),
    Case(15, "curl 401 carries www-authenticate", curl("GET", "/restconf/data", who="carol"),
         "http", "401", has=('WWW-Authenticate: TLS-Client-Certificate realm="restconf"',
                             "access-denied")),
    Case(15, "curl without certificate", curl("GET", "/restconf/data", who=None), "refused",
         log=("restconf: refused 127.0.0.1:", "PEER_DID_NOT_RETURN_A_CERTIFICATE")),
    Case(15, "openssl-s_client restconf untrusted ca", s_client("restconf", "stranger"),
         "refused", log=("restconf: refused 127.0.0.1:", "CERTIFICATE_VERIFY_FAILED")),
    Case(15, "openssl-s_client netconf-tls untrusted ca", s_client("netconf-tls", "stranger"),
         "refused", log=("netconf-tls: refused 127.0.0.1:", "CERTIFICATE_VERIFY_FAILED")),
    # 16: cert-to-name over the whole chain
    Case(16, "ncclient-tls rule names the intermediate",
         ncclient("tls", xpath("get-config", "/sys:system", prefixes=True), who="alice"), "data",
         log=("netconf-tls user via-intermediate",)),
    Case(16, "ncclient-tls rule names the root",
         ncclient("tls", xpath("get-config", "/sys:system", prefixes=True), who="bob"), "data",
         log=("netconf-tls user via-root",)),
    Case(16, "ncclient-tls rule names an unrelated ca",
         ncclient("tls", lambda m: m.get_config(source="running"), who="carol"), "refused",
         log=("netconf-tls: refused", "no cert-to-name rule maps the client certificate")),
    Case(16, "curl rule names the intermediate",
         curl("GET", "/restconf/data/ietf-system:system", who="alice"), "http", "200",
         has=("conformance",)),
    Case(16, "curl rule names the root",
         curl("GET", "/restconf/data/ietf-system:system", who="bob"), "http", "200",
         has=("conformance",)),
    Case(16, "curl rule names an unrelated ca",
         curl("GET", "/restconf/data/ietf-system:system", who="carol"), "http", "401",
         has=("no cert-to-name rule",)),
]  # fmt: skip


def _new_log_line(dut: Dut, start: int, words: tuple[str, ...]) -> str | None:
    for line in dut.process.log[start:].splitlines():
        if all(w in line for w in words):
            return line
    return None


@pytest.mark.parametrize("case", CASES, ids=[f"item{c.item}-{c.does}" for c in CASES])
def test_device_conformance(dut: Dut, case: Case) -> None:
    start = len(dut.process.log)
    got = case.tool(dut)
    assert got.kind == case.kind, got
    if case.code:
        assert got.code == case.code, got
    for text in case.has:
        assert text in got.text, (text, got)
    for text in case.lacks:
        assert text not in got.text, (text, got)
    if case.log:
        deadline = time.monotonic() + 10
        while _new_log_line(dut, start, case.log) is None:
            assert time.monotonic() < deadline, (case.log, dut.process.log[start:])
            time.sleep(0.05)


def test_every_item_has_its_cases() -> None:
    assert {c.item for c in CASES} == {11, 12, 15, 16}

"""The attack table: every known attack on the MASA, the registrar, the pledge and the device,
run against ONE set of real processes on 127.0.0.1.

``TABLE`` lists the attacks as data: what is sent, and the refusal expected (HTTP status,
NETCONF error-tag or pledge error code) with the reason a person reads. Each attack is
sent with the natural tool (curl, raw sockets, asyncssh, ncclient, ``zerotouch pledge
enroll`` against a hostile registrar); right afterwards a legitimate client is served: a
fresh pledge enrolls through the real registrar and MASA, a RESTCONF GET and a NETCONF get
are answered. At the end each service's resident memory is back under ``RSS_BOUND`` above
what it was before the first attack.

The MASA runs the "claims" policy with nonceless vouchers allowed (RFC 8995 §5.5.4), so a
rival domain can hold a voucher for a device that the owner's registrar must notice in the
audit log (§5.8.3).
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path

import asyncssh
import pytest
from ncclient import manager
from ncclient.operations.rpc import RPCError

from tests.e2e.test_brski_flow import (
    OUTPUTS,
    FakeRegistrar,
    Lab,
    der,
    enroll,
    enroll_here,
    make_lab,
    masa_voucher,
    nonceless_rvr,
    one_line,
    real_registrar,
    run_against_fake,
)
from tests.e2e.test_hardening_limits import (
    HALF_HELLO,
    LIMITS,
    closed_within,
    connect,
    endless_body_is_cut,
    rss,
    slow_header_is_cut,
)
from tests.e2e.test_hardening_netconf import HELLO_11, _Guesser, _Raw
from tests.support.device_pki import DevicePki, make_device_pki
from tests.support.device_process import DeviceProcess, start_device, write_device_config
from tests.support.masa_process import post
from tests.support.processes import run_cli
from zerotouch_plugin.artifacts import certs, cms
from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.artifacts.voucher import Assertion, VoucherRequest
from zerotouch_plugin.config import hash_password
from zerotouch_plugin.roles.masa import domain_id
from zerotouch_plugin.roles.pledge import PATH_SIMPLEENROLL, HttpRequest, Pledge
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services.masa_app import AUDIT_PATH
from zerotouch_plugin.services.masa_app import DB_FILE as MASA_DB
from zerotouch_plugin.services.pledge_client import (
    PLEDGE_FILES,
    PledgeClient,
    drive,
    load_pledge_config,
)

MIB = 1024 * 1024
RSS_BOUND = 24 * MIB  # what a service may keep above its pre-attack RSS (malloc arenas)
EDIT_BUDGET = 12_000  # max_edit_entries of the device
HELLO_TIMEOUT = 3
IF_NS = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
SYS_NS = "urn:ietf:params:xml:ns:yang:ietf-system"
VOUCHER_CMS = "application/voucher-cms+json"
PKCS10 = "application/pkcs10"


# ---------------------------------------------------------------------------------------------
# the site: MASA, registrar, device


@dataclass
class Site:
    lab: Lab
    rival: Path  # domain B's registrar folder (a rival owner)
    evil: Path  # a registrar folder of a domain nobody vouched for (the MITM)
    device: DeviceProcess
    pki: DevicePki
    files: dict[str, Path]
    warm_pledge: Path  # a pledge enrolled before the attacks (its voucher is genuine)

    @property
    def masa_port(self) -> int:
        return self.lab.masa_port

    @property
    def registrar_port(self) -> int:
        return int(self.lab.registrar_url.rpartition(":")[2])

    def log(self, service: str) -> str:
        """Everything ``service`` (masa, registrar, device) logged so far."""
        if service == "device":
            return self.device.log
        process = self.lab.masa if service == "masa" else self.lab.registrars[0]
        assert process is not None
        return process.stderr

    def pids(self) -> dict[str, int]:
        assert self.lab.masa is not None
        return {
            "masa": self.lab.masa.proc.pid,
            "registrar": self.lab.registrars[0].proc.pid,
            "device": self.device.proc.pid,
        }

    def claim(self, serial: str, domain: Path) -> None:
        run_cli("masa", "claim", "--dir", self.lab.vendor, "--serial", serial,
                "--domain-ca", domain / "ca.pem")  # fmt: skip

    def owned_pledge(self) -> tuple[str, Path]:
        """A new pledge, allowed by our registrar and claimed for our domain at the MASA."""
        serial, folder = self.lab.pledge()
        self.claim(serial, self.lab.domain)
        return serial, folder

    def ssh(self) -> manager.Manager:
        return manager.connect(
            host="127.0.0.1", port=self.device.ports["netconf-ssh"], username="admin",
            password="secret", hostkey_verify=False, allow_agent=False, look_for_keys=False,
            timeout=60,
        )  # fmt: skip

    def curl(
        self,
        url: str,
        *,
        cacert: Path,
        client: tuple[Path, Path] | None = None,
        data: bytes | None = None,
        content_type: str | None = None,
        method: str | None = None,
    ) -> str:
        """curl as the attacker's or the operator's tool: ``status body``."""
        body = self.lab.root / "curl.body"
        cmd = ["curl", "-sS", "--noproxy", "*", "--max-time", "30", "--cacert", str(cacert),
               "-o", str(body), "-w", "%{http_code}"]  # fmt: skip
        if client is not None:
            cmd += ["--cert", str(client[0]), "--key", str(client[1])]
        if data is not None:
            (self.lab.root / "curl.data").write_bytes(data)
            cmd += ["--data-binary", f"@{self.lab.root / 'curl.data'}"]
        if content_type is not None:
            cmd += ["-H", f"Content-Type: {content_type}"]
        if method is not None:
            cmd += ["-X", method]
        body.unlink(missing_ok=True)
        done = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=60, check=False)
        text = body.read_text(errors="replace") if body.exists() else done.stderr
        return f"{done.stdout} {text}"

    def registrar_curl(self, path: str, pledge: Path | None, **kw: object) -> str:
        client = (pledge / "idevid.pem", pledge / "idevid.key") if pledge else None
        return self.curl(
            self.lab.registrar_url + path, cacert=self.lab.domain / "ca.pem", client=client,
            **kw,  # type: ignore[arg-type]
        )  # fmt: skip

    def restconf(self, path: str, **kw: object) -> str:
        url = f"https://127.0.0.1:{self.device.ports['restconf']}{path}"
        client = (self.files["cert"], self.files["key"])
        return self.curl(url, cacert=self.files["ca"], client=client, **kw)  # type: ignore[arg-type]


def served(site: Site) -> None:
    """A legitimate client of every service is served: a fresh pledge enrolls (registrar and
    MASA), RESTCONF answers a GET, NETCONF a get."""
    serial, folder = site.owned_pledge()
    assert enroll_here(folder, site.lab.registrar_url).serial == serial
    assert site.restconf("/restconf/data/ietf-system:system").startswith("200 ")
    with site.ssh() as m:
        assert m.get(filter=("subtree", f'<system xmlns="{SYS_NS}"/>')).ok


def _device_config(folder: Path) -> None:
    password = hash_password("secret", salt=b"fixed-test-salt!", iterations=10_000)
    write_device_config(
        folder,
        f'max_edit_entries = {EDIT_BUDGET}\n\n[[users]]\nname = "admin"\npassword = "{password}"\n'
        f"\n[netconf_limits]\nmax_message = {4 * MIB}\nmax_buffered = {16 * MIB}\n"
        f"hello_timeout = {HELLO_TIMEOUT}\nmax_auth_attempts = 3\nauth_failures_per_source = 4\n"
        "auth_lockout = 600\n" + LIMITS,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("attacks")
    lab = make_lab(root)
    (lab.vendor / "masa.toml").write_text(
        'policy = "claims"\nnonceless_allowed = true\nvoucher_lifetime = 600\n' + LIMITS
    )
    with (lab.domain / "registrar.toml").open("a") as fh:
        fh.write(LIMITS)
    for name, ca_name in (("R-B", "domain B CA"), ("R-evil", "evil domain CA")):
        run_cli("registrar", "init", "--dir", root / name, "--manufacturer-ca",
                lab.vendor / "ca.pem", "--masa-trust", lab.vendor / "ca.pem",
                "--ca-name", ca_name)  # fmt: skip
    folder = root / "device"
    folder.mkdir()
    pki = make_device_pki()
    files = pki.write(folder / "pki")
    certfiles.write_certs(folder / "ldevid.pem", [pki.server.cert, *pki.server.chain])
    certfiles.write_key(folder / "ldevid.key", pki.server.key)
    certfiles.write_certs(folder / "domain-ca.pem", [pki.ca.cert])
    _device_config(folder)
    listeners = {"netconf-ssh": "127.0.0.1:0", "netconf-tls": "127.0.0.1:0",
                 "restconf": "127.0.0.1:0"}  # fmt: skip
    device = None
    try:
        lab.start_masa()
        lab.start_registrar()
        device = start_device(folder, listeners, verbose=True)
        site = Site(lab, root / "R-B", root / "R-evil", device, pki, files, root)
        serial, warm = site.owned_pledge()
        assert enroll_here(warm, lab.registrar_url).serial == serial
        site.warm_pledge = warm
        served(site)
        yield site
    finally:
        if device is not None:
            assert device.stop() == 0, device.log
            device.log_path.unlink(missing_ok=True)
        lab.close()


@pytest.fixture(scope="module")
def baseline(site: Site) -> dict[str, int]:
    """Each service's RSS before the first attack."""
    return {name: rss(pid) for name, pid in site.pids().items()}


# ---------------------------------------------------------------------------------------------
# attacks on the device: XPath filters, large edits, NETCONF buffering, SSH logins, disk use


def nested_xpath(site: Site) -> str:
    with site.ssh() as m:
        try:
            m.get(filter=("xpath", "//*[//*[//*[1]]]"))
        except RPCError as err:
            return f"{err.tag}: {err.message}"
    return "answered"


def huge_edit(site: Site) -> str:
    count = 20_001
    entries = "".join(
        f"<interface><name>x{i}</name><type>ianaift:ethernetCsmacd</type></interface>"
        for i in range(count)
    )
    config = (
        f'<config><interfaces xmlns="{IF_NS}" '
        f'xmlns:ianaift="urn:ietf:params:xml:ns:yang:iana-if-type">{entries}</interfaces></config>'
    )
    with site.ssh() as m:
        try:
            m.edit_config(target="running", config=config)
        except RPCError as err:
            return f"{err.tag}: {err.message}"
    return "accepted"


def _raw_session(site: Site, first: bytes) -> str:
    """A NETCONF/SSH session that sends ``first`` after the hellos; what the device sent
    before closing it."""

    async def scenario() -> bytes:
        raw = await _Raw.open(site.device)
        await raw.server_hello()
        raw.send(first)
        answer = await raw.until_closed(60)
        await raw.close()
        return answer

    return asyncio.run(scenario()).decode(errors="replace")


def netconf_unbounded_chunk(site: Site) -> str:
    answer = _raw_session(site, HELLO_11 + b"\n#100000000\n" + b"x" * MIB)
    return "too-big" if "<error-tag>too-big</error-tag>" in answer else answer


def netconf_held_without_hello(site: Site) -> str:
    seen = len(site.log("device"))
    started = time.monotonic()
    _raw_session(site, b"")
    held = time.monotonic() - started
    return f"closed after {held:.0f} s: " + _logged(site, "device", "no hello within", seen)


def ssh_password_guessing(site: Site) -> str:
    """Guessing from 127.0.0.2: three guesses a connection, four in all lock the source."""

    async def guess(passwords: list[str]) -> int:
        client = _Guesser(passwords)
        try:
            conn, _ = await asyncssh.create_connection(
                lambda: client, "127.0.0.1", site.device.ports["netconf-ssh"],
                username="admin", known_hosts=None, client_keys=None,
                preferred_auth="password", local_addr=("127.0.0.2", 0),
            )  # fmt: skip
        except asyncssh.PermissionDenied:
            return client.offered
        conn.close()
        return -1

    async def scenario() -> list[int]:
        return [await guess([f"w{i}" for i in range(6)]), await guess(["w7"]),
                await guess(["secret"])]  # fmt: skip

    seen = len(site.log("device"))
    offered = asyncio.run(scenario())
    return f"offered {offered}: " + _logged(site, "device", "locked out for", seen)


def restconf_doctype(site: Site) -> str:
    xxe = (
        '<?xml version="1.0"?>\n<!DOCTYPE system [<!ENTITY x SYSTEM "file:///etc/hostname">]>\n'
        '<system xmlns="urn:ietf:params:xml:ns:yang:ietf-system"><contact>&x;</contact></system>'
    )
    return site.restconf("/restconf/data/ietf-system:system", data=xxe.encode(),
                         content_type="application/yang-data+xml", method="PATCH")  # fmt: skip


def restconf_deep_json(site: Site) -> str:
    deep = '{"ietf-system:system": ' + "[" * 5000 + "]" * 5000 + "}"
    return site.restconf("/restconf/data/ietf-system:system", data=deep.encode(),
                         content_type="application/yang-data+json", method="PUT")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# attacks on the listeners: unfinished handshakes, slow headers, endless bodies


def _handshake_never_finished(
    port: Callable[[Site], int], service: str, log: str
) -> Callable[[Site], str]:
    def attack(site: Site) -> str:
        """The cut is logged just after the close: the line is awaited, not raced."""
        seen = len(site.log(log))
        needle = f"{service}: refused 127.0.0.1:"
        sock = connect(port(site), "127.0.0.1", HALF_HELLO)
        try:
            started = time.monotonic()
            cut = closed_within(sock, 20)
            held = time.monotonic() - started
        finally:
            sock.close()
        return f"{'cut' if cut else 'held'} after {held:.0f} s: " + _logged(site, log, needle, seen)

    return attack


def _registrar_context(site: Site) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=site.lab.domain / "ca.pem")
    pledge = site.warm_pledge
    ctx.load_cert_chain(pledge / "ldevid.pem", pledge / "ldevid.key")
    return ctx


def slowloris(site: Site) -> str:
    seen = len(site.log("registrar"))
    cut = slow_header_is_cut(site.registrar_port, _registrar_context(site))
    needle = "no complete request header within"
    return f"{'cut' if cut else 'held'}: " + _logged(site, "registrar", needle, seen)


def endless_body(site: Site) -> str:
    answer = endless_body_is_cut(site.registrar_port, _registrar_context(site),
                                 "/.well-known/brski/voucher_status", slow=False)  # fmt: skip
    return answer.decode(errors="replace").split("\r\n")[0]


# ---------------------------------------------------------------------------------------------
# attacks on the registrar's EST and BRSKI endpoints: LDevID names and keys, replays, floods


class _BeforeEnroll(Exception):
    """Stops a real pledge once its voucher is accepted, before it asks for an LDevID."""


def vouchered_pledge(site: Site) -> tuple[str, Path]:
    """A pledge that got a voucher and reported it accepted (voucher_status true), so the
    registrar would enroll it: the attacker controls what it sends next."""
    serial, folder = site.owned_pledge()
    config = load_pledge_config(folder)

    def stop(action: object) -> None:
        if isinstance(action, HttpRequest) and action.path == PATH_SIMPLEENROLL:
            raise _BeforeEnroll

    async def keep(_: object) -> None:
        raise AssertionError("nothing is installed before simpleenroll")

    async def scenario() -> None:
        async with PledgeClient(config, site.lab.registrar_url, timeout=15) as client:
            await drive(Pledge(config, random_bytes=os.urandom), client, on_action=stop,
                        install=keep)  # fmt: skip

    with pytest.raises(_BeforeEnroll):
        asyncio.run(scenario())
    return serial, folder


def openssl_csr(folder: Path, subject: str, *extra: str) -> bytes:
    """``openssl req`` as the attacker's CSR tool, base64 DER as RFC 7030 §4.2.1 sends it."""
    key_options = extra or ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")
    done = subprocess.run(
        ["openssl", "req", "-new", *key_options, "-nodes", "-keyout", str(folder / "csr.key"),
         "-subj", subject, "-outform", "DER"],
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    return base64.encodebytes(done.stdout)


def _enroll_with(site: Site, subject: str, *key_options: str) -> str:
    serial, folder = vouchered_pledge(site)
    csr = openssl_csr(folder, subject.format(serial=serial), *key_options)
    return site.registrar_curl(PATH_SIMPLEENROLL, folder, data=csr, content_type=PKCS10)


def ldevid_for_another_device(site: Site) -> str:
    return _enroll_with(site, "/serialNumber=SOMEONE-ELSE")


def weak_rsa_key(site: Site) -> str:
    return _enroll_with(site, "/serialNumber={serial}", "-newkey", "rsa:1024")


def sha1_csr(site: Site) -> str:
    return _enroll_with(
        site, "/serialNumber={serial}", "-newkey", "ec", "-pkeyopt",
        "ec_paramgen_curve:prime256v1", "-sha1",
    )  # fmt: skip


def two_serial_numbers(site: Site) -> str:
    return _enroll_with(site, "/serialNumber={serial}/serialNumber=SOMEONE-ELSE")


def status_reason_injection(site: Site) -> str:
    """A pledge's enrollstatus reason with terminal escapes and a forged line: refused
    before it reaches a log or the devices table."""
    _, folder = vouchered_pledge(site)
    report = b'{"version": 1, "status": false, "reason": "\\u001b[2J\\r\\nforged row"}'
    return site.registrar_curl("/.well-known/brski/enrollstatus", folder, data=report,
                               content_type="application/json")  # fmt: skip


def est_without_voucher(site: Site) -> str:
    serial, folder = site.owned_pledge()
    csr = openssl_csr(folder, f"/serialNumber={serial}")
    return site.registrar_curl(PATH_SIMPLEENROLL, folder, data=csr, content_type=PKCS10)


def oversized_pledge_request(site: Site) -> str:
    """A valid pledge voucher-request padded to ~50 KB with its CA: too large for the MASA,
    so the registrar refuses it itself."""
    serial, folder = site.owned_pledge()
    identity = certfiles.load_identity(folder / "idevid.pem", folder / "idevid.key")
    request = VoucherRequest(
        serial_number=serial, created_on=datetime.now(UTC), assertion=Assertion.PROXIMITY,
        nonce=base64.b64encode(os.urandom(16)).decode(),
        proximity_registrar_cert=der(certfiles.load_cert_file(site.lab.domain / "registrar.pem")),
    )  # fmt: skip
    padded = Identity(identity.cert, identity.key, identity.chain * 100)
    body = cms.sign(request.to_json(), signer=padded, now=datetime.now(UTC))
    return site.registrar_curl("/.well-known/brski/requestvoucher", folder, data=body,
                               content_type=VOUCHER_CMS)  # fmt: skip


FORGED = "%0d%0a2026-01-01%20masa:%20voucher%20issued%1b%5b31m"


def log_injection(site: Site) -> str:
    """Percent-encoded CR, LF and ESC in a URL: logged escaped, never raw."""
    answer = site.registrar_curl("/x" + FORGED, None)
    text = site.log("registrar")
    assert "\x1b" not in text and "\r" not in text
    return answer.split(" ", 1)[0] + " " + _last(text, "/x\\x0d\\x0a2026")


def audit_log_replayed(site: Site) -> str:
    """A registrar voucher-request captured on the wire, replayed to the MASA's audit-log
    endpoint without the registrar's TLS client certificate."""
    serial, folder = site.owned_pledge()
    rvr, _ = nonceless_rvr(site.lab.domain, serial, folder)
    vendor_ca = certfiles.load_cert_file(site.lab.vendor / "ca.pem")
    status, _, body = asyncio.run(
        post(f"https://127.0.0.1:{site.masa_port}", rvr, trust=[vendor_ca], path=AUDIT_PATH,
             accept=None)
    )  # fmt: skip
    return f"{status} {body.decode(errors='replace')}"


def database_modes(site: Site) -> str:
    files = [site.lab.vendor / MASA_DB, site.lab.domain / "registrar.db"]
    return " ".join(oct(stat.S_IMODE(f.stat().st_mode)) for f in files)


# ---------------------------------------------------------------------------------------------
# a hostile registrar in front of a real pledge (``zerotouch pledge enroll``)


def _hostile(
    site: Site, make: Callable[[VoucherRequest, bytes], bytes], identity: Identity | None = None
) -> str:
    """A registrar with ``identity`` (default: our real registrar's key) answering the
    pledge's voucher-request with ``make(pvr, body)``; the pledge's one-line refusal."""
    _, folder = site.lab.pledge(allow=False)
    fake = FakeRegistrar(
        identity or real_registrar(site.lab),
        certfiles.load_cert_file(site.lab.vendor / "ca.pem"),
        make,
    )
    code, line, reports = run_against_fake(site.lab, fake, folder)
    assert code == 1
    assert not (folder / PLEDGE_FILES["ldevid"]).exists()
    assert [r["status"] for _, r in reports] == [False], reports  # voucher_status false
    return line


def _signer(site: Site, *, now: datetime, days: int = 730, vendor: Identity | None = None
            ) -> Identity:  # fmt: skip
    ca = vendor or certfiles.load_identity(site.lab.vendor / "ca.pem", site.lab.vendor / "ca.key")
    return certs.issue_masa_signer(ca, "attacker's MASA signer", now=now, days=days)


def _resigned(site: Site, pvr: VoucherRequest, signer: Identity) -> bytes:
    content = cms.inspect(masa_voucher(site.lab, pvr)).content
    return cms.sign(content, signer=signer, now=datetime.now(UTC))


def mitm_registrar(site: Site) -> str:
    """A registrar of a domain nobody vouched for, holding a genuine voucher for this pledge
    (right serial, right nonce) that pins the real domain."""
    evil = certfiles.load_identity(site.evil / "registrar.pem", site.evil / "registrar.key")
    return _hostile(site, lambda pvr, _: masa_voucher(site.lab, pvr), evil)


def replayed_voucher(site: Site) -> str:
    """The voucher a pledge really got from the MASA, replayed to it later."""
    serial, folder = site.owned_pledge()
    assert enroll_here(folder, site.lab.registrar_url).serial == serial
    old = (folder / PLEDGE_FILES["voucher"]).read_bytes()
    for name in OUTPUTS:
        (folder / PLEDGE_FILES[name]).unlink()
    fake = FakeRegistrar(
        real_registrar(site.lab), certfiles.load_cert_file(site.lab.vendor / "ca.pem"),
        lambda pvr, _: old,
    )  # fmt: skip
    code, line, _ = run_against_fake(site.lab, fake, folder)
    assert code == 1
    return line


def foreign_device_voucher(site: Site) -> str:
    """A genuine voucher the running MASA issued for another device."""
    other = (site.warm_pledge / PLEDGE_FILES["voucher"]).read_bytes()
    return _hostile(site, lambda pvr, _: other)


def foreign_domain_voucher(site: Site) -> str:
    """A voucher for this pledge that pins another domain (B), served by our registrar."""
    rival_ca = der(certfiles.load_cert_file(site.rival / "ca.pem"))
    return _hostile(site, lambda pvr, _: masa_voucher(site.lab, pvr, pinned_domain_cert=rival_ca))


def nonce_mismatch(site: Site) -> str:
    other = base64.b64encode(os.urandom(16)).decode()
    return _hostile(site, lambda pvr, _: masa_voucher(site.lab, pvr, nonce=other))


def serial_mismatch(site: Site) -> str:
    return _hostile(site, lambda pvr, _: masa_voucher(site.lab, pvr, serial_number="ZT-OTHER"))


def expired_signer(site: Site) -> str:
    signer = _signer(site, now=datetime.now(UTC) - timedelta(days=3), days=1)
    return _hostile(site, lambda pvr, _: _resigned(site, pvr, signer))


def untrusted_signer(site: Site) -> str:
    stranger = certs.make_ca("stranger vendor CA", now=datetime.now(UTC))
    signer = _signer(site, now=datetime.now(UTC), vendor=stranger)
    return _hostile(site, lambda pvr, _: _resigned(site, pvr, signer))


def _flip(body: bytes, index: int) -> bytes:
    return body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]


def tampered_content(site: Site) -> str:
    def tamper(pvr: VoucherRequest, _: bytes) -> bytes:
        body = masa_voucher(site.lab, pvr)
        return _flip(body, body.index(pvr.serial_number.encode()))

    return _hostile(site, tamper)


def tampered_signature(site: Site) -> str:
    def tamper(pvr: VoucherRequest, _: bytes) -> bytes:
        body = masa_voucher(site.lab, pvr)
        return _flip(body, len(body) - 1)  # the last byte of the SignerInfo's signature

    return _hostile(site, tamper)


def nonceless_downgrade(site: Site) -> str:
    """The nonce stripped: a nonceless voucher (valid for an hour) for a pledge that was not
    told to accept one."""
    expires = datetime.now(UTC) + timedelta(hours=1)
    return _hostile(site, lambda pvr, _: masa_voucher(site.lab, pvr, nonce=None,
                                                      expires_on=expires))  # fmt: skip


def audit_log_evasion(site: Site) -> str:
    """Domain B quietly takes a nonceless voucher for a device (never contacting it), then the
    device is sold to us: the MASA logged B's voucher, and our registrar, reading the audit
    log, refuses to enroll a device another domain can take back at any time."""
    serial, folder = site.lab.pledge()
    site.claim(serial, site.rival)
    rival_id = domain_id(certfiles.load_cert_file(site.rival / "ca.pem"))
    _wait_for(lambda: f"domain {rival_id} accepted" in site.log("masa"))
    rvr, rival = nonceless_rvr(site.rival, serial, folder)
    vendor_ca = certfiles.load_cert_file(site.lab.vendor / "ca.pem")
    status, _, body = asyncio.run(
        post(f"https://127.0.0.1:{site.masa_port}", rvr, trust=[vendor_ca], client=rival)
    )
    assert status == 200, body
    site.claim(serial, site.lab.domain)
    result = enroll(site.lab, folder)
    assert result.returncode == 1, result.stdout
    assert site.lab.state(serial) is not None
    record = site.lab.device(serial)
    assert record is not None and record["audit_level"] == "alert", record
    return one_line(result.stderr)


# ---------------------------------------------------------------------------------------------
# the table


@dataclass(frozen=True)
class Attack:
    name: str
    sends: str
    refusal: str  # how the answer starts: HTTP status, NETCONF error-tag, pledge error code
    reason: str  # what it says
    run: Callable[[Site], str]


def _port(name: str) -> Callable[[Site], int]:
    return lambda site: site.device.ports[name]


TABLE = [
    Attack("xpath-nested", "NETCONF get, XPath filter //*[//*[//*[1]]]", "resource-denied",
           "nest", nested_xpath),
    Attack("huge-edit", "edit-config of 20,001 interfaces", "too-big",
           f"budget of {EDIT_BUDGET}", huge_edit),
    Attack("ldevid-for-another-device", "CSR with another device's serialNumber",
           "403 wrong-serial:", "asks for serialNumber 'SOMEONE-ELSE'",
           ldevid_for_another_device),
    Attack("weak-key", "CSR with an RSA-1024 key", "400 malformed:",
           "the CSR key is RSA-1024", weak_rsa_key),
    Attack("masa-handshake-held", "half a ClientHello to the MASA", "cut after",
           "masa: refused 127.0.0.1:", _handshake_never_finished(
               lambda s: s.masa_port, "masa", "masa")),
    Attack("registrar-handshake-held", "half a ClientHello to the registrar", "cut after",
           "registrar: refused", _handshake_never_finished(
               lambda s: s.registrar_port, "registrar", "registrar")),
    Attack("restconf-handshake-held", "half a ClientHello to RESTCONF", "cut after",
           "restconf: refused", _handshake_never_finished(
               _port("restconf"), "restconf", "device")),
    Attack("netconf-tls-handshake-held", "half a ClientHello to NETCONF/TLS", "cut after",
           "netconf-tls: refused", _handshake_never_finished(
               _port("netconf-tls"), "netconf-tls", "device")),
    Attack("slowloris", "a request header a byte a second", "cut",
           "no complete request header within", slowloris),
    Attack("endless-chunked-body", "a chunked body without end", "HTTP/1.1 413 ",
           HTTPStatus(413).phrase, endless_body),  # "Content Too Large" from Python 3.13
    Attack("netconf-unbounded-chunk", "a NETCONF chunk announcing 100 MB", "too-big",
           "too-big", netconf_unbounded_chunk),
    Attack("netconf-held-session", "a NETCONF session that never says hello", "closed after",
           f"no hello within {HELLO_TIMEOUT}", netconf_held_without_hello),
    Attack("ssh-password-guessing", "passwords from 127.0.0.2, one connection after another",
           "offered [3, 1, 0]", "127.0.0.2 locked out for 600", ssh_password_guessing),
    Attack("masa-audit-log-replay", "a captured registrar voucher-request to the audit log",
           "401 access-denied:", "with the registrar's client certificate", audit_log_replayed),
    Attack("database-files", "(a local user reading the MASA's and registrar's databases)",
           "0o600 0o600", "0o600", database_modes),
    Attack("log-injection", "percent-encoded CR LF ESC in a URL path", "40",
           "voucher issued\\x1b[31m", log_injection),
    Attack("status-reason-injection", "an enrollstatus reason with ESC, CR and LF",
           "400 schema-error:", "'reason' holds a control character", status_reason_injection),
    Attack("restconf-doctype", "RESTCONF PATCH with a DOCTYPE and an external entity", "400 ",
           "DOCTYPE", restconf_doctype),
    Attack("restconf-deep-json", "RESTCONF PUT of JSON nested 5,000 deep", "400 ",
           "not valid JSON", restconf_deep_json),
    Attack("sha1-csr", "a CSR signed with SHA-1", "400 ", "signed with SHA-1", sha1_csr),
    Attack("two-serial-numbers", "a CSR with two serialNumber attributes", "403 ",
           "2 serialNumber attributes", two_serial_numbers),
    Attack("oversized-pledge-request", "a 50 KB pledge voucher-request", "413 ",
           "more than the 65536 bytes the MASA accepts", oversized_pledge_request),
    Attack("mitm-registrar", "another domain's registrar with a genuine voucher",
           "untrusted-signer:", "man-in-the-middle", mitm_registrar),
    Attack("replayed-voucher", "the pledge's own earlier voucher", "wrong-nonce:",
           "differs from the expected", replayed_voucher),
    Attack("foreign-device-voucher", "a genuine voucher of another device", "wrong-serial:",
           "artifact is for serial-number 'ZT-E2E-001'", foreign_device_voucher),
    Attack("foreign-domain-voucher", "a voucher pinning another domain", "untrusted-signer:",
           "(CN=domain B CA) does not validate the registrar", foreign_domain_voucher),
    Attack("nonce-mismatch", "a voucher with another nonce", "wrong-nonce:",
           "differs from the expected", nonce_mismatch),
    Attack("serial-mismatch", "a voucher naming another serial", "wrong-serial:",
           "artifact is for serial-number 'ZT-OTHER'", serial_mismatch),
    Attack("expired-signer", "a voucher signed with an expired MASA certificate",
           "expired:", "is not valid at", expired_signer),
    Attack("untrusted-signer", "a voucher signed by another manufacturer's MASA",
           "untrusted-signer:", "does not chain to a trust anchor", untrusted_signer),
    Attack("tampered-content", "a voucher with one bit flipped in its content",
           "digest-mismatch:", "the payload was altered after signing", tampered_content),
    Attack("tampered-signature", "a voucher with one bit flipped in its signature",
           "bad-signature:", "does not verify with the signer", tampered_signature),
    Attack("nonceless-downgrade", "a voucher with its nonce stripped", "wrong-nonce:",
           "does not accept nonceless vouchers", nonceless_downgrade),
    Attack("audit-log-evasion", "a rival domain's quiet nonceless voucher",
           "policy-refused:", "shows a nonceless voucher for another domain", audit_log_evasion),
    Attack("est-without-voucher", "simpleenroll from a pledge that never got a voucher",
           "403 policy-refused:", "has not requested a voucher from this registrar",
           est_without_voucher),
]  # fmt: skip


def _wait_for(condition: Callable[[], bool], seconds: float = 15) -> None:
    """Until ``condition()`` holds; False after ``seconds`` leaves the caller's assertion to
    name what was missing."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)


def _logged(site: Site, service: str, needle: str, seen: int) -> str:
    """The last line with ``needle`` that ``service`` logged past offset ``seen`` (awaited:
    a server logs a cut just after the close the attacker sees)."""
    _wait_for(lambda: needle in site.log(service)[seen:], 10)
    return _last(site.log(service)[seen:], needle)


def _last(text: str, needle: str) -> str:
    """The last log line containing ``needle`` ("" when none)."""
    return next((ln for ln in reversed(text.splitlines()) if needle in ln), "")


@pytest.mark.parametrize("attack", TABLE, ids=[a.name for a in TABLE])
def test_attack_is_refused_and_services_keep_serving(
    site: Site, baseline: dict[str, int], attack: Attack
) -> None:
    observed = attack.run(site)
    print(f"{attack.name}: {observed[:300]}")
    assert observed.startswith(attack.refusal), (attack.sends, observed)
    assert attack.reason in observed, (attack.sends, observed)
    served(site)


def test_memory_is_back_under_the_bound(site: Site, baseline: dict[str, int]) -> None:
    """After every attack of the table, each service's RSS is within ``RSS_BOUND`` of what
    it was before the first (the caps bound the peak; freed buffers go back)."""
    deadline = time.monotonic() + 15
    while True:
        now = {name: rss(pid) for name, pid in site.pids().items()}
        grown = {name: (now[name] - baseline[name]) // MIB for name in now}
        if all(now[n] - baseline[n] < RSS_BOUND for n in now) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    print(f"RSS growth over the attack table, MiB: {grown}")
    assert all(now[n] - baseline[n] < RSS_BOUND for n in now), grown
    served(site)

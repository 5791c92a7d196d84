"""The pledge agent hosted in netopeer2 on sysrepo: a sysrepo plugin process in Python.

netopeer2 serves whatever sysrepo holds, so this host is a sysrepo client next to it (the
PyPI ``sysrepo`` and ``libyang`` bindings, built by ``scripts/netopeer2-stack.sh``):

- it installs ``zerotouch-bootstrap`` into sysrepo and serves the agent's state as
  operational data (an operational-get subscription answered from memory), its
  ``restart-bootstrap`` RPC (an RPC subscription) and its notification (sent through sysrepo,
  so every NETCONF client of netopeer2 subscribed to it receives it);
- the domain identity lives in netopeer2's own configuration, in ONE sysrepo change of
  running (then the same change of startup, so it survives a restart): the LDevID and its
  key in ``ietf-keystore``, the domain CA in ``ietf-truststore``, a NETCONF-over-TLS
  endpoint in ``ietf-netconf-server`` that presents the LDevID, accepts clients whose
  certificate chains to the domain CA and maps them (cert-to-name by the domain CA's
  fingerprint, ``specified`` name, RFC 7589 §7) to one user, and NACM rules that let that
  user configure the device (RFC 8341: netopeer2 denies writes to anyone but the recovery
  user otherwise). Before enrollment there is no such endpoint, so no TLS client gets in;
  ``forget_identity`` removes all of it in one change again;
- the factory identity and the manufacturer's trust anchors are files in the plugin's
  folder (``services/factory_files.py``, the layout of the reference device), the agent's
  store one file per key there (``device/agent_store.py``).

The PluginHost methods run in the asyncio loop; sysrepo edits that wait for netopeer2
(it applies keystore and listener changes in its own callbacks) run in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.artifacts.certs import PrivateKey
from zerotouch_plugin.artifacts.signer import SigningIdentity, SoftwareSigner, tls_identity
from zerotouch_plugin.artifacts.yang import yang_dir
from zerotouch_plugin.device.agent_store import FileAgentStore
from zerotouch_plugin.device.host import REQUIRED_MODULES, InstalledIdentity
from zerotouch_plugin.device.types import RpcFunction
from zerotouch_plugin.errors import ConfigError, StorageError, ZerotouchError
from zerotouch_plugin.services.factory_files import FactoryFolder

__all__ = [
    "DOMAIN_USER",
    "SysrepoHost",
    "identity_edit",
    "install_modules",
    "tls_fingerprint",
]

log = logging.getLogger(__name__)

DOMAIN_USER = "zerotouch-domain"  # the NETCONF user domain clients are mapped to

MODULE = REQUIRED_MODULES[0]
STATE_PATH = f"/{MODULE}:bootstrap"
# Names of what the identity change adds to netopeer2's configuration.
KEY_NAME = "zerotouch-ldevid"
CERT_NAME = "ldevid"
BAG_NAME = "zerotouch-domain-ca"
ENDPOINT_NAME = "zerotouch-tls"
NACM_NAME = "zerotouch-domain"
# What the identity change touches, in the order sysrepo validates leafrefs between them;
# forget removes these nodes.
KEY_PATH = f"/ietf-keystore:keystore/asymmetric-keys/asymmetric-key[name='{KEY_NAME}']"
BAG_PATH = f"/ietf-truststore:truststore/certificate-bags/certificate-bag[name='{BAG_NAME}']"
ENDPOINT_PATH = (
    f"/ietf-netconf-server:netconf-server/listen/endpoints/endpoint[name='{ENDPOINT_NAME}']"
)
IDENTITY_PATHS: tuple[str, ...] = (
    KEY_PATH,
    BAG_PATH,
    ENDPOINT_PATH,
    f"/ietf-netconf-acm:nacm/groups/group[name='{NACM_NAME}']",
    f"/ietf-netconf-acm:nacm/rule-list[name='{NACM_NAME}']",
)


def _anchor_paths(indexes: Iterable[int]) -> list[str]:
    """The truststore entries and cert-to-name rules of the anchors at ``indexes``."""
    return [
        path
        for index in indexes
        for path in (
            f"{BAG_PATH}/certificate[name='domain-ca-{index}']",
            f"{ENDPOINT_PATH}/tls/netconf-server-parameters/client-identity-mappings"
            f"/cert-to-name[id='{index + 1}']",
        )
    ]


_CRYPTO = "ietf-crypto-types"
# Key type -> (ietf-crypto-types private key format, encoding of the key) libnetconf2 reads.
_PRIVATE_FORMATS: tuple[tuple[type, str], ...] = (
    (ec.EllipticCurvePrivateKey, f"{_CRYPTO}:ec-private-key-format"),  # RFC 5915
    (rsa.RSAPrivateKey, f"{_CRYPTO}:rsa-private-key-format"),  # RFC 8017 RSAPrivateKey
)
_EDIT_TIMEOUT_MS = 20_000


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _cert_b64(cert: x509.Certificate) -> str:
    """``cert-data`` as libnetconf2 reads it: base64 of one DER certificate."""
    return _b64(cert.public_bytes(serialization.Encoding.DER))


def tls_fingerprint(cert: x509.Certificate) -> str:
    """The tls-fingerprint of ``cert`` (RFC 7589 §7, ietf-x509-cert-to-name): hash algorithm
    04 (SHA-256), then the digest, colon-separated hex."""
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()
    return ":".join(f"{octet:02x}" for octet in (4, *digest))


def _private_key_format(key: PrivateKey) -> str:
    for kind, name in _PRIVATE_FORMATS:
        if isinstance(key, kind):
            return name
    raise ConfigError(
        f"netopeer2's keystore takes EC or RSA keys, not {type(key).__name__} (libnetconf2 "
        "reads ec-private-key-format and rsa-private-key-format)"
    )


def identity_edit(
    identity: SigningIdentity,
    anchors: Sequence[x509.Certificate],
    *,
    address: str,
    port: int,
    user: str = DOMAIN_USER,
) -> dict[str, Any]:
    """The RFC 7951 configuration the domain identity adds to netopeer2 (one edit across
    ietf-keystore, ietf-truststore, ietf-netconf-server and ietf-netconf-acm)."""
    if not anchors:
        raise ValueError("at least one domain trust anchor is needed")
    key = tls_identity(identity).key
    key_der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    asymmetric_key = {
        "name": KEY_NAME,
        "public-key-format": f"{_CRYPTO}:subject-public-key-info-format",
        "public-key": _b64(public_der),
        "private-key-format": _private_key_format(key),
        "cleartext-private-key": _b64(key_der),
        "certificates": {
            "certificate": [{"name": CERT_NAME, "cert-data": _cert_b64(identity.cert)}]
        },
    }
    bag = {
        "name": BAG_NAME,
        "description": "Domain trust anchors installed by BRSKI (RFC 8995 §5.9.4)",
        "certificate": [
            {"name": f"domain-ca-{index}", "cert-data": _cert_b64(anchor)}
            for index, anchor in enumerate(anchors)
        ],
    }
    cert_to_name = [
        {
            "id": index + 1,
            "fingerprint": tls_fingerprint(anchor),
            "map-type": "ietf-x509-cert-to-name:specified",
            "name": user,
        }
        for index, anchor in enumerate(anchors)
    ]
    endpoint = {
        "name": ENDPOINT_NAME,
        "tls": {
            "tcp-server-parameters": {"local-address": address, "local-port": port},
            "tls-server-parameters": {
                "server-identity": {
                    "certificate": {
                        "central-keystore-reference": {
                            "asymmetric-key": KEY_NAME,
                            "certificate": CERT_NAME,
                        }
                    }
                },
                "client-authentication": {"ca-certs": {"central-truststore-reference": BAG_NAME}},
            },
            "netconf-server-parameters": {
                "client-identity-mappings": {"cert-to-name": cert_to_name}
            },
        },
    }
    return {
        "ietf-keystore:keystore": {"asymmetric-keys": {"asymmetric-key": [asymmetric_key]}},
        "ietf-truststore:truststore": {"certificate-bags": {"certificate-bag": [bag]}},
        "ietf-netconf-server:netconf-server": {"listen": {"endpoints": {"endpoint": [endpoint]}}},
        "ietf-netconf-acm:nacm": {
            "groups": {"group": [{"name": NACM_NAME, "user-name": [user]}]},
            "rule-list": [
                {
                    # first: rule-lists are tried in order (RFC 8341 §3.4.5), so a device's
                    # own deny rules for all groups do not shadow the domain's access
                    "@": {"yang:insert": "first"},
                    "name": NACM_NAME,
                    "group": [NACM_NAME],
                    "rule": [
                        {
                            "name": "domain-clients-manage-the-device",
                            "module-name": "*",
                            "access-operations": "*",
                            "action": "permit",
                        }
                    ],
                }
            ],
        },
    }


@dataclass(frozen=True)
class _Stored:
    """The identity as read back from running, with the Signer of the LDevID key (the
    key is in netopeer2's keystore, in the clear: libnetconf2 reads it so)."""

    ldevid: x509.Certificate
    anchors: tuple[x509.Certificate, ...]
    signer: SoftwareSigner


def _load_b64_key(value: object) -> SoftwareSigner:
    if not isinstance(value, str):
        raise ValueError("cleartext-private-key is not a string")
    key = serialization.load_der_private_key(base64.b64decode(value, validate=True), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"the keystore holds a {type(key).__name__}, not an EC or RSA key")
    return SoftwareSigner(key)


def _load_b64_cert(value: object) -> x509.Certificate:
    if not isinstance(value, str):
        raise ValueError("cert-data is not a string")
    return x509.load_der_x509_certificate(base64.b64decode(value, validate=True))


def _stored_identity(tree: Mapping[str, Any]) -> _Stored | None:
    """The installed identity in an RFC 7951 tree of running, None unless complete (key
    with certificate, trust anchors and endpoint: what ``identity_edit`` writes)."""
    keys = tree.get("ietf-keystore:keystore", {}).get("asymmetric-keys", {})
    key = next((k for k in keys.get("asymmetric-key", []) if k.get("name") == KEY_NAME), None)
    bags = tree.get("ietf-truststore:truststore", {}).get("certificate-bags", {})
    bag = next((b for b in bags.get("certificate-bag", []) if b.get("name") == BAG_NAME), None)
    endpoints = (
        tree.get("ietf-netconf-server:netconf-server", {})
        .get("listen", {})
        .get("endpoints", {})
        .get("endpoint", [])
    )
    if key is None or bag is None or not any(e.get("name") == ENDPOINT_NAME for e in endpoints):
        return None
    certificates = key.get("certificates", {}).get("certificate", [])
    cert = next((c for c in certificates if c.get("name") == CERT_NAME), None)
    if cert is None or not bag.get("certificate"):
        return None
    return _Stored(
        _load_b64_cert(cert.get("cert-data")),
        tuple(_load_b64_cert(c.get("cert-data")) for c in bag["certificate"]),
        _load_b64_key(key.get("cleartext-private-key")),
    )


def _sysrepo_module() -> Any:
    try:
        import sysrepo
    except ImportError as exc:
        raise ConfigError(
            f"the sysrepo Python bindings are not installed ({exc}): run `make netopeer2` "
            "(scripts/netopeer2-stack.sh)"
        ) from exc
    return sysrepo


def _installed_revision(conn: Any) -> str | None:
    """The newest revision of the implemented ``zerotouch-bootstrap`` in sysrepo ("" for a
    module without revision), None when sysrepo does not have it."""
    with conn.get_ly_ctx() as ctx:
        for module in ctx:
            if module.name() == MODULE and module.implemented():
                return max((r.date() for r in module.revisions()), default="")
    return None


def _install_module(conn: Any) -> str | None:
    """Install ``zerotouch-bootstrap``, or update an older revision of it (the agent's state
    must fit the module it publishes into); what was done, None when sysrepo already had
    this revision or a newer one."""
    folder = yang_dir()
    module = sorted(folder.glob(f"{MODULE}@*.yang"))[-1]
    revision = module.stem.partition("@")[2]
    installed = _installed_revision(conn)
    if installed is None:
        conn.install_module(str(module), searchdirs=str(folder))
        return "installed"
    if installed >= revision:
        return None
    conn.update_modules([str(module)], searchdirs=[str(folder)])
    return f"updated from revision {installed or 'none'} to {revision}"


def install_modules() -> str | None:
    """Install the agent's YANG modules into sysrepo, or update older revisions of them
    (before netopeer2-server starts: netopeer2 2.4 builds its schema context at start).
    What was done, None when nothing was needed."""
    sysrepo = _sysrepo_module()
    try:
        with sysrepo.SysrepoConnection() as conn:
            return _install_module(conn)
    except sysrepo.SysrepoError as exc:
        raise ConfigError(f"cannot install {MODULE} into sysrepo: {exc}") from exc


class SysrepoHost:
    """A PluginHost (device/host.py) in netopeer2 on sysrepo; ``open`` it in the event loop
    that runs the agent, ``close`` it at the end. Needs ``import sysrepo`` (ConfigError
    naming ``make netopeer2`` otherwise); the repository is the one of
    ``SYSREPO_REPOSITORY_PATH``, as for netopeer2-server."""

    def __init__(
        self,
        folder: Path,
        *,
        tls_port: int,
        tls_address: str = "127.0.0.1",
        domain_user: str = DOMAIN_USER,
    ) -> None:
        if not 0 < tls_port < 65536:
            raise ValueError("tls_port must be a TCP port")
        self.folder = folder
        self.tls_address = tls_address
        self.tls_port = tls_port
        self.domain_user = domain_user
        self._factory = FactoryFolder(folder)
        self._store = FileAgentStore(folder)
        self._state: Mapping[str, Any] = {}
        self._stored: _Stored | None = None
        self._rpcs: dict[str, RpcFunction] = {}
        self._conn: Any = None
        self._session: Any = None  # subscriptions and notifications, used in the loop
        self._sysrepo: Any = None

    # -- life cycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect to sysrepo, install ``zerotouch-bootstrap``, serve its state, and read
        the installed identity (an incomplete one, left by hand-editing, is removed)."""
        sysrepo = self._sysrepo = _sysrepo_module()
        try:
            self._conn = sysrepo.SysrepoConnection()
            done = _install_module(self._conn)
            if done is not None:
                log.warning(
                    "%s was %s in sysrepo now: restart netopeer2-server to serve it "
                    "(`zerotouch netopeer2-plugin --install-modules` before its start avoids this)",
                    MODULE,
                    done,
                )
            self._session = self._conn.start_session("operational")
            self._session.subscribe_oper_data_request(
                MODULE, STATE_PATH, self._oper_data, asyncio_register=True
            )
        except sysrepo.SysrepoError as exc:
            await self.close()
            raise ConfigError(f"cannot serve {MODULE} through sysrepo: {exc}") from exc
        tree = await asyncio.to_thread(self._read_running)
        try:
            self._stored = _stored_identity(tree)
        except ValueError as exc:
            log.warning("the installed domain identity is unreadable, removing it: %s", exc)
            self._stored = None
        if self._stored is None and any(self._present(tree)):
            log.warning("removing an incomplete domain identity from netopeer2's configuration")
            await self.forget_identity()

    async def close(self) -> None:
        session, self._session = self._session, None
        conn, self._conn = self._conn, None
        if session is not None:
            session.stop()
        if conn is not None:
            conn.disconnect()

    @contextmanager
    def _edit_session(self, datastore: str) -> Iterator[Any]:
        session = self._conn.start_session(datastore)
        try:
            yield session
        finally:
            session.stop()

    def _read_running(self) -> dict[str, Any]:
        """The modules the identity lives in, as an RFC 7951 tree of running."""
        tree: dict[str, Any] = {}
        with self._edit_session("running") as session:
            for path in ("/ietf-keystore:keystore", "/ietf-truststore:truststore",
                         "/ietf-netconf-server:netconf-server"):  # fmt: skip
                try:
                    with session.get_data_ly(path) as data:
                        tree.update(json.loads(data.print_mem("json", with_siblings=True)))
                except self._sysrepo.SysrepoNotFoundError:
                    continue
        return tree

    @staticmethod
    def _present(tree: Mapping[str, Any]) -> Iterator[bool]:
        keys = tree.get("ietf-keystore:keystore", {}).get("asymmetric-keys", {})
        yield any(k.get("name") == KEY_NAME for k in keys.get("asymmetric-key", []))
        bags = tree.get("ietf-truststore:truststore", {}).get("certificate-bags", {})
        yield any(b.get("name") == BAG_NAME for b in bags.get("certificate-bag", []))

    # -- the factory identity: files in the folder (services/factory_files.py) ---------------

    def idevid_chain(self) -> list[x509.Certificate]:
        return self._factory.idevid_chain()

    def idevid_signer(self) -> SoftwareSigner:
        return self._factory.idevid_signer()

    def manufacturer_anchors(self) -> list[x509.Certificate]:
        return self._factory.manufacturer_anchors()

    def agent_store(self) -> FileAgentStore:
        return self._store

    # -- YANG: state, RPCs, notifications ----------------------------------------------------

    def yang_modules(self) -> Collection[str]:
        if self._conn is None:
            return ()
        with self._conn.get_ly_ctx() as ctx:
            return [module.name() for module in ctx if module.implemented()]

    def register_rpc(self, name: str, function: RpcFunction) -> None:
        """Subscribe to the RPC ``module:name``; sysrepo hands it over from netopeer2."""
        if name in self._rpcs:
            self._rpcs[name] = function
            return
        self._rpcs[name] = function
        self._session.subscribe_rpc_call(
            f"/{name}", self._rpc_handler(name), asyncio_register=True, strict=True
        )

    def _rpc_handler(self, name: str) -> Callable[..., Awaitable[dict[str, Any] | None]]:
        sysrepo = self._sysrepo

        async def handle(
            xpath: str, input_params: dict[str, Any], event: str, private_data: object
        ) -> dict[str, Any] | None:
            if event != "rpc":
                return None
            try:
                output = await self._rpcs[name](input_params)
                if output is None:
                    return None
            except ZerotouchError as exc:
                raise sysrepo.SysrepoCallbackFailedError(exc.one_line()) from exc
            module = name.partition(":")[0]
            return {key.removeprefix(f"{module}:"): value for key, value in output.items()}

        return handle

    def publish_state(self, tree: Mapping[str, Any]) -> None:
        """Kept in memory; sysrepo asks for it when a client reads the operational state."""
        self._state = dict(tree)

    def _oper_data(self, xpath: str, private_data: object) -> dict[str, Any] | None:
        """The state in the libyang-python dict form sysrepo's callback wants: the RFC 7951
        tree parsed by libyang (types checked against the module) and printed back."""
        if not self._state:
            return None
        with self._conn.get_ly_ctx() as ctx:
            node = ctx.parse_data_mem(json.dumps(self._state), "json", parse_only=True, strict=True)
            if node is None:
                return None
            try:
                printed: dict[str, Any] = node.print_dict(absolute=False, with_siblings=True)
            finally:
                node.free()
        return {key.removeprefix(f"{MODULE}:"): value for key, value in printed.items()}

    def emit_event(self, name: str, data: Mapping[str, Any]) -> None:
        """The notification through sysrepo (netopeer2 forwards it to NETCONF subscribers)."""
        if self._session is None:
            return
        import libyang

        with self._conn.get_ly_ctx() as ctx:
            node = ctx.parse_op_mem(
                "json", json.dumps({name: dict(data)}), dtype=libyang.DataType.NOTIF_YANG
            )
            try:
                self._session.notification_send_ly(node)
            except self._sysrepo.SysrepoError as exc:
                log.warning("notification %s not sent: %s", name, exc)
            finally:
                node.free()

    # -- the domain identity ----------------------------------------------------------------

    def generate_ldevid_key(self, kind: certs.KeyKind) -> SoftwareSigner:
        if kind == "ed25519":
            raise ValueError("netopeer2's keystore takes EC or RSA keys, not Ed25519")
        return SoftwareSigner(certs.generate_key(kind))

    async def install_identity(
        self, identity: SigningIdentity, anchors: Sequence[x509.Certificate]
    ) -> None:
        """One sysrepo change of running (then startup) adds key, certificate, trust
        anchors, TLS endpoint and NACM rules; netopeer2 listens once it applied it."""
        edit = identity_edit(
            identity,
            anchors,
            address=self.tls_address,
            port=self.tls_port,
            user=self.domain_user,
        )
        # A renewal merges over the installed identity (same names: the endpoint stays, its
        # sessions continue) and drops only the anchors the new set no longer has.
        stale = len(self._stored.anchors) if self._stored is not None else 0
        await self._apply(delete=_anchor_paths(range(len(anchors), stale)), edit=edit)
        self._stored = _Stored(
            identity.cert, tuple(anchors), SoftwareSigner(tls_identity(identity).key)
        )
        log.info(
            "domain identity installed: NETCONF/TLS on %s:%d for %s",
            self.tls_address,
            self.tls_port,
            identity.cert.subject.rfc4514_string(),
        )

    def installed_identity(self) -> InstalledIdentity | None:
        if self._stored is None:
            return None
        stored = self._stored
        return InstalledIdentity((stored.ldevid,), stored.anchors, stored.signer)

    async def forget_identity(self) -> None:
        """One change removes what ``install_identity`` added; the TLS endpoint goes with it."""
        await self._apply(delete=IDENTITY_PATHS, edit=None)
        self._stored = None
        log.warning("domain identity forgotten: the NETCONF/TLS endpoint is removed")

    def management_ports(self) -> dict[str, int]:
        return {"netconf-tls-port": self.tls_port} if self._stored is not None else {}

    async def _apply(self, *, delete: Sequence[str], edit: Mapping[str, Any] | None) -> None:
        try:
            await asyncio.to_thread(self._apply_sync, delete, edit)
        except self._sysrepo.SysrepoError as exc:
            raise StorageError(f"netopeer2 refused the identity change: {exc}") from exc

    def _apply_sync(self, delete: Sequence[str], edit: Mapping[str, Any] | None) -> None:
        """The same change to running, then to startup; each is one sysrepo transaction."""
        for datastore in ("running", "startup"):
            with self._edit_session(datastore) as session:
                for path in delete:
                    session.delete_item(path)
                if edit is not None:
                    with self._conn.get_ly_ctx() as ctx:
                        node = ctx.parse_data_mem(
                            json.dumps(edit), "json", parse_only=True, strict=True
                        )
                    try:
                        session.edit_batch_ly(node, "merge")
                    finally:
                        node.free()
                session.apply_changes(timeout_ms=_EDIT_TIMEOUT_MS)

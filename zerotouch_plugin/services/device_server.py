"""The reference device: datastores, NETCONF over SSH and TLS, and RESTCONF, over a device folder.

It implements the plugin host interface (``device/host.py``) for the pledge agent. The
domain identity (``ldevid.pem`` with its chain, ``ldevid.key``, ``domain-ca.pem`` in the folder, the
last one the commit point: ``device/domain_files.py``) is read at start, after leftovers of
an interrupted install are discarded, and again when an identity is installed: NETCONF/TLS
picks it up for the next connection and RESTCONF is restarted on the same address, with no
process restart. Without a domain identity the TLS listeners accept no one (RFC 8995
§5.9.4: the domain CA is the only trust anchor for management access).

The RESTCONF and NETCONF/SSH sockets are bound and listening at start, but their servers
(aiohttp, a third of an idle device's memory; asyncssh, about 8 MiB with what it loads) are
loaded with their first connection, which the kernel holds until then: a device managed over
NETCONF/TLS never pays for them. A server that fails to load then ends the device's run
(``serve``) with that error, as it would have ended the start, rather than leave the device
up without the listener.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import socket
import ssl
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography import x509

from zerotouch_plugin._text import is_decimal
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.artifacts.signer import SigningIdentity, SoftwareSigner, tls_identity
from zerotouch_plugin.config import DeviceConfig
from zerotouch_plugin.device.agent_store import FileAgentStore
from zerotouch_plugin.device.datastore import Datastores, RpcFunction
from zerotouch_plugin.device.domain_files import (
    CA_FILE,
    CERT_FILE,
    KEY_FILE,
    discard_incomplete,
    forget_domain,
    write_domain,
)
from zerotouch_plugin.device.host import AgentStore, InstalledIdentity
from zerotouch_plugin.device.restconf_state import publish_restconf_state
from zerotouch_plugin.device.schema import DeviceSchema, load_device_schema
from zerotouch_plugin.errors import AccessDenied, ConfigError, StorageError
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services._tls import server_context
from zerotouch_plugin.services.netconf import (
    TlsListener,
    TlsSettings,
    build_netconf_server,
    map_certificate,
    start_netconf_tls,
)
from zerotouch_plugin.services.netconf.host_keys import prepare_host_keys

if TYPE_CHECKING:  # imported with the listener's first client: an idle device never loads them
    from aiohttp import web  # RESTCONF

    from zerotouch_plugin.services.netconf.ssh import SshListener  # asyncssh

__all__ = ["DeviceServer", "device_schema", "parse_address"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

_BACKLOG = 100  # asyncio's default: connections the kernel queues before they are accepted

_STATE_NAME = "plugin"
# The factory files of the device folder ('zerotouch vendor idevid' writes them): the IDevID
# then its CA chain, its key, and the manufacturer's trust anchor for vouchers.
IDEVID_FILE = "idevid.pem"
IDEVID_KEY_FILE = "idevid.key"
MASA_CA_FILE = "masa-ca.pem"


def parse_address(value: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not is_decimal(port) or int(port) > 65535:
        raise ConfigError(f"{what} {value!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (a name: its first address) and listening, as
    asyncio's servers bind theirs (address reuse; IPv6 only on an IPv6 address)."""
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    return socket.create_server(address[:2], family=family, backlog=_BACKLOG)


def device_schema(folder: Path, config: DeviceConfig) -> DeviceSchema:
    """The schema of ``config``'s YANG modules; relative ``yang_dirs`` are in ``folder``."""
    modules = [(name, rev) for name, _, rev in (m.partition("@") for m in config.yang_modules)]
    return load_device_schema([folder / d for d in config.yang_dirs], modules)


async def _import_aside(module: str) -> None:
    """Import ``module`` (a server's library, loaded with its first client) in a thread: the
    import takes about 0.1 s of CPU, during which the event loop still gets its turns and
    goes on serving the sessions already open."""
    if module not in sys.modules:
        await asyncio.to_thread(importlib.import_module, module)


class _FirstConnection:
    """A bound, listening socket whose server is loaded when the first client connects. The
    kernel queues that connection (and the next ones, up to the backlog) until the server
    accepts them, so a client only waits for the loading."""

    def __init__(
        self, sock: socket.socket, load: Callable[[socket.socket], Coroutine[Any, Any, None]]
    ) -> None:
        self._sock: socket.socket | None = sock
        self._load = load
        self._loading: asyncio.Task[None] | None = None
        asyncio.get_running_loop().add_reader(sock, self._connected)

    def _connected(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(sock)
        self._loading = loop.create_task(self._load(sock))

    async def close(self) -> None:
        """Stop listening, or wait until the server being loaded is up (its owner stops it)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            asyncio.get_running_loop().remove_reader(sock)
            sock.close()
        loading, self._loading = self._loading, None
        if loading is not None:
            await loading


@dataclass(frozen=True)
class _Domain:
    identity: certs.Identity
    anchors: tuple[x509.Certificate, ...]


class DeviceServer:
    """One device: shared datastores behind every listener (SSH, TLS, RESTCONF)."""

    def __init__(
        self,
        folder: Path,
        config: DeviceConfig,
        *,
        schema: DeviceSchema | None = None,
        agent_store: AgentStore | None = None,
    ) -> None:
        """``schema``: a schema built once for many devices of one process (the virtual
        fleet), else this device's own from its configuration; ``agent_store``: where the
        agent keeps its state, by default files in the folder."""
        self.folder = folder
        self.config = config
        if schema is None:
            schema = device_schema(folder, config)
        self.datastores = Datastores(schema, folder, edit_budget=config.max_edit_entries)
        self.netconf = build_netconf_server(self.datastores, self.config.netconf_limits)
        discard_incomplete(folder)
        self._domain = self._load_domain()
        self._tls_settings: TlsSettings | None = None
        self._ssh: SshListener | None = None
        self._ssh_pending: _FirstConnection | None = None  # listening, asyncssh not loaded yet
        self._tls: TlsListener | None = None
        self._restconf: web.AppRunner | None = None
        self._restconf_address: tuple[str, int] | None = None
        self._restconf_app: web.Application | None = None
        self._restconf_context: ssl.SSLContext | None = None
        self._restconf_pending: _FirstConnection | None = None  # listening, server not loaded
        self._retiring: set[asyncio.Task[None]] = set()  # RESTCONF servers shutting down
        self._failure: Exception | None = None  # why a listener's server did not load
        self._failed = asyncio.Event()
        self.bound: dict[str, tuple[str, int]] = {}
        self._agent_store = FileAgentStore(folder) if agent_store is None else agent_store
        self._files = asyncio.Lock()  # one change of the identity files at a time

    # -- identity -------------------------------------------------------------------------

    @property
    def has_domain_identity(self) -> bool:
        return self._domain is not None

    def _load_domain(self) -> _Domain | None:
        ca = self.folder / CA_FILE  # the commit point (device/domain_files.py)
        if not ca.exists():
            return None
        try:
            identity = certfiles.load_identity(self.folder / CERT_FILE, self.folder / KEY_FILE)
            anchors = tuple(certs.load_certs(ca.read_bytes()))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.folder}: unusable domain identity: {exc}") from exc
        if not anchors:
            raise ConfigError(f"{ca}: no certificate")
        return _Domain(identity, anchors)

    def _context(self) -> ssl.SSLContext | None:
        if self._domain is None:
            return None
        return server_context(
            self._domain.identity, client_cas=self._domain.anchors, require_client_cert=True
        )

    def _current_tls(self) -> TlsSettings | None:
        return self._tls_settings

    def _refresh_tls(self) -> None:
        ctx = self._context()
        self._tls_settings = (
            None
            if ctx is None or self._domain is None
            else TlsSettings(ctx, self._domain.anchors, self.config.cert_to_name)
        )

    def _client_name(self, cert: x509.Certificate, chain: Sequence[x509.Certificate]) -> str:
        """RESTCONF's cert-to-name (RFC 8040 §2.5): the rules NETCONF/TLS uses, so a client
        refused by one is refused by the other (another device's LDevID included); ``chain``
        is the rest of the chain TLS reported (a rule may name any of its CAs)."""
        settings = self._tls_settings
        if settings is None:
            raise AccessDenied("no domain identity yet")
        return map_certificate(cert, settings.cert_to_name, settings.trust_anchors, chain)

    # -- listeners ------------------------------------------------------------------------

    async def start(
        self,
        *,
        netconf_ssh: str | None = None,
        netconf_tls: str | None = None,
        restconf_address: str | None = None,
    ) -> dict[str, tuple[str, int]]:
        """Start the listeners given (or configured); returns name -> bound (host, port)."""
        netconf_ssh = netconf_ssh or self.config.netconf_ssh
        netconf_tls = netconf_tls or self.config.netconf_tls
        restconf_address = restconf_address or self.config.restconf
        self._refresh_tls()
        try:
            if netconf_ssh:
                self._listen_ssh(*parse_address(netconf_ssh, "--netconf-ssh"))
            if netconf_tls:
                host, port = parse_address(netconf_tls, "--netconf-tls")
                self._tls = await start_netconf_tls(
                    self.netconf,
                    host=host,
                    port=port,
                    settings=self._current_tls,
                    limits=self.config.limits,
                )
                self.bound["netconf-tls"] = (host, self._tls.port)
            if restconf_address:
                self._restconf_address = parse_address(restconf_address, "--restconf")
                await self._start_restconf()
        except BaseException:
            await self.close()
            raise
        return dict(self.bound)

    def _listen_ssh(self, host: str, port: int) -> None:
        """Check the users and host keys (created on first start) and listen now; asyncssh
        loads with the first client (``_load_ssh``)."""
        if not self.config.users:
            raise ConfigError("NETCONF over SSH needs at least one configured user")
        prepare_host_keys(self.folder)
        try:
            sock = listening_socket(host, port)
        except OSError as exc:
            raise ConfigError(f"cannot listen for NETCONF/SSH on {host}:{port}: {exc}") from exc
        self.bound["netconf-ssh"] = (host, sock.getsockname()[1])
        self._ssh_pending = _FirstConnection(sock, self._load_ssh)

    async def _load_ssh(self, sock: socket.socket) -> None:
        host, port = self.bound["netconf-ssh"]
        try:
            await _import_aside("zerotouch_plugin.services.netconf.ssh")
            from zerotouch_plugin.services.netconf.ssh import load_host_keys, start_netconf_ssh

            self._ssh = await start_netconf_ssh(
                self.netconf,
                host=host,
                port=port,
                host_keys=await asyncio.to_thread(load_host_keys, self.folder),
                users=self.config.users,
                limits=self.config.netconf_limits,
                sock=sock,
            )
        except Exception as exc:
            sock.close()
            self.bound.pop("netconf-ssh", None)
            self._fail("NETCONF/SSH", exc)

    async def _start_restconf(self) -> None:
        """Listen on the RESTCONF address; the server is loaded at once if it was before,
        else with the first connection (``_FirstConnection``)."""
        assert self._restconf_address is not None
        ctx = self._context()
        if ctx is None:
            log.warning("RESTCONF waits for a domain identity (ldevid.pem): not listening yet")
            return
        host, port = self._restconf_address
        if "restconf" in self.bound:
            port = self.bound["restconf"][1]  # keep the address clients know
        sock = listening_socket(host, port)
        self.bound["restconf"] = (host, sock.getsockname()[1])
        self._restconf_context = ctx
        if self._restconf_app is not None:
            await self._serve_restconf(sock, ctx)
            return
        publish_restconf_state(self.datastores)  # RFC 8040 §9.1, readable before the server
        self._restconf_pending = _FirstConnection(sock, lambda s: self._load_restconf(s, ctx))
        log.info(
            "RESTCONF bound to %s:%d; its server loads with the first connection",
            *self.bound["restconf"],
        )

    async def _load_restconf(self, sock: socket.socket, ctx: ssl.SSLContext) -> None:
        try:
            await self._serve_restconf(sock, ctx)
        except Exception as exc:
            self.bound.pop("restconf", None)
            self._fail("RESTCONF", exc)

    def _fail(self, listener: str, exc: Exception) -> None:
        """A server loaded with its first client did not start: ``serve`` ends with ``exc``."""
        log.error("%s server failed to start: not listening", listener, exc_info=exc)
        if self._failure is None:
            self._failure = exc
        self._failed.set()

    async def serve(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set. Raises the error of a server that failed to load with
        its first client: the device ends as a failed start does, not without the listener."""
        waits = [asyncio.ensure_future(event.wait()) for event in (stop, self._failed)]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        if self._failure is not None:
            raise self._failure

    async def _serve_restconf(self, sock: socket.socket, ctx: ssl.SSLContext) -> None:
        """Serve on ``sock``, closed (its queued clients refused) when that fails."""
        host, port = self.bound["restconf"]
        try:
            await _import_aside("zerotouch_plugin.services.restconf")
            from zerotouch_plugin.services import restconf  # aiohttp: only once a client comes

            if self._restconf_app is None:
                self._restconf_app = restconf.restconf_app(
                    self.datastores, client_name=self._client_name
                )
            self._restconf = await restconf.start_restconf(
                self._restconf_app,
                host=host,
                port=port,
                ssl_context=ctx,
                limits=self.config.limits,
                sock=sock,
            )
        except BaseException:
            sock.close()
            raise

    async def close(self) -> None:
        await self.netconf.close()
        pending, self._ssh_pending = self._ssh_pending, None
        if pending is not None:
            await pending.close()  # a server loaded meanwhile is closed below
        for listener in (self._ssh, self._tls):
            if listener is not None:
                await listener.close()
        await self._retire_restconf()
        await asyncio.gather(*self._retiring)
        self._ssh = self._tls = None

    # -- plugin host (device/host.py) ------------------------------------------------------

    def idevid_chain(self) -> list[x509.Certificate]:
        path = self.folder / IDEVID_FILE
        try:
            chain = certs.load_certs(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: no usable IDevID: {exc}") from exc
        if not chain:
            raise ConfigError(f"{path}: no certificate")
        return chain

    def idevid_signer(self) -> SoftwareSigner:
        path = self.folder / IDEVID_KEY_FILE
        try:
            return SoftwareSigner(certfiles.load_key_file(path))
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"{path}: no usable IDevID key: {exc}") from exc

    def manufacturer_anchors(self) -> list[x509.Certificate]:
        path = self.folder / MASA_CA_FILE
        try:
            anchors = certs.load_certs(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{path}: no manufacturer trust anchor for vouchers ('zerotouch vendor idevid' "
                f"writes it): {exc}"
            ) from exc
        if not anchors:
            raise ConfigError(f"{path}: no certificate")
        return anchors

    def agent_store(self) -> AgentStore:
        return self._agent_store

    def yang_modules(self) -> list[str]:
        return [m.name for m in self.datastores.schema.modules]

    def generate_ldevid_key(self, kind: certs.KeyKind) -> SoftwareSigner:
        return SoftwareSigner(certs.generate_key(kind))

    async def install_identity(
        self, identity: SigningIdentity, anchors: Sequence[x509.Certificate]
    ) -> None:
        """Persist the domain identity and switch TLS listeners to it (RFC 8995 §5.9.4).
        The key must be a SoftwareSigner's: this server's TLS loads keys into OpenSSL. A
        renewal (same trust anchors) keeps every open session."""
        if not anchors:
            raise ValueError("at least one domain trust anchor is needed")
        key = tls_identity(identity).key
        try:
            await self._change_files(
                lambda: write_domain(
                    self.folder,
                    key=key,
                    chain=[identity.cert, *identity.chain],
                    anchors=list(anchors),
                )
            )
        except OSError as exc:
            raise StorageError(f"cannot store the domain identity in {self.folder}: {exc}") from exc
        previous, current = self._domain, self._load_domain()
        self._domain = current
        if previous is not None and current is not None and previous.anchors == current.anchors:
            self._renew_tls()
            return
        await self._switch_tls()

    async def _change_files(self, change: Callable[[], _T]) -> _T:
        """Run ``change`` of the identity files in a thread, one change at a time. A caller
        cancelled meanwhile (the agent stops a renewal before a factory reset) returns only
        when the thread has ended, as a thread cannot be stopped: else a renewal's files
        written after the reset's removal would bring the forgotten domain back at the next
        start (RFC 8995 §5.9.4)."""
        async with self._files:
            job = asyncio.ensure_future(asyncio.to_thread(change))
            try:
                return await asyncio.shield(job)
            except asyncio.CancelledError:
                await asyncio.wait([job])
                raise

    def _renew_tls(self) -> None:
        """A renewed LDevID under the same trust anchors: new NETCONF/TLS connections get it,
        sessions open now go on; RESTCONF's context loads it in place (OpenSSL uses the new
        certificate for the next handshakes), so its connections go on too."""
        self._refresh_tls()
        if self._restconf_context is not None:  # serving, or to serve with it once loaded
            self._restconf_context.load_cert_chain(self.folder / CERT_FILE, self.folder / KEY_FILE)
        log.info("LDevID renewed; open management sessions continue")

    async def _switch_tls(self) -> None:
        """New TLS connections use the current identity; NETCONF/TLS sessions authenticated
        against the old trust anchors end (after the RPC in progress, which may be the one
        that switched: a factory reset); RESTCONF restarts on its address."""
        self._refresh_tls()
        if self._tls is not None:
            self._tls.end_sessions()
        if self._restconf_address is not None:
            await self._retire_restconf()
            await self._start_restconf()

    async def _retire_restconf(self) -> None:
        """Stop listening now; the server shuts down in the background. Awaiting that here
        would deadlock when the switch comes from a RESTCONF request (``restart-bootstrap``
        with ``factory-reset``): the shutdown waits for that request's handler, which waits
        for the shutdown."""
        pending, self._restconf_pending = self._restconf_pending, None
        if pending is not None:
            await pending.close()  # a server loaded meanwhile is stopped below
        self._restconf_context = None
        runner, self._restconf = self._restconf, None
        if runner is None:
            return
        for site in list(runner.sites):
            await site.stop()  # closes the listening socket; the port is free again
        task = asyncio.get_running_loop().create_task(runner.cleanup())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def installed_identity(self) -> InstalledIdentity | None:
        if self._domain is None:
            return None
        identity = self._domain.identity
        return InstalledIdentity(
            (identity.cert, *identity.chain), self._domain.anchors, SoftwareSigner(identity.key)
        )

    async def forget_identity(self) -> None:
        """Factory reset of the domain identity: files removed (commit point first), TLS
        listeners back to refusing everyone, RESTCONF stopped."""
        try:
            removed = await self._change_files(lambda: forget_domain(self.folder))
        except OSError as exc:
            raise StorageError(f"cannot remove the domain identity: {exc}") from exc
        log.warning("domain identity forgotten (%s)", ", ".join(removed) or "nothing stored")
        self._domain = None
        await self._switch_tls()

    def management_ports(self) -> dict[str, int]:
        if self._domain is None:
            return {}
        names = (
            ("netconf-tls", "netconf-tls-port"),
            ("netconf-ssh", "netconf-ssh-port"),
            ("restconf", "restconf-port"),
        )
        return {key: self.bound[name][1] for name, key in names if name in self.bound}

    def register_rpc(self, name: str, function: RpcFunction) -> None:
        self.datastores.register_rpc(name, function)

    def publish_state(self, tree: Mapping[str, Any]) -> None:
        self.datastores.publish_state(_STATE_NAME, tree)

    def emit_event(self, name: str, data: Mapping[str, Any]) -> None:
        self.datastores.emit_event({name: dict(data)})

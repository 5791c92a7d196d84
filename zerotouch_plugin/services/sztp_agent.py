"""The SZTP path of the device agent (RFC 8572): bootstraps from bootstrap servers and
removable media, through the plugin host interface, and publishes what it did as
``/zerotouch-bootstrap:bootstrap``.

Sources are tried in the order configured (``SztpSettings``): the bootstrap-server URLs
(``--bootstrap-server``), then the removable-storage folder (``--bootstrap-media``). A round
through all of them that ends without onboarding is followed by a wait (doubled each round,
with jitter, ``roles/backoff.py``) and another round. Each step is an event of the bootstrap
state: ``sztp-fetch`` (a source is tried), ``sztp-<progress-type>`` (what the device reported,
RFC 8572 §7.3, recorded also when the server is not told), ``sztp-source-failed``,
``sztp-complete``; the ``registrar/tried`` list names each bootstrap server with source
``sztp``. Bootstrapping complete is kept in the host's store (``sztp-complete``), so a
restart does not onboard again; ``restart-bootstrap`` starts over.

``DatastoreOnboarder`` is what onboarding does on the reference device: configuration merged
into (or replacing) running, validated against the device's YANG before anything changes,
then copied to startup; a boot image is recorded (``boot-image.json``), not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from zerotouch_plugin._checks import require_count, require_positive
from zerotouch_plugin._files import write_atomic
from zerotouch_plugin._json import bounded_loads
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.artifacts.signer import tls_identity
from zerotouch_plugin.artifacts.sztp import BootImage, ConfigurationHandling, Encoding, SshHostKey
from zerotouch_plugin.artifacts.xmlsafe import parse_untrusted
from zerotouch_plugin.config import AgentConfig, is_dns_label
from zerotouch_plugin.device.datastore import Datastore, Datastores
from zerotouch_plugin.device.edit import apply_edit
from zerotouch_plugin.device.host import PluginHost
from zerotouch_plugin.device.xmlcodec import NETCONF_BASE_NS, tree_from_xml
from zerotouch_plugin.errors import (
    ConfigError,
    Conflict,
    InvalidInput,
    StorageError,
    ZerotouchError,
)
from zerotouch_plugin.roles.backoff import Backoff
from zerotouch_plugin.roles.bootstrap import (
    SZTP_SOURCE,
    BootstrapState,
    Phase,
    PhaseChange,
)
from zerotouch_plugin.roles.sztp_device import (
    Done,
    Failed,
    Fetch,
    Report,
    Source,
    SourceKind,
    SztpAction,
    SztpDevice,
    SztpDeviceConfig,
)
from zerotouch_plugin.services.netconf.host_keys import public_host_keys
from zerotouch_plugin.services.pledge_agent import (
    RESTART_RPC,
    factory_identity,
    publish_state,
    read_key,
    reset_requested,
    restore_state,
)
from zerotouch_plugin.services.sztp_client import (
    IMAGE_FILE,
    SCRIPT_PREFIX,
    ScriptPolicy,
    SztpClient,
    drive,
)
from zerotouch_plugin.services.sztp_dns import dns_locations
from zerotouch_plugin.services.sztp_sources import dhcp_uris, lease_domain, lease_uris

__all__ = [
    "COMPLETE_KEY",
    "IMAGE_RECORD",
    "DatastoreOnboarder",
    "SztpAgent",
    "SztpSettings",
    "discard_leftovers",
    "ssh_host_keys",
]

log = logging.getLogger(__name__)

COMPLETE_KEY = "sztp-complete"
IMAGE_RECORD = "boot-image.json"
_SZTP_SESSION_ID = -2  # writes of the SZTP agent, distinct from any client session


@dataclass(frozen=True)
class SztpSettings:
    """The SZTP sources and limits of one device.

    ``bootstrap_servers``: https URLs, tried in order (RFC 8572 §4.4); ``server_anchors``:
    the certificates a bootstrap server's TLS certificate may chain to (the trusted path,
    §5.1), applied to every configured URL; ``media``: a removable-storage folder (§4.1).
    ``hw_model``, ``os_name``, ``os_version`` are sent with get-bootstrapping-data (§7.1).
    """

    bootstrap_servers: tuple[str, ...] = ()
    server_anchors: tuple[x509.Certificate, ...] = ()
    media: Path | None = None
    dhcp_interface: str | None = None  # ask DHCPv4/v6 on it for option 143/136 (§8)
    dhcp_lease: Path | None = None  # or read option 143/136 from this lease file
    dns_domain: str | None = None  # TXT and SRV records under it (§4.2)
    dns_server: str | None = None  # ADDRESS[:PORT] of the resolver; None: the system's
    mdns_interface: str | None = None  # multicast DNS queries for .local records on it (§4.2)
    hw_model: str | None = None
    os_name: str | None = None
    os_version: str | None = None
    scripts: ScriptPolicy = field(default_factory=ScriptPolicy)
    encoding: Encoding = Encoding.JSON
    ssh_host_keys: tuple[SshHostKey, ...] = ()  # reported with bootstrap-complete (§7.3)
    basic_auth: tuple[str, str] | None = None
    timeout: float = 30.0
    retry_delay: float = 2.0
    max_delay: float = 300.0
    rounds: int = 0  # 0: never give up
    max_redirects: int = 8
    history: int = 64

    def __post_init__(self) -> None:
        sources = (
            self.media,
            self.dhcp_interface,
            self.dhcp_lease,
            self.dns_domain,
            self.mdns_interface,
        )
        if not (self.bootstrap_servers or any(s is not None for s in sources)):
            raise ConfigError(
                "SZTP needs a bootstrap server URL, DHCP (an interface or a lease file), a "
                "DNS domain, an mDNS interface or a bootstrap media folder"
            )
        for name in ("timeout", "retry_delay", "max_delay"):
            require_positive(getattr(self, name), name, "a number of seconds")
        require_count(self.max_redirects, "max_redirects")
        if not isinstance(self.rounds, int) or self.rounds < 0:
            raise ValueError("rounds must be 0 (never give up) or more")

    @classmethod
    def of(cls, config: AgentConfig) -> SztpSettings:
        """The SZTP keys of the agent's configuration, trust anchor files read."""
        anchors: list[x509.Certificate] = []
        for path in config.bootstrap_server_ca:
            try:
                found = certs.load_certs(Path(path).read_bytes())
            except (OSError, ValueError, InvalidInput) as exc:
                raise ConfigError(f"bootstrap_server_ca {path}: {exc}") from None
            if not found:
                raise ConfigError(f"bootstrap_server_ca {path}: no certificate")
            anchors += found
        try:
            return cls(
                bootstrap_servers=config.bootstrap_servers,
                server_anchors=tuple(anchors),
                media=_path(config.bootstrap_media),
                dhcp_interface=config.bootstrap_dhcp,
                dhcp_lease=(
                    None
                    if config.bootstrap_dhcp_lease is None
                    else Path(config.bootstrap_dhcp_lease)
                ),
                dns_domain=config.bootstrap_dns_domain,
                dns_server=config.bootstrap_dns_server,
                mdns_interface=config.bootstrap_mdns_interface,
                hw_model=config.hw_model,
                os_name=config.os_name,
                os_version=config.os_version,
                scripts=ScriptPolicy(
                    timeout=config.script_timeout, interpreter=config.script_interpreter
                ),
                encoding=Encoding(config.bootstrap_encoding),
                basic_auth=_credentials(config.bootstrap_credentials),
                timeout=config.bootstrap_timeout,
                retry_delay=config.bootstrap_retry_delay,
                max_delay=config.bootstrap_max_delay,
                rounds=config.bootstrap_rounds,
                history=config.bootstrap_history,
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"SZTP configuration: {exc}") from None

    def sources(
        self, dhcp: tuple[str, ...] = (), serial: str = "", domain: str | None = None
    ) -> tuple[Source, ...]:
        """Configured servers, then those DHCP named (the same anchors apply, §5.1), then DNS
        (§4.2): the TXT records of ``serial``, by mDNS on ``mdns_interface`` and by unicast
        in ``domain`` (default: the configured one), then the SRV records the same two
        ways; then the media folder."""
        domain = domain or self.dns_domain
        servers = [
            Source(SourceKind.CONFIGURED, url, self.server_anchors)
            for url in self.bootstrap_servers
        ]
        servers += [Source(SourceKind.DHCP, url, self.server_anchors) for url in dhcp]
        if serial:
            txt, srv = dns_locations(
                serial, domain, server=self.dns_server, mdns_interface=self.mdns_interface
            )
            servers += [Source(SourceKind.DNS_TXT, where) for where in txt]
            servers += [Source(SourceKind.DNS_SRV, where) for where in srv]
        media = [] if self.media is None else [Source(SourceKind.MEDIA, str(self.media))]
        return (*servers, *media)

    async def dns_domain_now(self) -> str | None:
        """The configured DNS domain, else the one of the DHCP lease (RFC 8572 §4.2)."""
        if self.dns_domain is not None or self.dhcp_lease is None:
            return self.dns_domain
        domain = await asyncio.to_thread(lease_domain, self.dhcp_lease)
        if domain is not None and not all(is_dns_label(label) for label in domain.split(".")):
            raise InvalidInput(f"the DHCP lease's domain {domain!r} is not a DNS domain")
        return domain

    async def dhcp_uris(self) -> tuple[str, ...]:
        """Bootstrap-server URIs from DHCP this round (none when DHCP is not configured)."""
        found: list[str] = []
        if self.dhcp_lease is not None:
            found += await asyncio.to_thread(lease_uris, self.dhcp_lease)
        if self.dhcp_interface is not None:
            found += await dhcp_uris(self.dhcp_interface)
        return tuple(dict.fromkeys(found))


def _credentials(path: str | None) -> tuple[str, str] | None:
    """``USER:PASSWORD`` from the first line of the file (HTTP basic, RFC 7617)."""
    if path is None:
        return None
    try:
        line = Path(path).read_text().splitlines()[0] if Path(path).stat().st_size else ""
    except OSError as exc:
        raise ConfigError(f"bootstrap_credentials {path}: {exc}") from None
    user, sep, password = line.partition(":")
    if not sep or not user:
        raise ConfigError(f"bootstrap_credentials {path}: the first line must be USER:PASSWORD")
    return user, password


def discard_leftovers(workdir: Path) -> list[str]:
    """Script files and partial image downloads a killed run left behind (the names
    ``run_script`` and ``download_image`` give them); their names."""
    found = [
        *workdir.glob(f"{SCRIPT_PREFIX}*"),
        *workdir.glob(f".{IMAGE_FILE}.*"),
        *workdir.glob(IMAGE_FILE),
    ]
    for path in found:
        path.unlink(missing_ok=True)
    return [path.name for path in found]


def ssh_host_keys(folder: Path) -> tuple[SshHostKey, ...]:
    """The device's SSH host keys as report-progress carries them (RFC 8572 §7.3); read
    without asyncssh, which the device loads only with its first SSH client."""
    return tuple(SshHostKey(name.decode(), blob) for name, blob in public_host_keys(folder))


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


class DatastoreOnboarder:
    """Onboarding on the reference device: its datastores and its folder."""

    def __init__(self, datastores: Datastores, folder: Path) -> None:
        self.datastores = datastores
        self.folder = folder

    def _tree(self, configuration: bytes) -> dict[str, Any]:
        """RFC 7951 JSON or XML (top-level data elements, or wrapped in <config>/<data>)."""
        text = configuration.strip()
        if text.startswith(b"{"):
            try:
                tree = bounded_loads(text)
            except ValueError as exc:
                raise InvalidInput(f"the conveyed configuration is not JSON: {exc}") from None
            if not isinstance(tree, dict):
                raise InvalidInput("the conveyed configuration must be a JSON object")
            return tree
        root = parse_untrusted(text, "the conveyed configuration")
        wrappers = {f"{{{NETCONF_BASE_NS}}}config", f"{{{NETCONF_BASE_NS}}}data"}
        elements = [e for e in root if isinstance(e.tag, str)] if root.tag in wrappers else [root]
        return tree_from_xml(self.datastores.schema, elements)

    async def apply_configuration(
        self, configuration: bytes, handling: ConfigurationHandling
    ) -> None:
        """Validated as a whole before running changes (a refusal changes nothing), and
        startup takes it in the same commit so that it survives a restart (RFC 8572 §5.6): a
        lock on either datastore refuses it whole."""
        tree = self._tree(configuration)
        schema = self.datastores.schema

        def change(current: Mapping[str, Any]) -> Mapping[str, Any]:
            if handling is ConfigurationHandling.REPLACE:
                return tree
            return apply_edit(schema, current, tree)

        await self.datastores.modify(
            Datastore.RUNNING, change, session_id=_SZTP_SESSION_ID, also=(Datastore.STARTUP,)
        )

    async def install_image(self, path: Path, image: BootImage, sha256: bytes) -> None:
        """The reference device has no image to boot: it records what it would install."""
        record = {
            "os-name": image.os_name,
            "os-version": image.os_version,
            "sha-256": sha256.hex(),
            "size": path.stat().st_size,
            "installed": datetime.now(UTC).isoformat(),
        }
        try:
            write_atomic(self.folder / IMAGE_RECORD, json.dumps(record, indent=1).encode())
        except OSError as exc:
            raise StorageError(f"cannot record the boot image: {exc}") from exc
        finally:
            path.unlink(missing_ok=True)


Completed = Callable[[str], None]  # (source location) -> None


class SztpAgent:
    """Bootstraps the device by SZTP. ``start`` it after the host's listeners are up."""

    def __init__(
        self,
        host: PluginHost,
        settings: SztpSettings,
        onboarder: DatastoreOnboarder,
        *,
        workdir: Path,
        on_complete: Completed | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.host = host
        self.settings = settings
        self.onboarder = onboarder
        self.workdir = workdir
        self.identity = factory_identity(host)
        anchors = tuple(host.manufacturer_anchors())
        serial = certs.serial_number_of(self.identity.cert)
        if serial is None:
            raise ConfigError("the IDevID has no subject serialNumber (RFC 8572 §5.1)")
        self.device = SztpDeviceConfig(
            serial=serial,
            idevid=self.identity.cert,
            manufacturer_anchors=anchors,
            hw_model=settings.hw_model,
            os_name=settings.os_name,
            os_version=settings.os_version,
            max_redirects=settings.max_redirects,
            ssh_host_keys=settings.ssh_host_keys,
        )
        self.store = host.agent_store()
        self.state = BootstrapState(history_size=settings.history)
        self._on_complete = on_complete
        self._now = now
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None
        self._restarting = asyncio.Lock()  # one restart-bootstrap at a time

    async def start(self) -> None:
        discard_leftovers(self.workdir)
        restore_state(self.store, self.state)
        self.host.register_rpc(RESTART_RPC, self._restart_rpc)
        self._publish(self.state.agent_started(now=self._now()))
        done = read_key(self.store, COMPLETE_KEY)
        if done is not None:
            where = done.decode("utf-8", "replace")
            self._publish(self.state.already_bootstrapped(where, now=self._now()))
            if self._on_complete is not None:
                self._on_complete(where)
            return
        self._begin("SZTP: the device has not been bootstrapped")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    def _begin(self, detail: str) -> None:
        self._publish(self.state.run_started(now=self._now(), detail=detail))
        self._task = asyncio.create_task(self._run(), name="sztp-agent")

    async def _run(self) -> None:
        backoff = Backoff(self.settings.retry_delay, 2.0, self.settings.max_delay, 0.5)
        rounds = 0
        try:
            async with SztpClient(
                tls_identity(self.identity),
                timeout=self.settings.timeout,
                encoding=self.settings.encoding,
                basic_auth=self.settings.basic_auth,
            ) as client:
                while True:
                    rounds += 1
                    result = await self._round(client)
                    if isinstance(result, Done):
                        self._complete(result)
                        return
                    last = result.errors[-1][1] if result.errors else None
                    if self.settings.rounds and rounds >= self.settings.rounds:
                        error = last or ConfigError("no SZTP source answered")
                        note = f"no SZTP source onboarded the device in {rounds} round(s)"
                        self._publish(self.state.failed(error, now=self._now(), note=note))
                        return
                    delay = backoff.delay(rounds, int.from_bytes(os.urandom(2)) / 65536)
                    self._publish(
                        self.state.waiting(delay, "every SZTP source failed", now=self._now())
                    )
                    await self._sleep(delay)
        except asyncio.CancelledError:
            raise
        except ZerotouchError as exc:
            log.error("SZTP bootstrap stopped: %s", exc.one_line())
            self._publish(self.state.failed(exc, now=self._now()))
        except Exception as exc:  # a bug must not leave the state claiming progress
            log.exception("SZTP agent failed")
            error = ZerotouchError(f"internal error of the SZTP agent: {exc!r}")
            self._publish(self.state.failed(error, now=self._now()))

    async def _round(self, client: SztpClient) -> Done | Failed:
        dhcp: tuple[str, ...] = ()
        try:
            dhcp = await self.settings.dhcp_uris()
        except ZerotouchError as exc:
            self._publish(
                self.state.record("sztp-dhcp-failed", now=self._now(), detail=exc.message)
            )
        else:
            if dhcp:
                self._publish(
                    self.state.record("sztp-dhcp", now=self._now(), detail=" ".join(dhcp))
                )
        domain: str | None = None
        try:
            domain = await self.settings.dns_domain_now()
        except ZerotouchError as exc:
            self._publish(self.state.record("sztp-dns-failed", now=self._now(), detail=exc.message))
        sources = self.settings.sources(dhcp, self.device.serial, domain)
        if not sources:
            return Failed(())
        machine = SztpDevice(self.device, sources, random_bytes=os.urandom(32))

        def observe(action: SztpAction) -> None:
            now = self._now()
            if isinstance(action, Fetch):
                self._publish(
                    self.state.attempt(action.source.location, now=now, source=SZTP_SOURCE)
                )
            elif isinstance(action, Report):
                progress = action.progress
                self._publish(
                    self.state.record(
                        f"sztp-{progress.progress_type}",
                        now=now,
                        phase=Phase.ENROLLING,
                        detail=progress.message,
                    )
                )

        result = await drive(
            machine,
            client,
            self.onboarder,
            scripts=self.settings.scripts,
            workdir=self.workdir,
            timeout=self.settings.timeout,
            observe=observe,
            now=self._now,
        )
        for source, error in machine.errors:
            self._publish(self.state.attempt_failed(source.location, error, now=self._now()))
        return result

    def _complete(self, done: Done) -> None:
        where = done.source.location
        try:
            self.store.put(COMPLETE_KEY, where.encode())
        except ZerotouchError as exc:
            log.error("cannot record that SZTP completed: %s", exc.one_line())
        self._publish(self.state.sztp_complete(where, now=self._now()))
        log.info("SZTP bootstrap complete from %s", where)
        if self._on_complete is not None:
            self._on_complete(where)

    async def _restart_rpc(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """``restart-bootstrap``: bootstrap again; a completed device only with factory-reset.
        Requests from several sessions are served one after the other: another one, while
        the first awaits the run it stops, would start a run beside the one the first then
        starts, out of reach of any later restart and of close()."""
        async with self._restarting:
            return await self._restart(reset_requested(args))

    async def _restart(self, reset: bool) -> dict[str, Any]:
        if read_key(self.store, COMPLETE_KEY) is not None and not reset:
            raise Conflict(
                "the device has been bootstrapped; restart-bootstrap with factory-reset true "
                "bootstraps it again"
            )
        await self.close()
        self.store.delete(COMPLETE_KEY)
        self._publish(
            self.state.record("restart-requested", now=self._now(), detail=f"factory-reset {reset}")
        )
        self._begin("restart-bootstrap")
        return {"phase": str(self.state.phase)}

    def _publish(self, change: PhaseChange | None) -> None:
        publish_state(self.host, self.store, self.state, change)

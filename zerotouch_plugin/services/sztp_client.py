"""The SZTP device's I/O (RFC 8572): performs the actions of ``roles/sztp_device.py``.

* ``SztpClient``: the RESTCONF client of a bootstrap server. HTTPS with the IDevID as TLS
  client certificate (§5.2; HTTP basic as well where configured), the RESTCONF root found
  through ``/.well-known/host-meta`` (RFC 8040 §3.1), ``get-bootstrapping-data`` and
  ``report-progress`` in JSON or XML (RFC 8040 §3.6), refusals read from their
  ``ietf-restconf:errors`` body (RFC 8040 §7.1). A source with trust anchors is verified
  against them (the *trusted* path of §5.1); one without is not verified (untrusted: the
  machine then accepts signed data only).
* ``read_media``: the artifacts of a removable-storage folder (§4.1), always untrusted.
* ``run_script``: a pre- or post-configuration script, run without a shell (the script file
  is executed, its ``#!`` line names the interpreter) unless an interpreter is configured,
  with a timeout, its output captured up to a bound.
* ``download_image``: the boot image from the first URI that answers, size-bounded, hashed
  while it streams, written atomically.
* ``drive``: runs the machine to its end with these and the device's ``Onboarder`` (what
  applies configuration and installs images on this device).

Only this module opens sockets, starts processes and reads the clock for SZTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import ssl
import tempfile
from base64 import b64encode
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar
from urllib.parse import urlsplit

import aiohttp
from cryptography.hazmat.primitives.serialization import Encoding as DerEncoding
from lxml import etree

from zerotouch_plugin._checks import require_count, require_positive
from zerotouch_plugin._json import bounded_loads
from zerotouch_plugin._text import printable
from zerotouch_plugin.artifacts import sztp
from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.artifacts.sztp import (
    BootImage,
    ConfigurationHandling,
    Encoding,
    GetBootstrappingDataInput,
    GetBootstrappingDataOutput,
    ReportProgressInput,
)
from zerotouch_plugin.artifacts.xmlsafe import parse_untrusted
from zerotouch_plugin.errors import (
    AccessDenied,
    CertificateError,
    Conflict,
    InvalidInput,
    NotAcceptable,
    NotFound,
    PayloadTooLarge,
    PolicyRefused,
    RemoteError,
    UnsupportedMediaType,
    UpstreamUnavailable,
    ZerotouchError,
)
from zerotouch_plugin.roles.sztp_device import (
    ApplyConfiguration,
    Done,
    DownloadImage,
    Failed,
    Fetch,
    InstallImage,
    Report,
    RunScript,
    Source,
    SourceKind,
    SztpAction,
    SztpDevice,
)
from zerotouch_plugin.services._http import read_at_most
from zerotouch_plugin.services._tls import client_context
from zerotouch_plugin.services.sztp_dns import fetch as dns_fetch

__all__ = [
    "IMAGE_FILE",
    "MEDIA_FILES",
    "SCRIPT_PREFIX",
    "Onboarder",
    "ScriptPolicy",
    "SztpClient",
    "download_image",
    "drive",
    "nonce_bytes",
    "read_media",
    "restconf_root",
    "run_script",
]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

HOST_META = "/.well-known/host-meta"
_XRD_NS = "http://docs.oasis-open.org/ns/xri/xrd-1.0"
_RESTCONF_REL = "restconf"
_DEFAULT_ROOT = "/restconf"
_MAX_HOST_META = 64 * 1024
MAX_RESPONSE_BYTES = sztp.MAX_ARTIFACT_BYTES
MAX_IMAGE_BYTES = 2 * 1024 * 1024 * 1024
SCRIPT_PREFIX = ".sztp-script-"  # scripts are written to WORKDIR/.sztp-script-XXXX
IMAGE_FILE = "boot-image.bin"  # downloaded to WORKDIR/.boot-image.bin.XXXX, then renamed
_CHUNK = 64 * 1024
_OUTPUT_GRACE = 1.0  # seconds a script's output is still read after it exited

# The removable-storage layout (§4.1): one file per artifact, DER CMS each.
MEDIA_FILES = {
    "conveyed-information": "conveyed-information.cms",
    "owner-certificate": "owner-certificate.cms",
    "ownership-voucher": "ownership-voucher.cms",
}

# HTTP status of a refusal -> our error (RFC 8040 §7 error-tag table, read backwards).
_BY_STATUS: Mapping[int, type[ZerotouchError]] = {
    400: InvalidInput,
    401: AccessDenied,
    403: AccessDenied,
    404: NotFound,
    406: NotAcceptable,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
}


# ---------------------------------------------------------------------------------------------
# the bootstrap server's RESTCONF API


def _origin(url: str) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError:
        raise InvalidInput(f"unusable bootstrap server URL {url!r}") from None
    if parts.scheme != "https" or not parts.hostname:
        raise InvalidInput(f"a bootstrap server URL must be https://HOST[:PORT], not {url!r}")
    return f"https://{parts.netloc.rpartition('@')[2]}"


def restconf_root(xrd: bytes) -> str | None:
    """The ``restconf`` link of a host-meta document (RFC 8040 §3.1, RFC 6415), or None."""
    try:
        root = parse_untrusted(xrd, "host-meta")
    except InvalidInput:
        return None
    for link in root.iter(f"{{{_XRD_NS}}}Link", "Link"):
        if link.get("rel") == _RESTCONF_REL and link.get("href"):
            return str(link.get("href")).rstrip("/")
    return None


def _restconf_error(body: bytes, content_type: str) -> str:
    """``error-tag: error-message`` of an ``ietf-restconf:errors`` body, or a bounded excerpt."""
    tag = message = None
    with contextlib.suppress(ValueError, TypeError, KeyError, IndexError, AttributeError):
        if "json" in content_type:
            error = bounded_loads(body)["ietf-restconf:errors"]["error"][0]
            tag, message = error.get("error-tag"), error.get("error-message")
        elif "xml" in content_type:
            root = parse_untrusted(body, "the error document")
            found = {etree.QName(e).localname: (e.text or "") for e in root.iter("{*}*")}
            tag, message = found.get("error-tag"), found.get("error-message")
    if tag is None:
        return printable(body[:200].decode("utf-8", "replace").strip()) or "no error document"
    return printable(f"{tag}: {message or ''}".strip())


class SztpClient:
    """RESTCONF client of bootstrap servers for one device. Use as an async context."""

    def __init__(
        self,
        idevid: Identity,
        *,
        timeout: float,
        encoding: Encoding = Encoding.JSON,
        basic_auth: tuple[str, str] | None = None,
    ) -> None:
        require_positive(timeout, "timeout", "a number of seconds")
        self._identity = idevid
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._encoding = encoding
        # RFC 7617: "Basic" and base64 of user-id ":" password, UTF-8
        self._auth: dict[str, str] = (
            {}
            if basic_auth is None
            else {"Authorization": "Basic " + b64encode(":".join(basic_auth).encode()).decode()}
        )
        self._sessions: dict[tuple[bytes, ...], aiohttp.ClientSession] = {}
        self._roots: dict[tuple[str, tuple[bytes, ...]], str] = {}

    async def __aenter__(self) -> SztpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    def _credentials(self, source: Source) -> dict[str, str]:
        """HTTP basic only towards a server verified by its trust anchors: an unverified
        one could be anyone, and the password would be theirs."""
        return self._auth if source.trust_anchors else {}

    def _session(self, source: Source) -> aiohttp.ClientSession:
        key = tuple(c.public_bytes(DerEncoding.DER) for c in source.trust_anchors)
        session = self._sessions.get(key)
        if session is None:
            ctx = client_context(self._identity, trust=source.trust_anchors or None)
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ctx), timeout=self._timeout
            )
            self._sessions[key] = session
        return session

    async def _root(self, source: Source) -> str:
        """The RESTCONF root of the server (RFC 8040 §3.1); ``/restconf`` if it has no
        host-meta."""
        origin = _origin(source.location)
        key = (origin, tuple(c.public_bytes(DerEncoding.DER) for c in source.trust_anchors))
        root = self._roots.get(key)
        if root is None:
            session = self._session(source)
            headers = {"Accept": "application/xrd+xml", **self._credentials(source)}
            async with session.get(origin + HOST_META, headers=headers) as resp:
                body = await _read_bounded(resp.content, _MAX_HOST_META)
                found = restconf_root(body) if resp.status == 200 and body is not None else None
            root = found if found is not None and found.startswith("/") else _DEFAULT_ROOT
            self._roots[key] = root
        return origin + root

    async def _rpc(self, source: Source, rpc: str, body: bytes) -> tuple[int, bytes, str]:
        url = f"{await self._root(source)}/operations/{sztp.SERVER_MODULE}:{rpc}"
        media = self._encoding.media_type
        headers = {"Content-Type": media, "Accept": media, **self._credentials(source)}
        session = self._session(source)
        async with session.post(url, data=body, headers=headers) as resp:
            if resp.content_length is not None and resp.content_length > MAX_RESPONSE_BYTES:
                raise PayloadTooLarge(f"{url} answered more than {MAX_RESPONSE_BYTES} bytes")
            data = await _read_bounded(resp.content, MAX_RESPONSE_BYTES)
            if data is None:
                raise PayloadTooLarge(f"{url} answered more than {MAX_RESPONSE_BYTES} bytes")
            content_type = resp.headers.get("Content-Type", "")
            if resp.status >= 300:
                error = _BY_STATUS.get(resp.status, UpstreamUnavailable)
                raise error(
                    f"{source.location} refused {rpc} with {resp.status} "
                    f"({_restconf_error(data, content_type)})"
                )
            return resp.status, data, content_type

    async def get_bootstrapping_data(
        self, source: Source, request: GetBootstrappingDataInput
    ) -> tuple[GetBootstrappingDataOutput, bool]:
        """The RPC of §7.1; also whether the server was verified against trust anchors."""
        _, data, content_type = await _transport(
            self._rpc(source, "get-bootstrapping-data", request.encode(self._encoding)),
            source,
        )
        encoding = Encoding.of_media_type(content_type or self._encoding.media_type)
        output = GetBootstrappingDataOutput.parse(data, encoding)
        return output, bool(source.trust_anchors)

    async def report_progress(self, source: Source, progress: ReportProgressInput) -> None:
        """The RPC of §7.3; 204 expected."""
        await _transport(
            self._rpc(source, "report-progress", progress.encode(self._encoding)), source
        )


async def _read_bounded(stream: aiohttp.StreamReader, limit: int) -> bytes | None:
    """The whole body, or None when it is longer than ``limit`` (read no further)."""
    body = await read_at_most(stream, limit)
    return None if len(body) > limit else body


async def _transport(call: Awaitable[_T], source: Source) -> _T:
    """Network and TLS failures as our errors: a server that failed its trust anchor is a
    CertificateError, anything unreachable UpstreamUnavailable."""
    try:
        return await call
    except ZerotouchError:
        raise
    except aiohttp.ClientConnectorCertificateError as exc:
        raise CertificateError(
            f"{source.location}: the server's TLS certificate does not chain to the trust "
            f"anchors the device holds for it: {exc.certificate_error}"
        ) from None
    except (aiohttp.ClientError, ssl.SSLError, OSError, TimeoutError) as exc:
        raise UpstreamUnavailable(
            f"{source.location} is unreachable: {type(exc).__name__}: {exc}"
        ) from None


# ---------------------------------------------------------------------------------------------
# removable media, scripts and images


def read_media(folder: Path) -> GetBootstrappingDataOutput:
    """The artifacts of a removable-storage folder (§4.1) as get-bootstrapping-data output."""
    found: dict[str, bytes | None] = {}
    for name, file in MEDIA_FILES.items():
        path = folder / file
        try:
            if path.stat().st_size > MAX_RESPONSE_BYTES:
                raise PayloadTooLarge(f"{path} is larger than {MAX_RESPONSE_BYTES} bytes")
            found[name] = path.read_bytes()
        except FileNotFoundError:
            found[name] = None
        except OSError as exc:
            raise UpstreamUnavailable(f"cannot read {path}: {exc}") from None
    conveyed = found["conveyed-information"]
    if conveyed is None:
        raise NotFound(f"{folder} holds no {MEDIA_FILES['conveyed-information']}")
    return GetBootstrappingDataOutput(
        conveyed_information=conveyed,
        owner_certificate=found["owner-certificate"],
        ownership_voucher=found["ownership-voucher"],
    )


@dataclass(frozen=True)
class ScriptPolicy:
    """How scripts run: ``interpreter`` None executes the script file itself (no shell);
    ``timeout`` seconds before the process group is killed; ``max_output`` bytes kept."""

    timeout: float = 300.0
    interpreter: str | None = None
    max_output: int = 64 * 1024

    def __post_init__(self) -> None:
        require_positive(self.timeout, "timeout", "a number of seconds")
        require_count(self.max_output, "max_output")


async def run_script(script: bytes, *, policy: ScriptPolicy, workdir: Path) -> tuple[int, str]:
    """Run one script in ``workdir``; its exit status and the captured (bounded) output.
    PolicyRefused when it cannot start or overruns its timeout. Its process group is killed
    either way: what it leaves running does not outlive the step."""
    fd, name = tempfile.mkstemp(dir=workdir, prefix=SCRIPT_PREFIX)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(script)
        path.chmod(0o700)
        argv = [policy.interpreter, str(path)] if policy.interpreter else [str(path)]
        read_fd, write_fd = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=workdir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=write_fd,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
            )
        except OSError as exc:
            os.close(read_fd)
            raise PolicyRefused(f"the script cannot run: {exc}") from None
        finally:
            os.close(write_fd)
        return await _supervise(process, os.fdopen(read_fd, "rb", buffering=0), policy)
    finally:
        path.unlink(missing_ok=True)


async def _supervise(
    process: asyncio.subprocess.Process, pipe: BinaryIO, policy: ScriptPolicy
) -> tuple[int, str]:
    """The script's exit status decides the step (RFC 8572 §5.6), not its output pipe, which
    a child it left running may hold open: the output is read while it runs and for
    ``_OUTPUT_GRACE`` after it exited; then its process group, leftover children included,
    is killed and the pipe closed."""
    stream = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream), pipe)
    kept = bytearray()
    reader = asyncio.create_task(_bounded_read(stream, policy.max_output, kept))
    status: int | None = None
    try:
        with contextlib.suppress(TimeoutError):
            status = await asyncio.wait_for(process.wait(), policy.timeout)
        if status is not None:
            await asyncio.wait({reader}, timeout=_OUTPUT_GRACE)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        reader.cancel()
        transport.close()
        await process.wait()
    if status is None:
        raise PolicyRefused(f"the script ran longer than {policy.timeout:g} s")
    return status, kept.decode("utf-8", "replace")


async def _bounded_read(stream: asyncio.StreamReader, limit: int, kept: bytearray) -> None:
    """Up to ``limit`` bytes of the stream into ``kept``; the rest is read and dropped (the
    script must not block on a full pipe)."""
    while chunk := await stream.read(_CHUNK):
        kept += chunk[: max(0, limit - len(kept))]


async def download_image(
    image: BootImage, *, dest: Path, timeout: float, max_bytes: int = MAX_IMAGE_BYTES
) -> bytes:
    """The boot image from the first of its URIs that delivers it, stored at ``dest``
    (atomically); its SHA-256. The hash, not TLS, protects it (§5.6): servers are not
    verified. UpstreamUnavailable when no URI delivers."""
    errors: list[str] = []
    ctx = client_context(None, trust=None)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ctx), timeout=aiohttp.ClientTimeout(total=timeout)
    ) as session:
        for uri in image.download_uris:
            try:
                return await _download(session, uri, dest, max_bytes)
            except (aiohttp.ClientError, OSError, TimeoutError, RemoteError) as exc:
                errors.append(f"{uri}: {exc}")
    raise UpstreamUnavailable("the boot image could not be downloaded: " + "; ".join(errors))


async def _download(session: aiohttp.ClientSession, uri: str, dest: Path, limit: int) -> bytes:
    if urlsplit(uri).scheme not in ("http", "https"):
        raise InvalidInput(f"unsupported download-uri scheme in {uri!r}")
    digest = hashlib.sha256()
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            async with session.get(uri) as resp:
                if resp.status != 200:
                    raise NotFound(f"answered {resp.status}")
                size = 0
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLarge(f"the image is larger than {limit} bytes")
                    digest.update(chunk)
                    out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(name, dest)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return digest.digest()


# ---------------------------------------------------------------------------------------------
# running the machine


class Onboarder(Protocol):
    """What onboarding does on this device (the reference device: its datastores)."""

    async def apply_configuration(
        self, configuration: bytes, handling: ConfigurationHandling
    ) -> None:
        """Validate and apply to running; on failure nothing changed (rolled back)."""
        ...

    async def install_image(self, path: Path, image: BootImage, sha256: bytes) -> None:
        """Install the verified image (the reference device records it)."""
        ...


@dataclass
class _Run:
    machine: SztpDevice
    client: SztpClient
    onboarder: Onboarder
    scripts: ScriptPolicy
    workdir: Path
    timeout: float
    now: Callable[[], datetime]
    image: tuple[Path, bytes] | None = None

    async def fetch(self, action: Fetch) -> SztpAction:
        source = action.source
        try:
            if source.kind is SourceKind.MEDIA:
                output = await asyncio.to_thread(read_media, Path(source.location))
                trusted = False
            elif source.kind in (SourceKind.DNS_TXT, SourceKind.DNS_SRV):
                output = await dns_fetch(source.location, timeout=self.timeout)
                trusted = False
            else:
                output, trusted = await self.client.get_bootstrapping_data(source, action.request)
        except ZerotouchError as exc:
            log.warning("SZTP source %s failed: %s", source.location, exc.message)
            return self.machine.unreachable(exc)
        return self.machine.fetched(output, server_trusted=trusted, now=self.now())

    async def report(self, action: Report) -> SztpAction:
        if not action.send:
            return self.machine.reported()
        try:
            await self.client.report_progress(action.source, action.progress)
        except ZerotouchError as exc:  # a lost report never stops bootstrapping (§7.3)
            log.warning("report-progress to %s failed: %s", action.source.location, exc.message)
        return self.machine.reported()

    async def download(self, action: DownloadImage) -> SztpAction:
        dest = self.workdir / IMAGE_FILE
        try:
            digest = await download_image(action.boot_image, dest=dest, timeout=self.timeout)
        except ZerotouchError as exc:
            return self.machine.step_failed(exc)
        self.image = (dest, digest)
        return self.machine.image_downloaded(digest)

    async def install(self, action: InstallImage) -> SztpAction:
        assert self.image is not None
        try:
            await self.onboarder.install_image(self.image[0], action.boot_image, self.image[1])
        except ZerotouchError as exc:
            return self.machine.step_failed(exc)
        return self.machine.image_installed()

    async def script(self, action: RunScript) -> SztpAction:
        try:
            status, output = await run_script(
                action.script, policy=self.scripts, workdir=self.workdir
            )
        except ZerotouchError as exc:
            return self.machine.step_failed(exc)
        log.info("%s-configuration script exited %d: %s", action.stage, status, output[-500:])
        return self.machine.script_finished(status, output)

    async def configure(self, action: ApplyConfiguration) -> SztpAction:
        try:
            await self.onboarder.apply_configuration(action.configuration, action.handling)
        except ZerotouchError as exc:
            return self.machine.step_failed(exc)
        return self.machine.configuration_applied()


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def drive(
    machine: SztpDevice,
    client: SztpClient,
    onboarder: Onboarder,
    *,
    scripts: ScriptPolicy,
    workdir: Path,
    timeout: float,
    observe: Callable[[SztpAction], None] = lambda action: None,
    now: Callable[[], datetime] = _utc_now,
) -> Done | Failed:
    """Perform the machine's actions until it is done or every source failed."""
    run = _Run(machine, client, onboarder, scripts, workdir, timeout, now)
    handlers: Mapping[type[Any], Callable[[Any], Awaitable[SztpAction]]] = {
        Fetch: run.fetch,
        Report: run.report,
        DownloadImage: run.download,
        InstallImage: run.install,
        RunScript: run.script,
        ApplyConfiguration: run.configure,
    }
    action = machine.start()
    while not isinstance(action, Done | Failed):
        observe(action)
        action = await handlers[type(action)](action)
    observe(action)
    return action


def nonce_bytes() -> bytes:
    """Fresh random bytes for the machine (the nonce of get-bootstrapping-data)."""
    return os.urandom(32)

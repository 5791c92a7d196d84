"""The SZTP device (RFC 8572 §5), sans-IO: bootstrap sources, trust, redirects, onboarding.

The machine never opens a socket, runs a script or reads the clock. It hands out *actions*
(fetch bootstrapping data from this source, report this progress, download the boot image,
run the pre-configuration script, apply this configuration) and is fed what came back,
together with ``now``. ``services/sztp_client.py`` performs the actions.

Sources are tried in the configured order (§5.1). Each answer of get-bootstrapping-data is
judged by how the device reached the server (§5.3):

* the server's TLS certificate chained to a trust anchor the device holds (pre-configured,
  or conveyed with redirect information): the server is *trusted* and may send unsigned
  conveyed information; signed data is verified all the same when it comes signed;
* otherwise (no anchor, removable media, DHCP-provisioned URL, DNS): signed data, or
  unsigned redirect information, followed provisionally with its trust anchors discarded
  (§5.3, §5.5). Signed data is verified completely (§5.4): the ownership voucher to the
  manufacturer's anchors at ``now``, for this serial number, with the nonce the device sent
  or, without a nonce, an expires-on still ahead; the owner certificate chaining to the
  voucher's pinned-domain-cert; the conveyed information signed by exactly that owner
  certificate.

Redirect information puts its bootstrap servers in front of the remaining sources, each trusted
through the anchor it conveys (§5.5); a redirect chain is bounded (``max_redirects``) and a
server seen before in the chain is a loop; at most ``MAX_REDIRECT_SERVERS`` servers of one
redirect and ``MAX_REDIRECT_SOURCES`` in a run are queued, so that redirects from an untrusted
source cannot keep the device from the remaining sources. Onboarding information is processed
in the order of §5.6: boot image (download, hash check against ``image-verification``, install;
skipped when the device already runs that OS), pre-configuration script, configuration (merge
or replace; the caller validates and rolls back on failure), post-configuration script. A step
that fails ends this source's attempt with its §7.3 error report and the next source is tried.
Progress reports (§7.3) go to the bootstrap server that supplied the onboarding information,
and only when the device reached it through a trust anchor: none for redirect information, none
to an untrusted server even when its signed data verified (the ``reporting-level`` and
``report-progress`` descriptions of ietf-sztp-bootstrap-server). At the ``minimal`` level (the
default) the device sends bootstrap-initiated, the errors, boot-image-mismatch and
bootstrap-complete; ``verbose`` adds every step's initiated, complete and warning reports and
parsing-complete.

Script exit status (the YANG leaves leave it to the vendor): 0 is success, 1 a warning
(``*-warning``, the process goes on), anything else an error.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cryptography import x509

from zerotouch_plugin._checks import require_count
from zerotouch_plugin._text import printable
from zerotouch_plugin.artifacts import certs, sztp
from zerotouch_plugin.artifacts.sztp import (
    BootImage,
    BootstrapServer,
    ConfigurationHandling,
    ConveyedInformation,
    GetBootstrappingDataInput,
    GetBootstrappingDataOutput,
    OnboardingInformation,
    ProgressType,
    RedirectInformation,
    ReportingLevel,
    ReportProgressInput,
    SshHostKey,
)
from zerotouch_plugin.artifacts.voucher import Voucher, new_nonce, parse_signed_voucher
from zerotouch_plugin.errors import (
    ConfigError,
    Conflict,
    DigestMismatch,
    Expired,
    InvalidInput,
    PolicyRefused,
    UntrustedSigner,
    WrongNonce,
    WrongSerial,
    ZerotouchError,
)
from zerotouch_plugin.roles.states import transition

__all__ = [
    "MAX_REDIRECT_SERVERS",
    "MAX_REDIRECT_SOURCES",
    "SZTP_TRANSITIONS",
    "ApplyConfiguration",
    "Done",
    "DownloadImage",
    "Failed",
    "Fetch",
    "InstallImage",
    "Report",
    "RunScript",
    "ScriptStage",
    "Source",
    "SourceKind",
    "SztpAction",
    "SztpDevice",
    "SztpDeviceConfig",
    "SztpEvent",
    "SztpState",
    "Validated",
    "server_url",
    "validate_response",
]

DEFAULT_MAX_REDIRECTS = 8
# Bounds on the servers redirect information may queue ahead of the remaining sources (any
# source may send unsigned redirect information, §5.3): per redirect, as for DNS SRV, and
# per run, so that the configured sources are always reached.
MAX_REDIRECT_SERVERS = 16
MAX_REDIRECT_SOURCES = 64
_WARNING_EXIT = 1


class SourceKind(StrEnum):
    """Where a source of bootstrapping data came from (RFC 8572 §4)."""

    CONFIGURED = "configured"  # a URL the device was configured with (§4.4)
    DHCP = "dhcp"  # a URI of DHCPv4 option 143 / DHCPv6 option 136 (§8)
    DNS_TXT = "dns-txt"  # bootstrapping data in DNS TXT records (§4.2)
    DNS_SRV = "dns-srv"  # bootstrap servers in DNS SRV records (§4.2): unsigned redirects
    MEDIA = "media"  # a removable-storage folder (§4.1): signed data only
    REDIRECT = "redirect"  # a bootstrap server named by redirect information (§5.5)


@dataclass(frozen=True)
class Source:
    """One source of bootstrapping data: a bootstrap server URL or a media folder, and the
    trust anchors its TLS certificate must chain to (empty: an untrusted server)."""

    kind: SourceKind
    location: str
    trust_anchors: tuple[x509.Certificate, ...] = ()
    hops: int = 0  # redirects followed to get here

    def __post_init__(self) -> None:
        if not isinstance(self.kind, SourceKind):
            raise TypeError("kind must be a SourceKind")
        if not isinstance(self.location, str) or not self.location:
            raise ValueError("a source needs a location (URL or folder)")
        object.__setattr__(self, "trust_anchors", tuple(self.trust_anchors))


@dataclass(frozen=True)
class SztpDeviceConfig:
    """What the device holds from the factory and its configuration (RFC 8572 §5.1)."""

    serial: str
    idevid: x509.Certificate
    manufacturer_anchors: tuple[x509.Certificate, ...]  # ownership vouchers chain here
    hw_model: str | None = None
    os_name: str | None = None
    os_version: str | None = None
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    send_nonce: bool = True  # ask for a nonce-bound voucher (§7.1 input "nonce")
    # sent with bootstrap-complete, so that an NMS can authenticate the device (§7.3)
    ssh_host_keys: tuple[SshHostKey, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.idevid, x509.Certificate):
            raise TypeError("idevid must be an x509.Certificate")
        anchors = tuple(self.manufacturer_anchors)
        if not anchors or not all(isinstance(c, x509.Certificate) for c in anchors):
            raise ValueError("at least one manufacturer trust anchor is needed for vouchers")
        object.__setattr__(self, "manufacturer_anchors", anchors)
        require_count(self.max_redirects, "max_redirects")
        if not self.serial:
            raise ConfigError("the device has no serial number (RFC 8572 §5.1)")


class ScriptStage(StrEnum):
    PRE = "pre"
    POST = "post"


# ---------------------------------------------------------------------------------------------
# actions (machine -> I/O)


@dataclass(frozen=True)
class Fetch:
    """Call get-bootstrapping-data at ``source`` (or read its media folder)."""

    source: Source
    request: GetBootstrappingDataInput


@dataclass(frozen=True)
class Report:
    """A step of onboarding: with ``send``, call report-progress at ``source`` (§7.3); the
    device records it either way. Answer with ``reported`` whatever happened."""

    source: Source
    progress: ReportProgressInput
    send: bool = True


@dataclass(frozen=True)
class DownloadImage:
    """Download the boot image from one of its URIs; answer with ``image_downloaded``."""

    boot_image: BootImage


@dataclass(frozen=True)
class InstallImage:
    """Install the downloaded image (the reference device records it); ``image_installed``."""

    boot_image: BootImage


@dataclass(frozen=True)
class RunScript:
    """Run a pre- or post-configuration script; answer with ``script_finished``."""

    stage: ScriptStage
    script: bytes


@dataclass(frozen=True)
class ApplyConfiguration:
    """Apply the configuration to running (validated; rolled back by the caller on failure)."""

    configuration: bytes
    handling: ConfigurationHandling


@dataclass(frozen=True)
class Done:
    """Bootstrapping complete from ``source``."""

    source: Source
    onboarding: OnboardingInformation


@dataclass(frozen=True)
class Failed:
    """Every source was tried; what went wrong at each, in order."""

    errors: tuple[tuple[Source, ZerotouchError], ...]


SztpAction = (
    Fetch | Report | DownloadImage | InstallImage | RunScript | ApplyConfiguration | Done | Failed
)


# ---------------------------------------------------------------------------------------------
# the transition table


class SztpState(StrEnum):
    IDLE = "idle"
    FETCHING = "fetching"
    DOWNLOADING_IMAGE = "downloading-image"
    INSTALLING_IMAGE = "installing-image"
    PRE_SCRIPT = "pre-script"
    CONFIGURING = "configuring"
    POST_SCRIPT = "post-script"
    DONE = "done"
    FAILED = "failed"


class SztpEvent(StrEnum):
    START = "start"
    REDIRECTED = "redirected"  # valid redirect information: fetch from the next server
    ONBOARDING = "onboarding"  # valid onboarding information: the boot image step
    SOURCE_FAILED = "source-failed"  # this source failed: fetch from the next one
    EXHAUSTED = "exhausted"  # no source left
    IMAGE_DOWNLOADED = "image-downloaded"
    IMAGE_DONE = "image-done"  # installed, or already running: the pre-script step
    PRE_DONE = "pre-done"
    CONFIG_DONE = "config-done"
    POST_DONE = "post-done"


_S = SztpState
_E = SztpEvent
_STEPS = (_S.DOWNLOADING_IMAGE, _S.INSTALLING_IMAGE, _S.PRE_SCRIPT, _S.CONFIGURING, _S.POST_SCRIPT)

SZTP_TRANSITIONS: Mapping[tuple[SztpState, SztpEvent], SztpState] = {
    (_S.IDLE, _E.START): _S.FETCHING,
    (_S.DONE, _E.START): _S.FETCHING,
    (_S.FAILED, _E.START): _S.FETCHING,
    (_S.FETCHING, _E.REDIRECTED): _S.FETCHING,
    (_S.FETCHING, _E.SOURCE_FAILED): _S.FETCHING,
    (_S.FETCHING, _E.EXHAUSTED): _S.FAILED,
    # onboarding starts at the boot image; each step may skip to the next when it has nothing
    (_S.FETCHING, _E.ONBOARDING): _S.DOWNLOADING_IMAGE,
    (_S.DOWNLOADING_IMAGE, _E.IMAGE_DOWNLOADED): _S.INSTALLING_IMAGE,
    (_S.DOWNLOADING_IMAGE, _E.IMAGE_DONE): _S.PRE_SCRIPT,
    (_S.INSTALLING_IMAGE, _E.IMAGE_DONE): _S.PRE_SCRIPT,
    (_S.PRE_SCRIPT, _E.PRE_DONE): _S.CONFIGURING,
    (_S.CONFIGURING, _E.CONFIG_DONE): _S.POST_SCRIPT,
    (_S.POST_SCRIPT, _E.POST_DONE): _S.DONE,
    # a failed step ends this source's attempt: the next source is fetched
    **{(step, _E.SOURCE_FAILED): _S.FETCHING for step in _STEPS},
}

# The §7.3 progress types of each step: (initiated, warning, error, complete).
_STEP_PROGRESS: Mapping[SztpState, tuple[ProgressType, ProgressType, ProgressType, ProgressType]]
_P = ProgressType
_STEP_PROGRESS = {
    _S.DOWNLOADING_IMAGE: (
        _P.BOOT_IMAGE_INITIATED,
        _P.BOOT_IMAGE_WARNING,
        _P.BOOT_IMAGE_ERROR,
        _P.BOOT_IMAGE_COMPLETE,
    ),
    _S.INSTALLING_IMAGE: (
        _P.BOOT_IMAGE_INITIATED,
        _P.BOOT_IMAGE_WARNING,
        _P.BOOT_IMAGE_ERROR,
        _P.BOOT_IMAGE_COMPLETE,
    ),
    _S.PRE_SCRIPT: (
        _P.PRE_SCRIPT_INITIATED,
        _P.PRE_SCRIPT_WARNING,
        _P.PRE_SCRIPT_ERROR,
        _P.PRE_SCRIPT_COMPLETE,
    ),
    _S.CONFIGURING: (_P.CONFIG_INITIATED, _P.CONFIG_WARNING, _P.CONFIG_ERROR, _P.CONFIG_COMPLETE),
    _S.POST_SCRIPT: (
        _P.POST_SCRIPT_INITIATED,
        _P.POST_SCRIPT_WARNING,
        _P.POST_SCRIPT_ERROR,
        _P.POST_SCRIPT_COMPLETE,
    ),
}


# The reports of reporting-level minimal (RFC 8572 §7.2): the run's start and end, and errors.
_MINIMAL = frozenset(
    {
        _P.BOOTSTRAP_INITIATED,
        _P.PARSING_ERROR,
        _P.BOOT_IMAGE_ERROR,
        _P.BOOT_IMAGE_MISMATCH,
        _P.PRE_SCRIPT_ERROR,
        _P.CONFIG_ERROR,
        _P.POST_SCRIPT_ERROR,
        _P.BOOTSTRAP_ERROR,
        _P.BOOTSTRAP_COMPLETE,
    }
)


# ---------------------------------------------------------------------------------------------
# validation of get-bootstrapping-data output (RFC 8572 §5.3, §5.4)


@dataclass(frozen=True)
class Validated:
    """Conveyed information the device accepted, and whether it came signed by the owner."""

    info: ConveyedInformation
    signed: bool
    voucher: Voucher | None = None
    owner: x509.Certificate | None = None


def validate_response(
    output: GetBootstrappingDataOutput,
    *,
    config: SztpDeviceConfig,
    server_trusted: bool,
    nonce: bytes | None,
    now: datetime,
) -> Validated:
    """Decide whether the device may act on ``output``. Unsigned onboarding information only
    from a trusted server; unsigned redirect information from any source, its trust anchors
    discarded when the source is untrusted (§5.3, §5.5); signed data is verified completely,
    whoever sent it (§5.4).
    """
    if output.ownership_voucher is None or output.owner_certificate is None:
        # the YANG of the output requires both or neither: this is unsigned data
        info = sztp.read_unsigned_conveyed_information(output.conveyed_information)
        if server_trusted:
            return Validated(info, signed=False)
        if isinstance(info, RedirectInformation):
            servers = tuple(BootstrapServer(s.address, s.port) for s in info.bootstrap_servers)
            return Validated(RedirectInformation(bootstrap_servers=servers), signed=False)
        raise UntrustedSigner(
            "the source is not trusted (no bootstrap server whose TLS certificate chains to "
            "an anchor the device holds), so its onboarding information must come signed "
            "with an ownership voucher and owner certificate (RFC 8572 §5.3)"
        )
    voucher = _check_voucher(output.ownership_voucher, config=config, nonce=nonce, now=now)
    owner = _check_owner(output.owner_certificate, voucher, now=now)
    info = sztp.verify_conveyed_information(
        output.conveyed_information, owner_certificate=owner, now=now
    )
    return Validated(info, True, voucher, owner)


def _check_voucher(
    der: bytes, *, config: SztpDeviceConfig, nonce: bytes | None, now: datetime
) -> Voucher:
    """The ownership voucher (RFC 8572 §3.3, §5.4; RFC 8366 §5.3): signed under the
    manufacturer's anchors, for this serial and IDevID issuer, nonce-bound or not expired."""
    voucher, _ = parse_signed_voucher(der, trust_anchors=config.manufacturer_anchors, now=now)
    voucher.check(now=now, serial=config.serial)
    if voucher.idevid_issuer is not None and not certs.idevid_issuer_matches(
        config.idevid, voucher.idevid_issuer
    ):
        raise WrongSerial(
            "the ownership voucher's idevid-issuer does not name the issuer of this device's "
            "IDevID (RFC 8366 §5.3)"
        )
    if voucher.nonce is not None:
        if nonce is None:
            raise WrongNonce("the ownership voucher carries a nonce, but the device sent none")
        voucher.check(now=now, nonce=new_nonce(nonce))
    elif voucher.expires_on is None:
        raise WrongNonce(
            "the ownership voucher carries neither a nonce nor an expires-on: a voucher "
            "without nonce is accepted only with a limited lifetime (RFC 8366 §5.3)"
        )
    elif now >= voucher.expires_on:
        raise Expired(f"the ownership voucher expired on {voucher.expires_on.isoformat()}")
    return voucher


def _check_owner(der: bytes, voucher: Voucher, *, now: datetime) -> x509.Certificate:
    """The owner certificate (§3.2) chains to the voucher's pinned-domain-cert (§5.4)."""
    chain = sztp.decode_certs_only(der, what="owner-certificate")
    owner = sztp.end_entity(chain)
    pinned = voucher.pinned_domain_certificate()
    if certs.der(owner) == certs.der(pinned):
        return owner
    try:
        certs.verify_chain(owner, trust_anchors=[pinned], intermediates=list(chain), now=now)
    except ZerotouchError as exc:
        raise UntrustedSigner(
            f"the owner certificate {owner.subject.rfc4514_string()} does not chain to the "
            f"ownership voucher's pinned-domain-cert {pinned.subject.rfc4514_string()} "
            f"(RFC 8572 §5.4): {exc.message}"
        ) from exc
    return owner


def server_url(address: str, port: int) -> str:
    """The https URL of a bootstrap server named by redirect information (§6.3)."""
    try:
        host = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    except ValueError:
        host = address
    return f"https://{host}:{port}"


# ---------------------------------------------------------------------------------------------
# the machine


@dataclass
class _Attempt:
    source: Source
    nonce: bytes | None
    report_to: Source | None = None  # where progress goes: a server the device trusts
    verbose: bool = False  # reporting-level verbose (RFC 8572 §7.2)
    onboarding: OnboardingInformation | None = None


class SztpDevice:
    """One bootstrapping run over the configured sources (RFC 8572 §5)."""

    def __init__(
        self, config: SztpDeviceConfig, sources: Sequence[Source], *, random_bytes: bytes
    ) -> None:
        if not isinstance(config, SztpDeviceConfig):
            raise TypeError("config must be an SztpDeviceConfig")
        if not sources:
            raise ConfigError("SZTP needs at least one source of bootstrapping data")
        if len(random_bytes) < 16:
            raise ValueError("random_bytes must hold at least 16 bytes for the nonce")
        self.config = config
        self.state = SztpState.IDLE
        self._sources = list(sources)
        self._random = random_bytes
        self._attempt: _Attempt | None = None
        self._visited: set[str] = set()
        self._redirected = 0  # redirect sources queued in this run (MAX_REDIRECT_SOURCES)
        self._errors: list[tuple[Source, ZerotouchError]] = []
        self._queue: list[SztpAction] = []  # reports owed before the next step's action

    @property
    def source(self) -> Source | None:
        """The source being tried."""
        return None if self._attempt is None else self._attempt.source

    @property
    def errors(self) -> tuple[tuple[Source, ZerotouchError], ...]:
        return tuple(self._errors)

    def start(self) -> SztpAction:
        self._advance(_E.START)
        return self._next_source()

    # -- inputs ------------------------------------------------------------------------------

    def fetched(
        self, output: GetBootstrappingDataOutput, *, server_trusted: bool, now: datetime
    ) -> SztpAction:
        """The answer of get-bootstrapping-data (or the media folder's data)."""
        self._expect(_S.FETCHING)
        attempt = self._current()
        trusted = server_trusted and bool(attempt.source.trust_anchors)
        try:
            validated = validate_response(
                output, config=self.config, server_trusted=trusted, nonce=attempt.nonce, now=now
            )
        except ZerotouchError as error:
            if trusted:
                self._report(attempt.source, _P.BOOTSTRAP_INITIATED, None)
                self._report(attempt.source, _P.PARSING_ERROR, error.message)
            return self._source_failed(error)
        if isinstance(validated.info, RedirectInformation):
            return self._redirect(validated.info)  # no reports for redirect information
        if trusted:
            attempt.report_to = attempt.source
            attempt.verbose = output.reporting_level is ReportingLevel.VERBOSE
        self._report(attempt.report_to, _P.BOOTSTRAP_INITIATED, None)
        self._report(attempt.report_to, _P.PARSING_COMPLETE, None)
        return self._onboard(validated.info)

    def unreachable(self, error: ZerotouchError) -> SztpAction:
        """The source could not be reached or answered with an error."""
        self._expect(_S.FETCHING)
        return self._source_failed(error)

    def reported(self) -> SztpAction:
        """A report was sent (or could not be: reports never stop bootstrapping)."""
        return self._flush()

    def image_downloaded(self, sha256: bytes) -> SztpAction:
        """The image was downloaded; ``sha256`` is its SHA-256 digest."""
        self._expect(_S.DOWNLOADING_IMAGE)
        image = self._onboarding().boot_image
        assert image is not None
        wanted = [v for v in image.image_verifications if v.hash_algorithm == sztp.SHA_256]
        if image.image_verifications and not wanted:
            return self._step_failed(
                InvalidInput("no image-verification uses a hash algorithm this device knows")
            )
        if wanted and not any(v.hash_value == sha256 for v in wanted):
            error = DigestMismatch(
                f"the boot image's SHA-256 {sha256.hex()} matches no image-verification "
                "(RFC 8572 §5.6)"
            )
            self._report(self._current().report_to, _P.BOOT_IMAGE_MISMATCH, error.message)
            return self._step_failed(error, report=False)
        self._advance(_E.IMAGE_DOWNLOADED)
        return self._then(InstallImage(image))

    def image_installed(self) -> SztpAction:
        self._expect(_S.INSTALLING_IMAGE)
        return self._step_complete(_E.IMAGE_DONE)

    def script_finished(self, exit_status: int, output: str = "") -> SztpAction:
        """A script ran: 0 success, 1 a warning (the process goes on), else an error."""
        if self.state not in (_S.PRE_SCRIPT, _S.POST_SCRIPT):
            self._expect(_S.PRE_SCRIPT)
        stage = "pre" if self.state is _S.PRE_SCRIPT else "post"
        detail = printable(output.strip()[-200:])  # goes into reports and the device's state
        if exit_status not in (0, _WARNING_EXIT):
            return self._step_failed(
                PolicyRefused(
                    f"the {stage}-configuration script failed with exit status {exit_status}"
                    + (f": {detail}" if detail else "")
                )
            )
        if exit_status == _WARNING_EXIT:
            self._report(
                self._current().report_to,
                _STEP_PROGRESS[self.state][1],
                detail or f"the {stage}-configuration script reported a warning",
            )
        event = _E.PRE_DONE if self.state is _S.PRE_SCRIPT else _E.POST_DONE
        return self._step_complete(event)

    def configuration_applied(self) -> SztpAction:
        self._expect(_S.CONFIGURING)
        return self._step_complete(_E.CONFIG_DONE)

    def step_failed(self, error: ZerotouchError) -> SztpAction:
        """The current onboarding step failed (download, install, script run, configuration
        refused and rolled back)."""
        if self.state not in _STEPS:
            self._expect(_S.CONFIGURING)
        return self._step_failed(error)

    # -- the sources ---------------------------------------------------------------------------

    def _next_source(self) -> SztpAction:
        while self._sources:
            source = self._sources.pop(0)
            key = self._key(source)
            if source.kind is SourceKind.REDIRECT and key in self._visited:
                self._errors.append(
                    (
                        source,
                        PolicyRefused(
                            f"redirect loop: {source.location} was already tried in this run "
                            "(RFC 8572 §5.5)"
                        ),
                    )
                )
                continue
            self._visited.add(key)
            nonce = self._random[:16] if self.config.send_nonce else None
            self._attempt = _Attempt(source, nonce)
            request = GetBootstrappingDataInput(
                signed_data_preferred=not source.trust_anchors,
                hw_model=self.config.hw_model,
                os_name=self.config.os_name,
                os_version=self.config.os_version,
                nonce=nonce,
            )
            return self._then(Fetch(source, request))
        self._attempt = None
        self._advance(_E.EXHAUSTED)
        return self._then(Failed(tuple(self._errors)))

    @staticmethod
    def _key(source: Source) -> str:
        return source.location.rstrip("/").lower()

    def _redirect(self, info: RedirectInformation) -> SztpAction:
        current = self._current().source
        hops = current.hops + 1
        if hops > self.config.max_redirects:
            return self._source_failed(
                PolicyRefused(
                    f"more than {self.config.max_redirects} redirects in a row: a redirect "
                    "loop (RFC 8572 §5.5)"
                )
            )
        room = MAX_REDIRECT_SOURCES - self._redirected
        if room <= 0:
            return self._source_failed(
                PolicyRefused(
                    f"redirect information queued {MAX_REDIRECT_SOURCES} bootstrap servers in "
                    "this run already: the remaining sources are tried instead (RFC 8572 §5.5)"
                )
            )
        listed = info.bootstrap_servers
        kept = listed[: min(MAX_REDIRECT_SERVERS, room)]
        if len(kept) < len(listed):
            dropped = ", ".join(printable(s.address) for s in listed[len(kept) : len(kept) + 4])
            self._errors.append(
                (
                    current,
                    PolicyRefused(
                        f"redirect information lists {len(listed)} bootstrap servers; only "
                        f"the first {len(kept)} are tried (at most {MAX_REDIRECT_SERVERS} per "
                        f"redirect, {MAX_REDIRECT_SOURCES} per run); dropped {dropped}"
                        + (", ..." if len(listed) - len(kept) > 4 else "")
                    ),
                )
            )
        self._redirected += len(kept)
        self._sources[:0] = [
            Source(
                SourceKind.REDIRECT,
                server_url(server.address, server.port),
                server.trust_anchor_certificates(),
                hops,
            )
            for server in kept
        ]
        self._advance(_E.REDIRECTED)
        return self._next_source()

    def _source_failed(self, error: ZerotouchError) -> SztpAction:
        self._errors.append((self._current().source, error))
        self._advance(_E.SOURCE_FAILED)
        return self._next_source()

    # -- onboarding ------------------------------------------------------------------------------

    def _onboard(self, info: OnboardingInformation) -> SztpAction:
        attempt = self._current()
        attempt.onboarding = info
        self._advance(_E.ONBOARDING)
        image = info.boot_image
        if image is None or self._running(image):
            return self._step_complete(_E.IMAGE_DONE, report=False)
        if not image.download_uris:
            return self._step_failed(InvalidInput("the boot image names no download-uri"))
        self._report(attempt.report_to, _P.BOOT_IMAGE_INITIATED, None)
        return self._then(DownloadImage(image))

    def _running(self, image: BootImage) -> bool:
        """§5.6: the device already runs the image's os-name and os-version."""
        return (
            image.os_name is not None
            and image.os_name == self.config.os_name
            and image.os_version == self.config.os_version
        )

    def _step_complete(self, event: SztpEvent, *, report: bool = True) -> SztpAction:
        attempt = self._current()
        if report:
            self._report(attempt.report_to, _STEP_PROGRESS[self.state][3], None)
        self._advance(event)
        info = self._onboarding()
        if self.state is _S.PRE_SCRIPT:
            if info.pre_configuration_script is None:
                return self._step_complete(_E.PRE_DONE, report=False)
            self._report(attempt.report_to, _P.PRE_SCRIPT_INITIATED, None)
            return self._then(RunScript(ScriptStage.PRE, info.pre_configuration_script))
        if self.state is _S.CONFIGURING:
            if info.configuration is None:
                return self._step_complete(_E.CONFIG_DONE, report=False)
            self._report(attempt.report_to, _P.CONFIG_INITIATED, None)
            handling = info.configuration_handling or ConfigurationHandling.MERGE
            return self._then(ApplyConfiguration(info.configuration, handling))
        if self.state is _S.POST_SCRIPT:
            if info.post_configuration_script is None:
                return self._step_complete(_E.POST_DONE, report=False)
            self._report(attempt.report_to, _P.POST_SCRIPT_INITIATED, None)
            return self._then(RunScript(ScriptStage.POST, info.post_configuration_script))
        complete = ReportProgressInput(
            progress_type=_P.BOOTSTRAP_COMPLETE, ssh_host_keys=self.config.ssh_host_keys
        )
        self._queue.append(Report(attempt.source, complete, attempt.report_to is not None))
        return self._then(Done(attempt.source, info))

    def _step_failed(self, error: ZerotouchError, *, report: bool = True) -> SztpAction:
        if report:
            self._report(self._current().report_to, _STEP_PROGRESS[self.state][2], error.message)
        return self._source_failed(error)

    # -- plumbing ------------------------------------------------------------------------------

    def _report(self, source: Source | None, kind: ProgressType, message: str | None) -> None:
        """Queue a step's report: sent to ``source`` (None: the server is not told) at the
        reporting level asked for; recorded by the device in any case."""
        attempt = self._current()
        send = source is not None and (kind in _MINIMAL or attempt.verbose)
        text = None if message is None else message[:1000]
        progress = ReportProgressInput(progress_type=kind, message=text)
        self._queue.append(Report(source or attempt.source, progress, send))

    def _then(self, action: SztpAction) -> SztpAction:
        self._queue.append(action)
        return self._flush()

    def _flush(self) -> SztpAction:
        if not self._queue:
            raise Conflict("no action is pending: the SZTP run is over")
        return self._queue.pop(0)

    def _current(self) -> _Attempt:
        if self._attempt is None:
            raise Conflict("no bootstrap source is being tried")
        return self._attempt

    def _onboarding(self) -> OnboardingInformation:
        info = self._current().onboarding
        assert info is not None
        return info

    def _expect(self, state: SztpState) -> None:
        if self.state is not state:
            raise Conflict(f"unexpected input in state {self.state} (expected {state})")

    def _advance(self, event: SztpEvent) -> None:
        self.state = transition(SZTP_TRANSITIONS, self.state, event)

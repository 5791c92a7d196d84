"""The SZTP device machine (RFC 8572 §5) driven in memory: real certificates, real CMS."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path

import pytest
from cryptography import x509

from zerotouch_plugin.artifacts import certs, cms, sztp
from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.artifacts.sztp import (
    BootImage,
    BootstrapServer,
    ConfigurationHandling,
    ConveyedInformation,
    GetBootstrappingDataOutput,
    ImageVerification,
    OnboardingInformation,
    ProgressType,
    RedirectInformation,
    ReportingLevel,
    SshHostKey,
)
from zerotouch_plugin.artifacts.voucher import Assertion, Voucher, new_nonce
from zerotouch_plugin.errors import (
    Conflict,
    DigestMismatch,
    Expired,
    PolicyRefused,
    SchemaError,
    UntrustedSigner,
    UpstreamUnavailable,
    WrongNonce,
    WrongSerial,
    ZerotouchError,
)
from zerotouch_plugin.roles.states import render_mermaid
from zerotouch_plugin.roles.sztp_device import (
    MAX_REDIRECT_SERVERS,
    MAX_REDIRECT_SOURCES,
    SZTP_TRANSITIONS,
    ApplyConfiguration,
    Done,
    DownloadImage,
    Failed,
    Fetch,
    InstallImage,
    Report,
    RunScript,
    ScriptStage,
    Source,
    SourceKind,
    SztpAction,
    SztpDevice,
    SztpDeviceConfig,
    SztpState,
    server_url,
)

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
SERIAL = "SZTP-0001"
RANDOM = bytes(range(32))
NONCE = RANDOM[:16]
IMAGE = b"vendor os image 2.0"


@dataclass
class World:
    """A manufacturer (CA, MASA, the device's IDevID), an owner, and an attacker."""

    @cached_property
    def vendor(self) -> Identity:
        return certs.make_ca("vendor CA", now=NOW - timedelta(days=1))

    @cached_property
    def masa(self) -> Identity:
        return certs.issue_masa_signer(self.vendor, "MASA", now=NOW - timedelta(days=1))

    @cached_property
    def idevid(self) -> Identity:
        return certs.issue_idevid(self.vendor, SERIAL, masa_url=None, now=NOW - timedelta(days=1))

    @cached_property
    def owner_ca(self) -> Identity:
        return certs.make_ca("owner CA", now=NOW - timedelta(days=1))

    @cached_property
    def owner(self) -> Identity:
        return certs.issue_client(self.owner_ca, "owner", now=NOW - timedelta(days=1))

    @cached_property
    def evil_ca(self) -> Identity:
        return certs.make_ca("evil CA", now=NOW - timedelta(days=1))

    @cached_property
    def evil(self) -> Identity:
        return certs.issue_client(self.evil_ca, "evil owner", now=NOW - timedelta(days=1))

    @cached_property
    def evil_vendor(self) -> Identity:
        return certs.make_ca("evil vendor", now=NOW - timedelta(days=1))

    def config(self, **changes: object) -> SztpDeviceConfig:
        values: dict[str, object] = {
            "serial": SERIAL,
            "idevid": self.idevid.cert,
            "manufacturer_anchors": (self.vendor.cert,),
            "os_name": "VendorOS",
            "os_version": "1.0",
        }
        values.update(changes)
        return SztpDeviceConfig(**values)  # type: ignore[arg-type]

    def voucher(self, *, signer: Identity | None = None, **changes: object) -> bytes:
        fields: dict[str, object] = {
            "created_on": NOW,
            "assertion": Assertion.VERIFIED,
            "serial_number": SERIAL,
            "pinned_domain_cert": certs.der(self.owner_ca.cert),
            "nonce": new_nonce(NONCE),
        }
        fields.update(changes)
        voucher = Voucher(**{k: v for k, v in fields.items() if v is not None})  # type: ignore[arg-type]
        return cms.sign(voucher.to_json(), signer=signer or self.masa, now=NOW)

    def signed(
        self,
        info: ConveyedInformation,
        *,
        signer: Identity | None = None,
        owner: Identity | None = None,
        voucher: bytes | None = None,
        level: ReportingLevel | None = None,
    ) -> GetBootstrappingDataOutput:
        owner = owner or self.owner
        chain = [owner.cert, *(c for c in owner.chain if c.subject != c.issuer)]
        return GetBootstrappingDataOutput(
            conveyed_information=sztp.sign_conveyed_information(
                info, owner=signer or owner, now=NOW
            ),
            owner_certificate=sztp.encode_certs_only(chain),
            ownership_voucher=voucher if voucher is not None else self.voucher(),
            reporting_level=level,
        )


def unsigned(
    info: ConveyedInformation, level: ReportingLevel | None = None
) -> GetBootstrappingDataOutput:
    return GetBootstrappingDataOutput(
        conveyed_information=sztp.encode_unsigned_conveyed_information(info),
        reporting_level=level,
    )


def onboarding(**changes: object) -> OnboardingInformation:
    values: dict[str, object] = {
        "boot_image": BootImage(
            os_name="VendorOS",
            os_version="2.0",
            download_uris=("https://images.example/os-2.0.bin",),
            image_verifications=(ImageVerification(hashlib.sha256(IMAGE).digest()),),
        ),
        "configuration_handling": ConfigurationHandling.MERGE,
        "pre_configuration_script": b"#!/bin/sh\nexit 0\n",
        "configuration": b'{"ietf-system:system": {}}',
        "post_configuration_script": b"#!/bin/sh\nexit 0\n",
    }
    values.update(changes)
    return OnboardingInformation(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def world() -> World:
    return World()


@dataclass
class Device:
    """Plays the I/O side: answers each action from the tables it was given."""

    answers: dict[str, GetBootstrappingDataOutput | ZerotouchError]
    trusted: set[str] = field(default_factory=set)
    image: bytes = IMAGE
    scripts: dict[ScriptStage, int] = field(default_factory=dict)
    config_error: ZerotouchError | None = None
    reports: list[tuple[str, ProgressType, str | None]] = field(default_factory=list)
    recorded: list[ProgressType] = field(default_factory=list)  # sent or not
    steps: list[str] = field(default_factory=list)

    def run(self, machine: SztpDevice) -> Done | Failed:
        action: SztpAction = machine.start()
        for _ in range(200):
            if isinstance(action, Done | Failed):
                return action
            action = self._perform(machine, action)
        raise AssertionError("the machine did not finish")

    def _perform(self, machine: SztpDevice, action: SztpAction) -> SztpAction:
        handlers: dict[type, Callable[[SztpDevice, SztpAction], SztpAction]] = {
            Fetch: self._fetch,
            Report: self._report,
            DownloadImage: self._download,
            InstallImage: self._install,
            RunScript: self._script,
            ApplyConfiguration: self._configure,
        }
        return handlers[type(action)](machine, action)

    def _fetch(self, machine: SztpDevice, action: SztpAction) -> SztpAction:
        assert isinstance(action, Fetch)
        location = action.source.location
        self.steps.append(f"fetch {location}")
        answer = self.answers.get(location, UpstreamUnavailable(f"{location} is down"))
        if isinstance(answer, ZerotouchError):
            return machine.unreachable(answer)
        return machine.fetched(answer, server_trusted=location in self.trusted, now=NOW)

    def _report(self, machine: SztpDevice, action: SztpAction) -> SztpAction:
        assert isinstance(action, Report)
        progress = action.progress
        if action.send:
            self.reports.append((action.source.location, progress.progress_type, progress.message))
        self.recorded.append(progress.progress_type)
        return machine.reported()

    def _download(self, machine: SztpDevice, action: SztpAction) -> SztpAction:
        self.steps.append("download")
        return machine.image_downloaded(hashlib.sha256(self.image).digest())

    def _install(self, machine: SztpDevice, action: SztpAction) -> SztpAction:
        self.steps.append("install")
        return machine.image_installed()

    def _script(self, machine: SztpDevice, action: SztpAction) -> SztpAction:
        assert isinstance(action, RunScript)
        self.steps.append(f"{action.stage}-script")
        return machine.script_finished(self.scripts.get(action.stage, 0), "script output")

    def _configure(self, machine: SztpDevice, action: SztpAction) -> SztpAction:
        assert isinstance(action, ApplyConfiguration)
        self.steps.append(f"configure {action.handling}")
        if self.config_error is not None:
            return machine.step_failed(self.config_error)
        return machine.configuration_applied()

    def types(self, location: str) -> list[ProgressType]:
        return [kind for where, kind, _ in self.reports if where == location]


A = "https://a.example:443"
B = "https://b.example:443"
C = "https://c.example:443"


def machine(world: World, *sources: Source, **config: object) -> SztpDevice:
    return SztpDevice(world.config(**config), sources, random_bytes=RANDOM)


def src(location: str, *anchors: x509.Certificate) -> Source:
    return Source(SourceKind.CONFIGURED, location, anchors)


def only_error(result: Done | Failed) -> ZerotouchError:
    assert isinstance(result, Failed), result
    assert len(result.errors) == 1, result.errors
    return result.errors[0][1]


# ---------------------------------------------------------------------------------------------
# the happy paths


def test_signed_onboarding_from_an_untrusted_server_runs_every_step(world: World) -> None:
    device = Device({A: world.signed(onboarding())})
    result = device.run(machine(world, src(A)))
    assert isinstance(result, Done)
    assert result.onboarding.configuration == b'{"ietf-system:system": {}}'
    assert device.steps == [
        f"fetch {A}",
        "download",
        "install",
        "pre-script",
        "configure merge",
        "post-script",
    ]
    # an untrusted server gets no progress reports, even though its data verified (§7.2);
    # the device still records every step
    assert device.reports == []
    assert device.recorded[0] is ProgressType.BOOTSTRAP_INITIATED
    assert ProgressType.CONFIG_COMPLETE in device.recorded
    assert device.recorded[-1] is ProgressType.BOOTSTRAP_COMPLETE


def test_a_trusted_server_asking_verbose_gets_every_step(world: World) -> None:
    answer = world.signed(onboarding(), level=ReportingLevel.VERBOSE)
    device = Device({A: answer}, trusted={A})
    assert isinstance(device.run(machine(world, src(A, world.owner_ca.cert))), Done)
    assert device.types(A) == [
        ProgressType.BOOTSTRAP_INITIATED,
        ProgressType.PARSING_COMPLETE,
        ProgressType.BOOT_IMAGE_INITIATED,
        ProgressType.BOOT_IMAGE_COMPLETE,
        ProgressType.PRE_SCRIPT_INITIATED,
        ProgressType.PRE_SCRIPT_COMPLETE,
        ProgressType.CONFIG_INITIATED,
        ProgressType.CONFIG_COMPLETE,
        ProgressType.POST_SCRIPT_INITIATED,
        ProgressType.POST_SCRIPT_COMPLETE,
        ProgressType.BOOTSTRAP_COMPLETE,
    ]


def test_a_trusted_server_gets_the_minimal_reports_by_default(world: World) -> None:
    device = Device({A: unsigned(onboarding())}, trusted={A})
    assert isinstance(device.run(machine(world, src(A, world.owner_ca.cert))), Done)
    assert device.types(A) == [ProgressType.BOOTSTRAP_INITIATED, ProgressType.BOOTSTRAP_COMPLETE]


def test_bootstrap_complete_carries_the_ssh_host_keys(world: World) -> None:
    key = SshHostKey("ssh-ed25519", b"\x00\x00\x00\x0bssh-ed25519" + bytes(36))
    device = SztpDevice(
        world.config(ssh_host_keys=(key,)), [src(A, world.owner_ca.cert)], random_bytes=RANDOM
    )
    action = device.start()
    reports: list[Report] = []
    assert isinstance(action, Fetch)
    action = device.fetched(unsigned(onboarding(boot_image=None)), server_trusted=True, now=NOW)
    while not isinstance(action, Done):
        if isinstance(action, Report):
            if action.send:
                reports.append(action)
            action = device.reported()
        elif isinstance(action, RunScript):
            action = device.script_finished(0)
        else:
            assert isinstance(action, ApplyConfiguration)
            action = device.configuration_applied()
    assert reports[-1].progress.progress_type is ProgressType.BOOTSTRAP_COMPLETE
    assert reports[-1].progress.ssh_host_keys == (key,)
    assert len(reports) == 2 and reports[0].progress.ssh_host_keys == ()


def test_the_request_asks_untrusted_servers_for_signed_data_with_a_nonce(world: World) -> None:
    first = machine(world, src(A), src(B, world.owner_ca.cert)).start()
    assert isinstance(first, Fetch)
    assert first.request.signed_data_preferred is True
    assert first.request.nonce == NONCE
    assert (first.request.hw_model, first.request.os_name) == (None, "VendorOS")
    trusted = machine(world, src(B, world.owner_ca.cert), send_nonce=False).start()
    assert isinstance(trusted, Fetch)
    assert trusted.request.signed_data_preferred is False
    assert trusted.request.nonce is None


def test_unsigned_data_is_accepted_from_a_trusted_server(world: World) -> None:
    device = Device({A: unsigned(onboarding(boot_image=None))}, trusted={A})
    result = device.run(machine(world, src(A, world.owner_ca.cert)))
    assert isinstance(result, Done)
    assert "download" not in device.steps
    assert device.types(A)[-1] is ProgressType.BOOTSTRAP_COMPLETE


def test_an_image_the_device_runs_already_is_not_downloaded(world: World) -> None:
    running = BootImage(os_name="VendorOS", os_version="1.0", download_uris=("https://x/y",))
    device = Device({A: world.signed(onboarding(boot_image=running))})
    assert isinstance(device.run(machine(world, src(A))), Done)
    assert "download" not in device.steps


def test_a_nonceless_voucher_with_expires_on_is_accepted(world: World) -> None:
    voucher = world.voucher(nonce=None, expires_on=NOW + timedelta(days=30))
    device = Device({A: world.signed(onboarding(), voucher=voucher)})
    assert isinstance(device.run(machine(world, src(A), send_nonce=False)), Done)


def test_redirect_information_leads_to_a_server_trusted_by_its_anchor(world: World) -> None:
    anchor = sztp.encode_certs_only([world.owner_ca.cert])
    redirect = RedirectInformation(bootstrap_servers=(BootstrapServer("b.example", 443, anchor),))
    device = Device(
        {A: world.signed(redirect), B: unsigned(onboarding(boot_image=None))}, trusted={B}
    )
    result = device.run(machine(world, src(A)))
    assert isinstance(result, Done)
    assert result.source.kind is SourceKind.REDIRECT
    assert result.source.trust_anchors == (world.owner_ca.cert,)
    assert device.steps[:2] == [f"fetch {A}", f"fetch {B}"]
    assert device.types(B)[-1] is ProgressType.BOOTSTRAP_COMPLETE


def test_unsigned_redirect_without_anchor_leaves_the_next_server_untrusted(
    world: World,
) -> None:
    """A trusted server may redirect unsigned, but without a trust anchor the next server
    is not trusted: its unsigned data is refused, its signed data accepted."""
    redirect = RedirectInformation(bootstrap_servers=(BootstrapServer("b.example", 443),))
    refused = Device({A: unsigned(redirect), B: unsigned(onboarding())}, trusted={A, B})
    error = only_error(refused.run(machine(world, src(A, world.owner_ca.cert))))
    assert isinstance(error, UntrustedSigner)
    assert refused.steps == [f"fetch {A}", f"fetch {B}"]
    signed = Device(
        {A: unsigned(redirect), B: world.signed(onboarding(boot_image=None))}, trusted={A}
    )
    assert isinstance(signed.run(machine(world, src(A, world.owner_ca.cert))), Done)


def test_unsigned_redirect_from_an_untrusted_source_is_followed_provisionally(
    world: World,
) -> None:
    """RFC 8572 §5.3: an untrusted source (DNS, DHCP, media) may send unsigned redirect
    information; its trust anchors are discarded (§5.5), so the next server is untrusted and
    must send signed data; unsigned onboarding information stays refused."""
    anchor = sztp.encode_certs_only([world.owner_ca.cert])
    redirect = RedirectInformation(bootstrap_servers=(BootstrapServer("b.example", 443, anchor),))
    refused = Device({A: unsigned(redirect), B: unsigned(onboarding())}, trusted={B})
    error = only_error(refused.run(machine(world, src(A))))
    assert isinstance(error, UntrustedSigner)
    assert refused.steps == [f"fetch {A}", f"fetch {B}"]
    signed = Device({A: unsigned(redirect), B: world.signed(onboarding(boot_image=None))})
    result = signed.run(machine(world, src(A)))
    assert isinstance(result, Done)
    assert result.source.location == B and result.source.trust_anchors == ()


def test_a_failing_source_falls_through_to_the_next(world: World) -> None:
    device = Device({B: world.signed(onboarding(boot_image=None))})
    result = device.run(machine(world, src(A), src(B)))
    assert isinstance(result, Done)
    assert result.source.location == B


def test_script_output_reaches_reports_escaped(world: World) -> None:
    device = SztpDevice(world.config(), [src(A, world.owner_ca.cert)], random_bytes=RANDOM)
    device.start()
    answer = unsigned(onboarding(boot_image=None), ReportingLevel.VERBOSE)
    action = device.fetched(answer, server_trusted=True, now=NOW)
    while not isinstance(action, RunScript):
        action = device.reported()
    action = device.script_finished(1, "careful\x1b[31m\nred")
    assert isinstance(action, Report)
    assert action.progress.progress_type is ProgressType.PRE_SCRIPT_WARNING
    assert action.progress.message == "careful\\x1b[31m\\x0ared"


def test_script_warning_goes_on_and_is_reported(world: World) -> None:
    answer = unsigned(onboarding(boot_image=None), ReportingLevel.VERBOSE)
    device = Device({A: answer}, trusted={A}, scripts={ScriptStage.PRE: 1})
    assert isinstance(device.run(machine(world, src(A, world.owner_ca.cert))), Done)
    assert ProgressType.PRE_SCRIPT_WARNING in device.types(A)


# ---------------------------------------------------------------------------------------------
# the attacks: each ends this source's attempt with the named error, and nothing is applied


def _attacks(world: World) -> list[tuple[str, Device, type[ZerotouchError], str]]:
    info = onboarding(boot_image=None)
    other_serial = world.voucher(serial_number="SZTP-9999")
    return [
        (
            "voucher for another serial",
            Device({A: world.signed(info, voucher=other_serial)}),
            WrongSerial,
            "serial",
        ),
        (
            "voucher from another manufacturer",
            Device({A: world.signed(info, voucher=world.voucher(signer=world.evil_vendor))}),
            UntrustedSigner,
            "",
        ),
        (
            "voucher for another nonce",
            Device({A: world.signed(info, voucher=world.voucher(nonce=new_nonce(b"x" * 16)))}),
            WrongNonce,
            "",
        ),
        (
            "nonceless voucher without expires-on",
            Device({A: world.signed(info, voucher=world.voucher(nonce=None))}),
            WrongNonce,
            "expires-on",
        ),
        (
            "expired nonceless voucher",
            Device(
                {
                    A: world.signed(
                        info,
                        voucher=world.voucher(nonce=None, expires_on=NOW - timedelta(minutes=1)),
                    )
                }
            ),
            Expired,
            "",
        ),
        (
            "owner certificate not under the pinned-domain-cert",
            Device({A: world.signed(info, owner=world.evil)}),
            UntrustedSigner,
            "pinned-domain-cert",
        ),
        (
            "conveyed information signed by another key",
            Device({A: world.signed(info, signer=world.evil)}),
            UntrustedSigner,
            "not by the owner certificate",
        ),
        (
            "unsigned data from an untrusted server",
            Device({A: unsigned(info)}),
            UntrustedSigner,
            "§5.3",
        ),
        (
            "image hash mismatch",
            Device({A: world.signed(onboarding())}, image=b"tampered image"),
            DigestMismatch,
            "SHA-256",
        ),
        (
            "invalid configuration",
            Device(
                {A: world.signed(info)},
                config_error=SchemaError("unknown module 'nope'", path="/nope:x"),
            ),
            SchemaError,
            "nope",
        ),
        (
            "pre-configuration script error",
            Device({A: world.signed(info)}, scripts={ScriptStage.PRE: 2}),
            PolicyRefused,
            "exit status 2",
        ),
    ]


ATTACK_NAMES = [name for name, *_ in _attacks(World())]


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_attack_is_refused(world: World, name: str) -> None:
    _, device, error_type, words = next(a for a in _attacks(world) if a[0] == name)
    result = device.run(machine(world, src(A)))
    error = only_error(result)
    assert isinstance(error, error_type), error
    assert words in error.message
    assert "configure merge" not in device.steps or isinstance(error, SchemaError)
    assert "post-script" not in device.steps
    assert ProgressType.BOOTSTRAP_COMPLETE not in device.types(A)


def test_unsigned_data_from_a_server_that_failed_its_anchor_is_refused(world: World) -> None:
    device = Device({A: unsigned(onboarding())})
    error = only_error(device.run(machine(world, src(A, world.owner_ca.cert))))
    assert isinstance(error, UntrustedSigner)
    assert device.reports == []


def test_refused_signed_data_from_an_untrusted_server_is_not_reported_to_it(world: World) -> None:
    device = Device({A: world.signed(onboarding(), owner=world.evil)})
    device.run(machine(world, src(A)))
    assert device.reports == []


def test_parsing_error_is_reported_to_a_trusted_server(world: World) -> None:
    device = Device({A: world.signed(onboarding(), signer=world.evil)}, trusted={A})
    device.run(machine(world, src(A, world.owner_ca.cert)))
    assert device.types(A) == [ProgressType.BOOTSTRAP_INITIATED, ProgressType.PARSING_ERROR]


def test_image_mismatch_is_reported_as_such(world: World) -> None:
    device = Device({A: unsigned(onboarding())}, trusted={A}, image=b"tampered")
    device.run(machine(world, src(A, world.owner_ca.cert)))
    assert device.types(A) == [ProgressType.BOOTSTRAP_INITIATED, ProgressType.BOOT_IMAGE_MISMATCH]
    assert "install" not in device.steps


def test_configuration_error_is_reported_and_the_post_script_never_runs(world: World) -> None:
    device = Device(
        {A: unsigned(onboarding(boot_image=None))},
        trusted={A},
        config_error=SchemaError("bad leaf"),
    )
    device.run(machine(world, src(A, world.owner_ca.cert)))
    assert device.types(A)[-1] is ProgressType.CONFIG_ERROR
    assert device.steps[-1] == "configure merge"


def test_redirect_information_gets_no_reports(world: World) -> None:
    redirect = RedirectInformation(bootstrap_servers=(BootstrapServer("b.example", 443),))
    device = Device({A: unsigned(redirect, ReportingLevel.VERBOSE)}, trusted={A})
    device.run(machine(world, src(A, world.owner_ca.cert)))
    assert device.types(A) == []


def test_redirect_loop_is_stopped(world: World) -> None:
    def to(host: str) -> RedirectInformation:
        return RedirectInformation(bootstrap_servers=(BootstrapServer(host, 443),))

    device = Device({A: world.signed(to("b.example")), B: world.signed(to("a.example"))})
    result = device.run(machine(world, src(A)))
    assert isinstance(result, Failed)
    assert device.steps == [f"fetch {A}", f"fetch {B}"]
    assert isinstance(result.errors[-1][1], PolicyRefused)
    assert "redirect loop" in result.errors[-1][1].message


def test_redirect_chain_is_bounded(world: World) -> None:
    hosts = [f"h{i}.example" for i in range(6)]
    answers: dict[str, GetBootstrappingDataOutput | ZerotouchError] = {
        A: world.signed(RedirectInformation(bootstrap_servers=(BootstrapServer(hosts[0]),)))
    }
    for here, there in itertools.pairwise(hosts):
        redirect = RedirectInformation(bootstrap_servers=(BootstrapServer(there),))
        answers[server_url(here, 443)] = world.signed(redirect)
    device = Device(answers)
    result = device.run(machine(world, src(A), max_redirects=3))
    error = only_error(result)
    assert isinstance(error, PolicyRefused)
    assert "more than 3 redirects" in error.message
    assert len([s for s in device.steps if s.startswith("fetch")]) == 4


def _servers(first: int, count: int) -> RedirectInformation:
    hosts = (f"10.0.{i // 256}.{i % 256}" for i in range(first, first + count))
    return RedirectInformation(bootstrap_servers=tuple(BootstrapServer(h) for h in hosts))


def test_one_redirect_queues_at_most_sixteen_servers(world: World) -> None:
    """RFC 8572 §5.3: any source may send unsigned redirect information; a long list must
    not keep the device from the sources after it."""
    device = Device({A: unsigned(_servers(0, 5000)), B: world.signed(onboarding(boot_image=None))})
    run = machine(world, src(A), Source(SourceKind.MEDIA, B))
    result = device.run(run)
    assert isinstance(result, Done) and result.source.location == B
    fetches = [s for s in device.steps if s.startswith("fetch")]
    assert len(fetches) == 1 + MAX_REDIRECT_SERVERS + 1 == 18
    (source, error), *_ = run.errors
    assert source.location == A and "lists 5000 bootstrap servers" in error.message


def test_nested_redirects_queue_at_most_sixty_four_servers_in_a_run(world: World) -> None:
    """Each redirected server redirecting again to fresh servers: the configured source
    after them is still reached, after at most MAX_REDIRECT_SOURCES redirect fetches."""
    run = machine(world, src(A), src(B))
    legit = world.signed(onboarding(boot_image=None))
    fresh = itertools.count(0, 20)
    action = run.start()
    fetches: list[str] = []
    while not isinstance(action, Done | Failed) and len(fetches) < 1000:
        if isinstance(action, Report):
            action = run.reported()
        elif isinstance(action, RunScript):
            action = run.script_finished(0)
        elif isinstance(action, ApplyConfiguration):
            action = run.configuration_applied()
        else:
            assert isinstance(action, Fetch)
            fetches.append(action.source.location)
            answer = legit if action.source.location == B else unsigned(_servers(next(fresh), 20))
            action = run.fetched(answer, server_trusted=False, now=NOW)
    assert isinstance(action, Done) and action.source.location == B
    assert len(fetches) == 1 + MAX_REDIRECT_SOURCES + 1
    assert "64 bootstrap servers in this run" in run.errors[-1][1].message


def test_all_sources_failing_names_each(world: World) -> None:
    device = Device({B: unsigned(onboarding())})
    result = device.run(machine(world, src(A), src(B), src(C)))
    assert isinstance(result, Failed)
    assert [s.location for s, _ in result.errors] == [A, B, C]
    assert isinstance(result.errors[1][1], UntrustedSigner)


def test_inputs_out_of_order_are_a_conflict(world: World) -> None:
    device = machine(world, src(A))
    device.start()
    with pytest.raises(Conflict):
        device.configuration_applied()
    assert device.state is SztpState.FETCHING


def test_server_url_brackets_ipv6() -> None:
    assert server_url("2001:db8::1", 8443) == "https://[2001:db8::1]:8443"
    assert server_url("192.0.2.1", 443) == "https://192.0.2.1:443"


def test_the_diagram_in_docs_is_the_table() -> None:
    drawing = render_mermaid(SZTP_TRANSITIONS, initial=[SztpState.IDLE], final=[SztpState.DONE])
    doc = (Path(__file__).parents[3] / "docs" / "sztp.md").read_text()
    assert f"```mermaid\n{drawing}```" in doc
    assert "fetching --> downloading_image: onboarding" in drawing

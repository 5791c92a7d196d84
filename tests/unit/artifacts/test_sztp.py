"""SZTP artifacts (RFC 8572): conveyed information, its CMS forms and the RPC payloads."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from zerotouch_plugin.artifacts import certs, sztp
from zerotouch_plugin.artifacts.sztp import (
    BootImage,
    BootstrapServer,
    ConfigurationHandling,
    Encoding,
    GetBootstrappingDataInput,
    GetBootstrappingDataOutput,
    ImageVerification,
    OnboardingInformation,
    ProgressType,
    RedirectInformation,
    ReportingLevel,
    ReportProgressInput,
    SshHostKey,
)
from zerotouch_plugin.errors import (
    ArtifactKindMismatch,
    InvalidInput,
    NotCMS,
    SchemaError,
    UnsupportedMediaType,
    UntrustedSigner,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def owner_ca() -> certs.Identity:
    return certs.make_ca("owner root", now=NOW)


@pytest.fixture(scope="module")
def owner(owner_ca: certs.Identity) -> certs.Identity:
    return certs.issue_client(owner_ca, "owner", now=NOW)


def _onboarding() -> OnboardingInformation:
    return OnboardingInformation(
        boot_image=BootImage(
            os_name="VendorOS",
            os_version="1.2",
            download_uris=("https://img.example/a.bin", "https://img2.example/a.bin"),
            image_verifications=(ImageVerification(bytes(range(32))),),
        ),
        configuration_handling=ConfigurationHandling.MERGE,
        pre_configuration_script=b"#!/bin/sh\necho pre\n",
        configuration=b'{"ietf-system:system": {}}',
        post_configuration_script=b"#!/bin/sh\necho post\n",
    )


def _redirect(owner_ca: certs.Identity) -> RedirectInformation:
    anchor = sztp.encode_certs_only([owner_ca.cert])
    return RedirectInformation(
        bootstrap_servers=(
            BootstrapServer("sztp1.example.net", 8443, anchor),
            BootstrapServer("192.0.2.7"),
        )
    )


@pytest.mark.parametrize("encoding", list(Encoding))
def test_conveyed_information_round_trips(encoding: Encoding, owner_ca: certs.Identity) -> None:
    for info in (_onboarding(), _redirect(owner_ca)):
        data = info.encode(encoding)
        assert sztp.parse_conveyed_information(data, encoding) == info


def test_json_is_rfc7951_with_the_module_name() -> None:
    obj = json.loads(_onboarding().encode(Encoding.JSON))
    inner = obj["ietf-sztp-conveyed-info:onboarding-information"]
    assert inner["boot-image"]["image-verification"][0]["hash-algorithm"] == sztp.SHA_256
    assert inner["boot-image"]["image-verification"][0]["hash-value"].startswith("00:01:02")
    assert base64.b64decode(inner["configuration"]) == b'{"ietf-system:system": {}}'


def test_redirect_default_port_and_trust_anchor(owner_ca: certs.Identity) -> None:
    info = _redirect(owner_ca)
    assert info.bootstrap_servers[1].port == 443
    assert info.bootstrap_servers[0].trust_anchor_certificates() == (owner_ca.cert,)
    assert info.bootstrap_servers[1].trust_anchor_certificates() == ()


@pytest.mark.parametrize(
    ("build", "error", "where"),
    [
        (lambda: RedirectInformation(bootstrap_servers=()), SchemaError, "redirect-information"),
        (
            lambda: RedirectInformation((BootstrapServer("x", 70000),)),
            SchemaError,
            "bootstrap-server",
        ),
        (
            lambda: RedirectInformation((BootstrapServer("host", 443, b"not cms"),)),
            NotCMS,
            None,
        ),
        (
            lambda: OnboardingInformation(configuration=b"x"),
            SchemaError,
            "configuration",
        ),
        (
            lambda: OnboardingInformation(configuration_handling=ConfigurationHandling.REPLACE),
            SchemaError,
            "configuration-handling",
        ),
        (
            lambda: OnboardingInformation(
                boot_image=BootImage(image_verifications=(ImageVerification(b"\x01"),))
            ),
            SchemaError,
            "image-verification",
        ),
    ],
)
def test_invalid_conveyed_information_is_refused(
    build: object, error: type[Exception], where: str | None
) -> None:
    with pytest.raises(error) as caught:
        build()  # type: ignore[operator]
    if where is not None:
        assert where in str(caught.value)


@pytest.mark.parametrize(
    ("data", "error", "text"),
    [
        (b"{", InvalidInput, "not valid JSON"),
        (b"[]", SchemaError, "exactly one member"),
        (b'{"ietf-voucher:voucher": {}}', SchemaError, "unknown top-level member"),
        (
            b'{"ietf-sztp-conveyed-info:onboarding-information": {"bogus": 1}}',
            SchemaError,
            "bogus",
        ),
        (
            b'{"ietf-sztp-conveyed-info:onboarding-information": {"configuration": "%%%",'
            b' "configuration-handling": "merge"}}',
            SchemaError,
            "configuration",
        ),
        (
            b'{"ietf-sztp-conveyed-info:onboarding-information": {}, "x": 1}',
            SchemaError,
            "exactly one member",
        ),
    ],
)
def test_malformed_json(data: bytes, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        sztp.parse_conveyed_information(data, Encoding.JSON)


def test_xml_is_parsed_safely() -> None:
    bomb = (
        b'<!DOCTYPE x [<!ENTITY a "aaaa">]><onboarding-information '
        b'xmlns="urn:ietf:params:xml:ns:yang:ietf-sztp-conveyed-info">&a;</onboarding-information>'
    )
    with pytest.raises(InvalidInput, match=r"DOCTYPE|not well-formed"):
        sztp.parse_conveyed_information(bomb, Encoding.XML)
    with pytest.raises(SchemaError, match="not conveyed information"):
        sztp.parse_conveyed_information(b"<x/>", Encoding.XML)
    with pytest.raises(SchemaError, match="unknown element"):
        sztp.parse_conveyed_information(
            b'<redirect-information xmlns="urn:ietf:params:xml:ns:yang:ietf-sztp-conveyed-info">'
            b"<nope/></redirect-information>",
            Encoding.XML,
        )


def test_inline_xml_configuration_is_a_named_tolerance() -> None:
    data = (
        b'<onboarding-information xmlns="urn:ietf:params:xml:ns:yang:ietf-sztp-conveyed-info">'
        b"<configuration-handling>replace</configuration-handling>"
        b'<configuration><system xmlns="urn:x"><a>1</a></system></configuration>'
        b"</onboarding-information>"
    )
    info = sztp.parse_conveyed_information(data, Encoding.XML)
    assert isinstance(info, OnboardingInformation)
    assert info.configuration == b'<system xmlns="urn:x"><a>1</a></system>'
    with pytest.raises(SchemaError, match="XML elements"):
        sztp.parse_conveyed_information(data, Encoding.XML, tolerances=sztp.STRICT)


@pytest.mark.parametrize("encoding", list(Encoding))
def test_signed_conveyed_information(encoding: Encoding, owner: certs.Identity) -> None:
    info = _onboarding()
    der = sztp.sign_conveyed_information(info, owner=owner, now=NOW, encoding=encoding)
    got = sztp.verify_conveyed_information(der, owner_certificate=owner.cert, now=NOW)
    assert got == info
    with pytest.raises(ArtifactKindMismatch, match="not unsigned conveyed information"):
        sztp.read_unsigned_conveyed_information(der)


def test_signed_by_another_key_is_refused(owner_ca: certs.Identity, owner: certs.Identity) -> None:
    other = certs.issue_client(owner_ca, "someone else", now=NOW)
    der = sztp.sign_conveyed_information(_onboarding(), owner=other, now=NOW)
    with pytest.raises(UntrustedSigner):
        sztp.verify_conveyed_information(der, owner_certificate=owner.cert, now=NOW)


def test_signed_with_an_expired_owner_certificate(owner: certs.Identity) -> None:
    der = sztp.sign_conveyed_information(_onboarding(), owner=owner, now=NOW)
    with pytest.raises(Exception, match="not valid"):
        sztp.verify_conveyed_information(
            der, owner_certificate=owner.cert, now=NOW + timedelta(days=5000)
        )


@pytest.mark.parametrize("encoding", list(Encoding))
def test_unsigned_conveyed_information(encoding: Encoding, owner_ca: certs.Identity) -> None:
    info = _redirect(owner_ca)
    der = sztp.encode_unsigned_conveyed_information(info, encoding)
    assert der[:1] == b"\x30"
    assert sztp.read_unsigned_conveyed_information(der) == info
    with pytest.raises(NotCMS):
        sztp.verify_conveyed_information(der, owner_certificate=owner_ca.cert, now=NOW)


def test_unsigned_of_another_content_type_is_refused(owner_ca: certs.Identity) -> None:
    with pytest.raises(ArtifactKindMismatch, match="not unsigned conveyed information"):
        sztp.read_unsigned_conveyed_information(sztp.encode_certs_only([owner_ca.cert]))


def test_owner_certificate_certs_only(owner_ca: certs.Identity, owner: certs.Identity) -> None:
    der = sztp.encode_certs_only([owner_ca.cert, owner.cert])
    chain = sztp.decode_certs_only(der)
    assert sztp.end_entity(chain) == owner.cert
    with pytest.raises(NotCMS):
        sztp.decode_certs_only(b"\x30\x03\x02\x01\x00")


@pytest.mark.parametrize("encoding", list(Encoding))
def test_rpc_payloads_round_trip(encoding: Encoding) -> None:
    payloads = [
        GetBootstrappingDataInput(),
        GetBootstrappingDataInput(
            signed_data_preferred=True, hw_model="m1", os_name="os", os_version="1", nonce=b"n" * 16
        ),
        GetBootstrappingDataOutput(
            conveyed_information=b"\x30\x00",
            owner_certificate=b"oc",
            ownership_voucher=b"ov",
            reporting_level=ReportingLevel.VERBOSE,
        ),
        ReportProgressInput(ProgressType.CONFIG_ERROR, message="bad config"),
        ReportProgressInput(
            ProgressType.BOOTSTRAP_COMPLETE,
            ssh_host_keys=(SshHostKey("ssh-ed25519", b"key"),),
            trust_anchor_certs=(b"cms",),
        ),
    ]
    for payload in payloads:
        assert type(payload).parse(payload.encode(encoding), encoding) == payload


@pytest.mark.parametrize(
    ("cls", "body", "text"),
    [
        (
            GetBootstrappingDataInput,
            b'{"ietf-sztp-bootstrap-server:input": {"nonce": "AA=="}}',
            "nonce",
        ),
        (GetBootstrappingDataInput, b'{"input": {}}', "one object member"),
        (GetBootstrappingDataInput, b'{"ietf-sztp-bootstrap-server:input": {"x": 1}}', "x"),
        (ReportProgressInput, b'{"ietf-sztp-bootstrap-server:input": {}}', "progress-type"),
        (
            ReportProgressInput,
            b'{"ietf-sztp-bootstrap-server:input": {"progress-type": "done"}}',
            "progress-type",
        ),
        (
            ReportProgressInput,
            b'{"ietf-sztp-bootstrap-server:input": {"progress-type": "bootstrap-initiated",'
            b' "ssh-host-keys": {"ssh-host-key": []}}}',
            "ssh-host-keys",
        ),
        (GetBootstrappingDataOutput, b'{"ietf-sztp-bootstrap-server:output": {}}', "conveyed"),
    ],
)
def test_malformed_rpc_payloads(
    cls: type[sztp.GetBootstrappingDataInput], body: bytes, text: str
) -> None:
    with pytest.raises(SchemaError, match=text) as caught:
        cls.parse(body, Encoding.JSON)
    assert caught.value.path is not None


_Q = "ietf-sztp-bootstrap-server:"


@pytest.mark.parametrize(
    ("cls", "inner", "member"),
    [
        (GetBootstrappingDataInput, {f"{_Q}signed-data-preferred": [None]}, "signed-data-pref"),
        (GetBootstrappingDataInput, {f"{_Q}nonce": "AAAAAAAAAAAAAAAAAAAAAA=="}, "nonce"),
        (GetBootstrappingDataInput, {f"{_Q}hw-model": "m-1"}, "hw-model"),
        (GetBootstrappingDataInput, {f"{_Q}os-name": "os"}, "os-name"),
        (GetBootstrappingDataInput, {f"{_Q}os-version": "1"}, "os-version"),
        (ReportProgressInput, {f"{_Q}progress-type": "bootstrap-initiated"}, "progress-type"),
        (
            ReportProgressInput,
            {"progress-type": "bootstrap-initiated", f"{_Q}message": "m"},
            "message",
        ),
        (
            ReportProgressInput,
            {
                "progress-type": "bootstrap-complete",
                "ssh-host-keys": {
                    "ssh-host-key": [{f"{_Q}algorithm": "ssh-ed25519", "key-data": "AA=="}]
                },
            },
            "algorithm",
        ),
    ],
)
def test_module_qualified_input_members_are_refused(
    cls: type[GetBootstrappingDataInput], inner: dict[str, object], member: str
) -> None:
    """RFC 7951 §4: a member of its parent's module has its simple name; a qualified one
    must not pass validation and then be read as absent."""
    body = json.dumps({f"{_Q}input": inner}).encode()
    with pytest.raises(SchemaError, match="without a module name") as caught:
        cls.parse(body, Encoding.JSON)
    assert member in str(caught.value.path)


def test_module_qualified_conveyed_members_are_refused() -> None:
    module = sztp.CONVEYED_MODULE
    obj = {f"{module}:onboarding-information": {f"{module}:configuration": ""}}
    with pytest.raises(SchemaError, match="without a module name"):
        sztp.conveyed_information_from_dict(obj)


def test_empty_input_body_is_empty_input() -> None:
    assert GetBootstrappingDataInput.parse(b"", Encoding.JSON) == GetBootstrappingDataInput()


def test_progress_types_are_the_yang_enumeration() -> None:
    for progress in ProgressType:
        assert ReportProgressInput(progress).progress_type is progress
    assert len(ProgressType) == 27


def test_media_types() -> None:
    assert Encoding.of_media_type("application/yang-data+json; charset=utf-8") is Encoding.JSON
    assert Encoding.of_media_type("application/yang.data+xml") is Encoding.XML
    with pytest.raises(UnsupportedMediaType):
        Encoding.of_media_type("text/plain")


@pytest.mark.parametrize(
    "child",
    [
        '<os-name xmlns="urn:example:other">evil</os-name>',
        '<os-name xmlns="">evil</os-name>',
        '<x:nonce xmlns:x="urn:example:other">AAAAAAAAAAAAAAAAAAAAAA==</x:nonce>',
    ],
)
def test_an_xml_input_element_of_another_namespace_is_refused(child: str) -> None:
    """RFC 7950 §7.5.8: an element is the leaf of its namespace; another namespace's os-name
    was read as this module's."""
    body = f'<input xmlns="{sztp.NS_BOOTSTRAP_SERVER}">{child}</input>'.encode()
    with pytest.raises(SchemaError, match="namespace") as caught:
        GetBootstrappingDataInput.parse(body, Encoding.XML)
    assert caught.value.path is not None
    plain = f'<input xmlns="{sztp.NS_BOOTSTRAP_SERVER}"><os-name>os</os-name></input>'
    assert GetBootstrappingDataInput.parse(plain.encode(), Encoding.XML).os_name == "os"

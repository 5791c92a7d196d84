"""SZTP (RFC 8572) artifacts: conveyed information, its CMS forms and the RESTCONF RPC payloads.

Every value object is immutable and validated against the official YANG modules when built
and when parsed (``ietf-sztp-conveyed-info``, ``ietf-sztp-bootstrap-server``; the conveyed
information is ``rc:yang-data``, so it is validated through ``zerotouch-sztp-validation``,
which restates that structure node for node). An object that exists is a valid artifact.

API
---
Conveyed information (RFC 8572 §6.3), ``ConveyedInformation = RedirectInformation |
OnboardingInformation``:

* ``RedirectInformation(bootstrap_servers=(BootstrapServer(address, port, trust_anchor), ...))``;
  ``trust_anchor`` is a DER certs-only CMS (``encode_certs_only`` / ``decode_certs_only``).
* ``OnboardingInformation(boot_image=BootImage(os_name, os_version, download_uris,
  image_verifications=(ImageVerification(hash_value),)), configuration_handling,
  pre_configuration_script, configuration, post_configuration_script)``; scripts and the
  configuration are bytes (YANG ``binary``; the encoding of their content is the vendor's).
* ``parse_conveyed_information(data, encoding)`` / ``info.encode(encoding)`` for JSON (RFC 7951)
  and XML (RFC 7950 §7); ``info.to_dict()`` / ``conveyed_information_from_dict(obj)``.

CMS (RFC 8572 §3):

* ``sign_conveyed_information(info, owner=..., now=..., encoding=...)``: SignedData with
  eContentType id-ct-sztpConveyedInfoJSON / -XML, signed by the owner certificate (§3.1).
* ``encode_unsigned_conveyed_information(info, encoding)``: a bare ContentInfo of that type,
  for trusted bootstrap servers only (§3.1, §5.1).
* ``verify_conveyed_information(der, owner_certificate=..., now=...)``: signature checked and
  signer required to be exactly the owner certificate; ``read_unsigned_conveyed_information(der)``
  for the trusted-server path (refuses SignedData, so the caller states which path it takes).
* ``encode_certs_only(certs)`` / ``decode_certs_only(der)``: the owner certificate (§3.2) and
  the redirect trust anchors; ``end_entity(certs)`` picks the certificate that issued none of
  the others. The ownership voucher (§3.3) is an RFC 8366 voucher:
  ``voucher.parse_signed_voucher``.

RESTCONF RPCs (RFC 8572 §7, encoded per RFC 8040 §3.6): ``GetBootstrappingDataInput``,
``GetBootstrappingDataOutput``, ``ReportProgressInput`` (with ``ProgressType``, §7.3), each with
``encode(encoding)`` and ``parse(data, encoding)``.

Quirks of published artifacts, read only through named ``Tolerance`` values:
``INLINE_XML_CONFIGURATION`` (RFC 8572's own XML example carries the configuration as XML
elements, not base64) keeps the elements, serialized, as the configuration bytes.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any, ClassVar, Self

from asn1crypto import core
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding as DerEncoding
from cryptography.hazmat.primitives.serialization import pkcs7
from lxml import etree
from yangson import DataModel
from yangson.datatype import BooleanType, EmptyType, IdentityrefType, IntegralType
from yangson.enumerations import ContentType
from yangson.exceptions import RawDataError, ValidationError, YangsonException
from yangson.instance import RootNode
from yangson.instvalue import ObjectValue
from yangson.schemanode import (
    InternalNode,
    LeafListNode,
    ListNode,
    TerminalNode,
)

from zerotouch_plugin._json import bounded_loads
from zerotouch_plugin.artifacts import _cms, certs, cms
from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.artifacts.signer import SigningIdentity
from zerotouch_plugin.artifacts.xmlsafe import parse_untrusted
from zerotouch_plugin.artifacts.yang import prepared, pyang_module_dirs, yang_dir
from zerotouch_plugin.errors import (
    ArtifactKindMismatch,
    InvalidInput,
    NotCMS,
    SchemaError,
    UnsupportedMediaType,
    UntrustedSigner,
)

__all__ = [
    "DEFAULT_TOLERANCES",
    "MEDIA_TYPE_JSON",
    "MEDIA_TYPE_XML",
    "NS_BOOTSTRAP_SERVER",
    "NS_CONVEYED_INFO",
    "OID_SZTP_CONVEYED_INFO_JSON",
    "OID_SZTP_CONVEYED_INFO_XML",
    "SHA_256",
    "STRICT",
    "BootImage",
    "BootstrapServer",
    "ConfigurationHandling",
    "ConveyedInformation",
    "Encoding",
    "GetBootstrappingDataInput",
    "GetBootstrappingDataOutput",
    "ImageVerification",
    "OnboardingInformation",
    "ProgressType",
    "RedirectInformation",
    "ReportProgressInput",
    "ReportingLevel",
    "SshHostKey",
    "Tolerance",
    "conveyed_information_from_dict",
    "decode_certs_only",
    "encode_certs_only",
    "encode_unsigned_conveyed_information",
    "end_entity",
    "parse_conveyed_information",
    "read_unsigned_conveyed_information",
    "sign_conveyed_information",
    "verify_conveyed_information",
]

OID_SZTP_CONVEYED_INFO_XML = "1.2.840.113549.1.9.16.1.42"  # RFC 8572 §10.3
OID_SZTP_CONVEYED_INFO_JSON = cms.OID_SZTP_CONVEYED_INFO  # RFC 8572 §10.3
NS_CONVEYED_INFO = "urn:ietf:params:xml:ns:yang:ietf-sztp-conveyed-info"
NS_BOOTSTRAP_SERVER = "urn:ietf:params:xml:ns:yang:ietf-sztp-bootstrap-server"
MEDIA_TYPE_JSON = "application/yang-data+json"  # RFC 8040 §11.3.2
MEDIA_TYPE_XML = "application/yang-data+xml"  # RFC 8040 §11.3.1
CONVEYED_MODULE = "ietf-sztp-conveyed-info"
SERVER_MODULE = "ietf-sztp-bootstrap-server"
SHA_256 = f"{CONVEYED_MODULE}:sha-256"
_VALIDATION_MODULE = "zerotouch-sztp-validation"
_MODULE_BY_NS = {
    NS_CONVEYED_INFO: CONVEYED_MODULE,
    NS_BOOTSTRAP_SERVER: SERVER_MODULE,
}
_NS_BY_MODULE = {module: ns for ns, module in _MODULE_BY_NS.items()}
_PREFIX_BY_MODULE = {CONVEYED_MODULE: "sztp-info", SERVER_MODULE: "sztp-svr"}
MAX_ARTIFACT_BYTES = 16 * 1024 * 1024  # conveyed information with scripts and configuration


class Encoding(StrEnum):
    """How conveyed information and RPC payloads are encoded (RFC 8572 §3.1, RFC 8040 §3.6)."""

    JSON = "json"
    XML = "xml"

    @property
    def content_type_oid(self) -> str:
        """The CMS content type of conveyed information in this encoding (RFC 8572 §3.1)."""
        return _OID_BY_ENCODING[self]

    @property
    def media_type(self) -> str:
        return MEDIA_TYPE_JSON if self is Encoding.JSON else MEDIA_TYPE_XML

    @classmethod
    def of_media_type(cls, media_type: str) -> Encoding:
        """RESTCONF media type -> encoding; UnsupportedMediaType for anything else."""
        base = media_type.split(";", 1)[0].strip().lower()
        found = _ENCODING_BY_MEDIA.get(base)
        if found is None:
            raise UnsupportedMediaType(
                f"media type {base!r} is not one of {MEDIA_TYPE_JSON}, {MEDIA_TYPE_XML}"
            )
        return found


_OID_BY_ENCODING = {
    Encoding.JSON: OID_SZTP_CONVEYED_INFO_JSON,
    Encoding.XML: OID_SZTP_CONVEYED_INFO_XML,
}
_ENCODING_BY_OID = {oid: enc for enc, oid in _OID_BY_ENCODING.items()}
# RFC 8040 §11.3 media types; RFC 8572's own examples write ``yang.data``.
_ENCODING_BY_MEDIA = {
    MEDIA_TYPE_JSON: Encoding.JSON,
    MEDIA_TYPE_XML: Encoding.XML,
    "application/yang.data+json": Encoding.JSON,
    "application/yang.data+xml": Encoding.XML,
    "application/json": Encoding.JSON,
    "application/xml": Encoding.XML,
}


class Tolerance(Enum):
    """A deviation seen in published SZTP artifacts, accepted on purpose when parsing."""

    # RFC 8572 §6.4's XML onboarding example puts the configuration as XML elements inside
    # <configuration>, although the leaf is ``binary``; kept as the serialized elements.
    INLINE_XML_CONFIGURATION = "inline-xml-configuration"


DEFAULT_TOLERANCES: frozenset[Tolerance] = frozenset(Tolerance)
STRICT: frozenset[Tolerance] = frozenset()


class ConfigurationHandling(StrEnum):
    """RFC 8572 §6.3 leaf ``configuration-handling``."""

    MERGE = "merge"
    REPLACE = "replace"


class ReportingLevel(StrEnum):
    """RFC 8572 §7.2 output leaf ``reporting-level``."""

    MINIMAL = "minimal"
    VERBOSE = "verbose"


class ProgressType(StrEnum):
    """RFC 8572 §7.3 ``progress-type``: what the device reports at each step."""

    BOOTSTRAP_INITIATED = "bootstrap-initiated"
    PARSING_INITIATED = "parsing-initiated"
    PARSING_WARNING = "parsing-warning"
    PARSING_ERROR = "parsing-error"
    PARSING_COMPLETE = "parsing-complete"
    BOOT_IMAGE_INITIATED = "boot-image-initiated"
    BOOT_IMAGE_WARNING = "boot-image-warning"
    BOOT_IMAGE_ERROR = "boot-image-error"
    BOOT_IMAGE_MISMATCH = "boot-image-mismatch"
    BOOT_IMAGE_INSTALLED_REBOOTING = "boot-image-installed-rebooting"
    BOOT_IMAGE_COMPLETE = "boot-image-complete"
    PRE_SCRIPT_INITIATED = "pre-script-initiated"
    PRE_SCRIPT_WARNING = "pre-script-warning"
    PRE_SCRIPT_ERROR = "pre-script-error"
    PRE_SCRIPT_COMPLETE = "pre-script-complete"
    CONFIG_INITIATED = "config-initiated"
    CONFIG_WARNING = "config-warning"
    CONFIG_ERROR = "config-error"
    CONFIG_COMPLETE = "config-complete"
    POST_SCRIPT_INITIATED = "post-script-initiated"
    POST_SCRIPT_WARNING = "post-script-warning"
    POST_SCRIPT_ERROR = "post-script-error"
    POST_SCRIPT_COMPLETE = "post-script-complete"
    BOOTSTRAP_WARNING = "bootstrap-warning"
    BOOTSTRAP_ERROR = "bootstrap-error"
    BOOTSTRAP_COMPLETE = "bootstrap-complete"
    INFORMATIONAL = "informational"


# ---------------------------------------------------------------------------------------------
# the YANG model

# (module, revision, namespace, conformance, features) of every module the model needs.
_MODULES: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    ("ietf-yang-types", "2013-07-15", "urn:ietf:params:xml:ns:yang:ietf-yang-types", "import", ()),
    ("ietf-inet-types", "2013-07-15", "urn:ietf:params:xml:ns:yang:ietf-inet-types", "import", ()),
    ("ietf-restconf", "2017-01-26", "urn:ietf:params:xml:ns:yang:ietf-restconf", "import", ()),
    # implemented, so that its identities (sha-256) take part in identityref checks
    (CONVEYED_MODULE, "2019-04-30", NS_CONVEYED_INFO, "implement", ()),
    (
        SERVER_MODULE,
        "2019-04-30",
        NS_BOOTSTRAP_SERVER,
        "implement",
        ("redirect-server", "onboarding-server"),
    ),
    (
        _VALIDATION_MODULE,
        "2026-12-05",
        "urn:zerotouch:params:xml:ns:yang:zerotouch-sztp-validation",
        "implement",
        (),
    ),
)


@functools.cache
def _model() -> DataModel:
    """Built once: loading and compiling the modules is the costly part."""
    library = {
        "ietf-yang-library:modules-state": {
            "module-set-id": "zerotouch-sztp",
            "module": [
                {
                    "name": n,
                    "revision": r,
                    "namespace": ns,
                    "conformance-type": c,
                    **({"feature": list(f)} if f else {}),
                }
                for n, r, ns, c, f in _MODULES
            ],
        }
    }
    search = [str(yang_dir()), *(str(d) for d in pyang_module_dirs())]
    return prepared(DataModel(json.dumps(library), search))


def _schema_node(path: str) -> InternalNode:
    node = _model().get_schema_node(path)
    if not isinstance(node, InternalNode):
        raise LookupError(f"schema node {path} missing from the SZTP model")
    return node


# Set while an object is built from data validated just before, so that its constructor
# does not validate the same content a second time (parsing is on every request's path).
_VALIDATED: ContextVar[bool] = ContextVar("sztp_validated", default=False)


@contextmanager
def _already_validated() -> Iterator[None]:
    token = _VALIDATED.set(True)
    try:
        yield
    finally:
        _VALIDATED.reset(token)


def _check(node: InternalNode, inner: Mapping[str, Any], where: str) -> None:
    """Validate ``inner`` (unqualified RFC 7951 members) as the content of ``node``."""
    if _VALIDATED.get():
        return
    _simple_names(inner, where)
    try:
        value = node.from_raw(dict(inner))
        local = ObjectValue({k.split(":", 1)[-1]: v for k, v in value.items()}, value.timestamp)
        RootNode(local, node, _model().schema_data, value.timestamp).validate(ctype=ContentType.all)
    except RawDataError as exc:
        raise SchemaError(f"{type(exc).__name__}: {exc}", path=where + exc.path) from None
    except ValidationError as exc:
        route = str(exc.instance.instance_route()).rstrip("/")
        rule = f"{exc.tag}: {exc.message}" if exc.message else exc.tag
        raise SchemaError(f"schema violation: {rule}", path=where + route) from None
    except YangsonException as exc:
        raise SchemaError(f"schema violation: {exc}", path=where) from None


def _simple_names(raw: Any, where: str) -> None:
    """Refuse module-qualified members below the top level: the objects are built by simple
    name, so a qualified member would be validated and then ignored."""
    if isinstance(raw, Mapping):
        for name, value in raw.items():
            path = f"{where}/{name}"
            if ":" in name:
                # RFC 7951 §4: a member of its parent's module uses the simple name; these
                # modules have no augmentations, so no other module's member is allowed here.
                simple = name.split(":", 1)[1]
                raise SchemaError(
                    f"member {name!r} must be written {simple!r}, without a module name",
                    path=path,
                )
            _simple_names(value, path)
    elif isinstance(raw, list):
        for index, item in enumerate(raw):
            _simple_names(item, f"{where}[{index}]")


# ---------------------------------------------------------------------------------------------
# binary leaves and certificates


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _unb64(text: Any, path: str) -> bytes:
    if not isinstance(text, str):
        raise SchemaError("wrong type: expected a base64 string", path=path)
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise SchemaError("invalid binary value: not base64", path=path) from None


def encode_certs_only(certificates: Sequence[x509.Certificate]) -> bytes:
    """DER certs-only CMS SignedData (RFC 8572 §3.2 owner certificate, §6.3 trust-anchor)."""
    if not certificates:
        raise ValueError("a certs-only CMS needs at least one certificate")
    return pkcs7.serialize_certificates(list(certificates), DerEncoding.DER)


def decode_certs_only(der: bytes, *, what: str = "certs-only CMS") -> tuple[x509.Certificate, ...]:
    """Certificates of a DER certs-only CMS; NotCMS naming ``what`` when it is not one."""
    try:
        found = pkcs7.load_der_pkcs7_certificates(der)
        for cert in found:
            certs.read_eagerly(cert)
    except (ValueError, UnsupportedAlgorithm, x509.InvalidVersion, *certs.MALFORMED) as exc:
        raise NotCMS(f"{what} is not a certs-only CMS: {exc}") from None
    if not found:
        raise NotCMS(f"{what} holds no certificates")
    return tuple(found)


def end_entity(certificates: Sequence[x509.Certificate]) -> x509.Certificate:
    """The one certificate of a chain that issued none of the others (the owner certificate)."""
    issuers = {c.issuer for c in certificates}
    leaves = [c for c in certificates if c.subject not in issuers or c.subject == c.issuer]
    leaves = [c for c in leaves if c.subject not in issuers] or leaves
    if len(leaves) != 1:
        raise InvalidInput(f"expected one end-entity certificate, found {len(leaves)}")
    return leaves[0]


# ---------------------------------------------------------------------------------------------
# conveyed information


def _optional(obj: dict[str, Any], name: str, value: Any) -> None:
    if value is not None:
        obj[name] = value


@dataclass(frozen=True)
class BootstrapServer:
    """One entry of redirect information: where to go next and how to trust it (§6.3)."""

    address: str
    port: int = 443
    trust_anchor: bytes | None = None

    def trust_anchor_certificates(self) -> tuple[x509.Certificate, ...]:
        """The certificates of ``trust-anchor`` (empty when none was conveyed)."""
        if self.trust_anchor is None:
            return ()
        return decode_certs_only(self.trust_anchor, what="trust-anchor")

    def to_dict(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"address": self.address, "port": self.port}
        if self.trust_anchor is not None:
            obj["trust-anchor"] = _b64(self.trust_anchor)
        return obj

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], path: str) -> BootstrapServer:
        anchor = obj.get("trust-anchor")
        return cls(
            address=obj["address"],
            port=int(obj.get("port", 443)),
            trust_anchor=None if anchor is None else _unb64(anchor, f"{path}/trust-anchor"),
        )


@dataclass(frozen=True)
class ImageVerification:
    """A hash the boot image must match (§6.3 ``image-verification``)."""

    hash_value: bytes
    hash_algorithm: str = SHA_256

    def to_dict(self) -> dict[str, Any]:
        return {"hash-algorithm": self.hash_algorithm, "hash-value": self.hash_value.hex(":")}


@dataclass(frozen=True)
class BootImage:
    """The boot image the device should run (§6.3 ``boot-image``)."""

    os_name: str | None = None
    os_version: str | None = None
    download_uris: tuple[str, ...] = ()
    image_verifications: tuple[ImageVerification, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        _optional(obj, "os-name", self.os_name)
        _optional(obj, "os-version", self.os_version)
        if self.download_uris:
            obj["download-uri"] = list(self.download_uris)
        if self.image_verifications:
            obj["image-verification"] = [v.to_dict() for v in self.image_verifications]
        return obj

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> BootImage:
        return cls(
            os_name=obj.get("os-name"),
            os_version=obj.get("os-version"),
            download_uris=tuple(obj.get("download-uri", ())),
            image_verifications=tuple(
                ImageVerification(
                    hash_value=bytes.fromhex(v["hash-value"].replace(":", "")),
                    hash_algorithm=v["hash-algorithm"],
                )
                for v in obj.get("image-verification", ())
            ),
        )


class _Conveyed:
    """Validation, JSON and XML shared by both kinds of conveyed information."""

    member: ClassVar[str]

    def __post_init__(self) -> None:
        _validate_conveyed(self.member, self._inner())

    def _inner(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """RFC 7951 JSON object: ``{"ietf-sztp-conveyed-info:<member>": {...}}``."""
        return {f"{CONVEYED_MODULE}:{self.member}": self._inner()}

    def encode(self, encoding: Encoding = Encoding.JSON) -> bytes:
        if encoding is Encoding.JSON:
            return json.dumps(self.to_dict(), indent=2).encode()
        node = _schema_node(f"/{_VALIDATION_MODULE}:{self.member}")
        return _xml_document(self.member, NS_CONVEYED_INFO, node, self._inner())


def _validate_conveyed(member: str, inner: Mapping[str, Any]) -> None:
    _check(
        _schema_node(f"/{_VALIDATION_MODULE}:{member}"),
        inner,
        f"/{CONVEYED_MODULE}:{member}",
    )


@dataclass(frozen=True)
class RedirectInformation(_Conveyed):
    """Redirect information (§2.1, §6.3): the bootstrap servers the device tries next."""

    member: ClassVar[str] = "redirect-information"
    bootstrap_servers: tuple[BootstrapServer, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        for server in self.bootstrap_servers:
            server.trust_anchor_certificates()

    def _inner(self) -> dict[str, Any]:
        return {"bootstrap-server": [s.to_dict() for s in self.bootstrap_servers]}


@dataclass(frozen=True)
class OnboardingInformation(_Conveyed):
    """Onboarding information (§2.2, §6.3): image, scripts and configuration for the device."""

    member: ClassVar[str] = "onboarding-information"
    boot_image: BootImage | None = None
    configuration_handling: ConfigurationHandling | None = None
    pre_configuration_script: bytes | None = None
    configuration: bytes | None = None
    post_configuration_script: bytes | None = None

    def _inner(self) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        if self.boot_image is not None:
            obj["boot-image"] = self.boot_image.to_dict()
        if self.configuration_handling is not None:
            obj["configuration-handling"] = str(self.configuration_handling)
        for name, value in (
            ("pre-configuration-script", self.pre_configuration_script),
            ("configuration", self.configuration),
            ("post-configuration-script", self.post_configuration_script),
        ):
            if value is not None:
                obj[name] = _b64(value)
        return obj


ConveyedInformation = RedirectInformation | OnboardingInformation


def _redirect_from(inner: Mapping[str, Any], path: str) -> RedirectInformation:
    servers = inner.get("bootstrap-server", [])
    return RedirectInformation(
        bootstrap_servers=tuple(
            BootstrapServer.from_dict(s, f"{path}/bootstrap-server[{i}]")
            for i, s in enumerate(servers)
        )
    )


def _onboarding_from(inner: Mapping[str, Any], path: str) -> OnboardingInformation:
    def binary(name: str) -> bytes | None:
        value = inner.get(name)
        return None if value is None else _unb64(value, f"{path}/{name}")

    handling = inner.get("configuration-handling")
    image = inner.get("boot-image")
    return OnboardingInformation(
        boot_image=None if image is None else BootImage.from_dict(image),
        configuration_handling=None if handling is None else ConfigurationHandling(handling),
        pre_configuration_script=binary("pre-configuration-script"),
        configuration=binary("configuration"),
        post_configuration_script=binary("post-configuration-script"),
    )


_BUILDERS: Mapping[str, Callable[[Mapping[str, Any], str], ConveyedInformation]] = {
    RedirectInformation.member: _redirect_from,
    OnboardingInformation.member: _onboarding_from,
}


def conveyed_information_from_dict(obj: Any) -> ConveyedInformation:
    """RFC 7951 object -> validated conveyed information (SchemaError naming the node)."""
    if not isinstance(obj, Mapping) or len(obj) != 1:
        raise SchemaError(
            "conveyed information must be a JSON object with exactly one member", path="/"
        )
    (member,) = obj
    module, _, name = str(member).partition(":")
    if module != CONVEYED_MODULE or name not in _BUILDERS:
        raise SchemaError(
            f"unknown top-level member {member!r}; expected "
            f"{CONVEYED_MODULE}:redirect-information or :onboarding-information",
            path=f"/{member}",
        )
    inner = obj[member]
    path = f"/{member}"
    if not isinstance(inner, Mapping):
        raise SchemaError("wrong type: expected a JSON object", path=path)
    _validate_conveyed(name, inner)  # before building: a bad value is named by its path
    with _already_validated():
        return _BUILDERS[name](inner, path)


def parse_conveyed_information(
    data: bytes,
    encoding: Encoding,
    *,
    tolerances: frozenset[Tolerance] = DEFAULT_TOLERANCES,
) -> ConveyedInformation:
    """JSON or XML conveyed information (the content of its CMS) -> validated object."""
    if encoding is Encoding.JSON:
        return conveyed_information_from_dict(_load_json(data, "conveyed information"))
    root = _parse_xml(data, "conveyed information")
    namespace, name = _qname(root)
    if namespace != NS_CONVEYED_INFO or name not in _BUILDERS:
        raise SchemaError(
            f"root element {{{namespace}}}{name} is not conveyed information "
            f"({{{NS_CONVEYED_INFO}}}redirect-information or onboarding-information)",
            path=f"/{name}",
        )
    if name == OnboardingInformation.member:
        _inline_configuration(root, tolerances)
    node = _schema_node(f"/{_VALIDATION_MODULE}:{name}")
    inner = _xml_to_raw(node, root, f"/{CONVEYED_MODULE}:{name}")
    return conveyed_information_from_dict({f"{CONVEYED_MODULE}:{name}": inner})


def _inline_configuration(root: Any, tolerances: frozenset[Tolerance]) -> None:
    """Tolerance.INLINE_XML_CONFIGURATION: <configuration> holding XML elements."""
    for element in root.findall(f"{{{NS_CONVEYED_INFO}}}configuration"):
        children = list(element)
        if not children:
            continue
        if Tolerance.INLINE_XML_CONFIGURATION not in tolerances:
            raise SchemaError(
                "configuration holds XML elements; the leaf is binary (base64)",
                path=f"/{CONVEYED_MODULE}:onboarding-information/configuration",
            )
        text = b"".join(etree.tostring(child) for child in children)
        for child in children:
            element.remove(child)
        element.text = _b64(text)


# ---------------------------------------------------------------------------------------------
# CMS forms (RFC 8572 §3)


class _UnsignedContentInfo(core.Sequence):  # type: ignore[misc]
    """ContentInfo whose content is the bare conveyed information (RFC 5652 §3)."""

    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("content_type", core.ObjectIdentifier),
        ("content", core.OctetString, {"explicit": 0}),
    ]


def encode_unsigned_conveyed_information(
    info: ConveyedInformation, encoding: Encoding = Encoding.JSON
) -> bytes:
    """DER ContentInfo of id-ct-sztpConveyedInfo{JSON,XML}, unsigned: only for a bootstrap
    server the device already trusts (RFC 8572 §3.1, §5.1)."""
    content = info.encode(encoding)
    value = _UnsignedContentInfo(
        {"content_type": encoding.content_type_oid, "content": core.OctetString(content)}
    )
    return bytes(value.dump())


def read_unsigned_conveyed_information(
    der: bytes, *, tolerances: frozenset[Tolerance] = DEFAULT_TOLERANCES
) -> ConveyedInformation:
    """The trusted-server path (RFC 8572 §5.1): a bare ContentInfo. SignedData is refused
    here, so that a caller verifying signatures never takes this path by accident."""
    oid = _cms.check_content_info(der)
    encoding = _ENCODING_BY_OID.get(oid)
    if encoding is None:
        raise ArtifactKindMismatch(
            f"ContentInfo of contentType {oid} is not unsigned conveyed information "
            f"({OID_SZTP_CONVEYED_INFO_JSON} or {OID_SZTP_CONVEYED_INFO_XML})"
        )
    try:
        parsed = _UnsignedContentInfo.load(der, strict=True)
        content = bytes(parsed["content"].native)
    except (ValueError, TypeError) as exc:
        raise NotCMS(f"unsigned conveyed information is malformed: {exc}") from None
    return parse_conveyed_information(content, encoding, tolerances=tolerances)


def sign_conveyed_information(
    info: ConveyedInformation,
    *,
    owner: Identity | SigningIdentity,
    now: datetime,
    encoding: Encoding = Encoding.JSON,
) -> bytes:
    """DER SignedData over the conveyed information, signed by the owner certificate
    (RFC 8572 §3.1); the owner's chain is carried separately as owner-certificate (§3.2)."""
    return cms.sign(
        info.encode(encoding),
        signer=owner,
        now=now,
        content_type=encoding.content_type_oid,
        include_chain=False,
    )


def verify_conveyed_information(
    der: bytes,
    *,
    owner_certificate: x509.Certificate,
    now: datetime | None,
    tolerances: frozenset[Tolerance] = DEFAULT_TOLERANCES,
) -> ConveyedInformation:
    """Signed conveyed information whose signer is exactly ``owner_certificate`` (RFC 8572
    §3.1, §5.4); the caller has already chained the owner certificate to the voucher's
    pinned-domain-cert. UntrustedSigner when another key signed it."""
    signed = cms.verify(
        der,
        trust_anchors=None,
        now=now,
        content_types=tuple(_ENCODING_BY_OID),
        intermediates=(owner_certificate,),
    )
    if signed.signer != owner_certificate:
        raise UntrustedSigner(
            f"conveyed information is signed by {signed.signer.subject.rfc4514_string()}, "
            f"not by the owner certificate {owner_certificate.subject.rfc4514_string()}"
        )
    encoding = _ENCODING_BY_OID[signed.content_type]
    return parse_conveyed_information(signed.content, encoding, tolerances=tolerances)


# ---------------------------------------------------------------------------------------------
# RESTCONF RPC payloads (RFC 8572 §7, RFC 8040 §3.6)


class _Payload:
    """An RPC input or output: RFC 7951 JSON / RFC 7950 XML, validated against the YANG."""

    rpc: ClassVar[str]
    part: ClassVar[str]  # "input" or "output"

    def __post_init__(self) -> None:
        _check(self._node(), self._inner(), f"/{SERVER_MODULE}:{self.part}")

    @classmethod
    def _node(cls) -> InternalNode:
        return _schema_node(f"/{SERVER_MODULE}:{cls.rpc}/{cls.part}")

    def _inner(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def _from_inner(cls, inner: Mapping[str, Any]) -> Self:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {f"{SERVER_MODULE}:{self.part}": self._inner()}

    def encode(self, encoding: Encoding = Encoding.JSON) -> bytes:
        if encoding is Encoding.JSON:
            return json.dumps(self.to_dict()).encode()
        return _xml_document(self.part, NS_BOOTSTRAP_SERVER, self._node(), self._inner())

    @classmethod
    def parse(cls, data: bytes, encoding: Encoding) -> Self:
        """A request or response body -> validated payload (an empty body is empty input)."""
        where = f"/{SERVER_MODULE}:{cls.part}"
        if not data.strip():
            inner: Mapping[str, Any] = {}
        elif encoding is Encoding.JSON:
            obj = _load_json(data, f"{cls.rpc} {cls.part}")
            if not isinstance(obj, Mapping) or list(obj) != [f"{SERVER_MODULE}:{cls.part}"]:
                raise SchemaError(
                    f"the body must be one object member {SERVER_MODULE}:{cls.part}", path="/"
                )
            inner = obj[f"{SERVER_MODULE}:{cls.part}"]
            if not isinstance(inner, Mapping):
                raise SchemaError("wrong type: expected a JSON object", path=where)
        else:
            root = _parse_xml(data, f"{cls.rpc} {cls.part}")
            if _qname(root) != (NS_BOOTSTRAP_SERVER, cls.part):
                raise SchemaError(
                    f"root element must be {{{NS_BOOTSTRAP_SERVER}}}{cls.part}",
                    path=f"/{_qname(root)[1]}",
                )
            inner = _xml_to_raw(cls._node(), root, where)
        _check(cls._node(), inner, where)
        with _already_validated():
            return cls._from_inner(inner)


@dataclass(frozen=True)
class GetBootstrappingDataInput(_Payload):
    """RFC 8572 §7.1 input: what the device says about itself."""

    rpc: ClassVar[str] = "get-bootstrapping-data"
    part: ClassVar[str] = "input"
    signed_data_preferred: bool = False
    hw_model: str | None = None
    os_name: str | None = None
    os_version: str | None = None
    nonce: bytes | None = None

    def _inner(self) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        if self.signed_data_preferred:
            obj["signed-data-preferred"] = [None]
        _optional(obj, "hw-model", self.hw_model)
        _optional(obj, "os-name", self.os_name)
        _optional(obj, "os-version", self.os_version)
        if self.nonce is not None:
            obj["nonce"] = _b64(self.nonce)
        return obj

    @classmethod
    def _from_inner(cls, inner: Mapping[str, Any]) -> Self:
        nonce = inner.get("nonce")
        return cls(
            signed_data_preferred="signed-data-preferred" in inner,
            hw_model=inner.get("hw-model"),
            os_name=inner.get("os-name"),
            os_version=inner.get("os-version"),
            nonce=None if nonce is None else _unb64(nonce, "/nonce"),
        )


@dataclass(frozen=True)
class GetBootstrappingDataOutput(_Payload):
    """RFC 8572 §7.1 output: conveyed information (CMS DER) and, when signed, the owner
    certificate and ownership voucher that let an untrusting device verify it."""

    rpc: ClassVar[str] = "get-bootstrapping-data"
    part: ClassVar[str] = "output"
    conveyed_information: bytes
    owner_certificate: bytes | None = None
    ownership_voucher: bytes | None = None
    reporting_level: ReportingLevel | None = None

    def _inner(self) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        if self.reporting_level is not None:
            obj["reporting-level"] = str(self.reporting_level)
        obj["conveyed-information"] = _b64(self.conveyed_information)
        for name, value in (
            ("owner-certificate", self.owner_certificate),
            ("ownership-voucher", self.ownership_voucher),
        ):
            if value is not None:
                obj[name] = _b64(value)
        return obj

    @classmethod
    def _from_inner(cls, inner: Mapping[str, Any]) -> Self:
        def binary(name: str) -> bytes | None:
            value = inner.get(name)
            return None if value is None else _unb64(value, f"/{name}")

        level = inner.get("reporting-level")
        conveyed = binary("conveyed-information")
        if conveyed is None:
            raise SchemaError(
                "missing mandatory leaf 'conveyed-information'",
                path=f"/{SERVER_MODULE}:output/conveyed-information",
            )
        return cls(
            conveyed_information=conveyed,
            owner_certificate=binary("owner-certificate"),
            ownership_voucher=binary("ownership-voucher"),
            reporting_level=None if level is None else ReportingLevel(level),
        )


@dataclass(frozen=True)
class SshHostKey:
    """RFC 8572 §7.3 ``ssh-host-key``: a host key an NMS may trust the device by."""

    algorithm: str
    key_data: bytes


@dataclass(frozen=True)
class ReportProgressInput(_Payload):
    """RFC 8572 §7.3 input: one progress report; host keys and trust anchors only with
    bootstrap-complete (the YANG ``when`` rules)."""

    rpc: ClassVar[str] = "report-progress"
    part: ClassVar[str] = "input"
    progress_type: ProgressType
    message: str | None = None
    ssh_host_keys: tuple[SshHostKey, ...] = ()
    trust_anchor_certs: tuple[bytes, ...] = field(default=())

    def _inner(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"progress-type": str(self.progress_type)}
        _optional(obj, "message", self.message)
        if self.ssh_host_keys:
            obj["ssh-host-keys"] = {
                "ssh-host-key": [
                    {"algorithm": k.algorithm, "key-data": _b64(k.key_data)}
                    for k in self.ssh_host_keys
                ]
            }
        if self.trust_anchor_certs:
            obj["trust-anchor-certs"] = {
                "trust-anchor-cert": [_b64(c) for c in self.trust_anchor_certs]
            }
        return obj

    @classmethod
    def _from_inner(cls, inner: Mapping[str, Any]) -> Self:
        if "progress-type" not in inner:
            raise SchemaError(
                "missing mandatory leaf 'progress-type'",
                path=f"/{SERVER_MODULE}:input/progress-type",
            )
        keys = inner.get("ssh-host-keys", {}).get("ssh-host-key", [])
        anchors = inner.get("trust-anchor-certs", {}).get("trust-anchor-cert", [])
        return cls(
            progress_type=ProgressType(inner["progress-type"]),
            message=inner.get("message"),
            ssh_host_keys=tuple(
                SshHostKey(k["algorithm"], _unb64(k["key-data"], "/key-data")) for k in keys
            ),
            trust_anchor_certs=tuple(_unb64(a, "/trust-anchor-cert") for a in anchors),
        )


# ---------------------------------------------------------------------------------------------
# JSON and XML


def _load_json(data: bytes, what: str) -> Any:
    if len(data) > MAX_ARTIFACT_BYTES:
        raise InvalidInput(f"{what} is larger than {MAX_ARTIFACT_BYTES} bytes")
    try:
        return bounded_loads(data, object_pairs_hook=_unique_members)
    except ValueError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from None


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for name, value in pairs:
        if name in obj:
            raise ValueError(f"duplicate member {name!r}")
        obj[name] = value
    return obj


def _parse_xml(data: bytes, what: str) -> Any:
    if len(data) > MAX_ARTIFACT_BYTES:
        raise InvalidInput(f"{what} is larger than {MAX_ARTIFACT_BYTES} bytes")
    return parse_untrusted(data, what)


def _qname(element: Any) -> tuple[str, str]:
    qname = etree.QName(element)
    return qname.namespace or "", qname.localname


def _xml_to_raw(node: InternalNode, element: Any, path: str) -> dict[str, Any]:
    """XML element content -> RFC 7951 members of ``node`` (unqualified names). Every element
    is in its root's namespace (one module; RFC 7950 §7.5.8): ``<os-name xmlns="urn:x">`` is
    not the os-name leaf."""
    obj: dict[str, Any] = {}
    namespace = _qname(element)[0]
    for child in element:
        if not isinstance(child.tag, str):
            continue
        child_namespace, name = _qname(child)
        sub = node.get_child(name, node.ns)
        where = f"{path}/{name}"
        if sub is None:
            raise SchemaError(f"unknown element {name!r}", path=where)
        if child_namespace != namespace:
            raise SchemaError(
                f"element {name!r} is in namespace {child_namespace or '(none)'!r}, not in "
                f"{namespace!r}",
                path=where,
            )
        if isinstance(sub, ListNode):
            assert isinstance(sub, InternalNode)
            obj.setdefault(name, []).append(_xml_to_raw(sub, child, where))
        elif isinstance(sub, LeafListNode):
            obj.setdefault(name, []).append(_leaf_from_xml(sub, child, where))
        elif isinstance(sub, InternalNode):
            if name in obj:
                raise SchemaError(f"element {name!r} appears twice", path=where)
            obj[name] = _xml_to_raw(sub, child, where)
        elif isinstance(sub, TerminalNode):
            if name in obj:
                raise SchemaError(f"element {name!r} appears twice", path=where)
            obj[name] = _leaf_from_xml(sub, child, where)
    return obj


def _leaf_from_xml(node: TerminalNode, element: Any, path: str) -> Any:
    if len(element):
        raise SchemaError("a leaf element holds child elements", path=path)
    text = (element.text or "").strip()
    kind = node.type
    if isinstance(kind, EmptyType):
        return [None]
    if isinstance(kind, BooleanType):
        return {"true": True, "false": False}.get(text, text)
    if isinstance(kind, IntegralType):
        try:
            return int(text)
        except ValueError:
            raise SchemaError(f"invalid {kind} value {text!r}", path=path) from None
    if isinstance(kind, IdentityrefType):
        prefix, _, local = text.rpartition(":")
        namespace = element.nsmap.get(prefix or None)
        module = _MODULE_BY_NS.get(namespace or "")
        if module is None:
            raise SchemaError(f"identity {text!r} of an unknown module", path=path)
        return f"{module}:{local}"
    return text


def _xml_document(name: str, namespace: str, node: InternalNode, inner: Mapping[str, Any]) -> bytes:
    root = etree.Element(f"{{{namespace}}}{name}", nsmap={None: namespace})  # type: ignore[dict-item]
    _raw_to_xml(node, inner, root, namespace)
    return bytes(etree.tostring(root, xml_declaration=False, encoding="utf-8"))


def _raw_to_xml(node: InternalNode, obj: Mapping[str, Any], parent: Any, namespace: str) -> None:
    for name, value in obj.items():
        sub = node.get_child(name, node.ns)
        tag = f"{{{namespace}}}{name}"
        if isinstance(sub, ListNode):
            assert isinstance(sub, InternalNode)
            for entry in value:
                _raw_to_xml(sub, entry, etree.SubElement(parent, tag), namespace)
        elif isinstance(sub, LeafListNode):
            for item in value:
                _leaf_to_xml(sub, item, parent, tag)
        elif isinstance(sub, InternalNode):
            _raw_to_xml(sub, value, etree.SubElement(parent, tag), namespace)
        elif isinstance(sub, TerminalNode):
            _leaf_to_xml(sub, value, parent, tag)


def _leaf_to_xml(node: TerminalNode, value: Any, parent: Any, tag: str) -> None:
    kind = node.type
    if isinstance(kind, IdentityrefType):
        module, _, local = str(value).partition(":")
        prefix = _PREFIX_BY_MODULE[module]
        element = etree.SubElement(parent, tag, nsmap={prefix: _NS_BY_MODULE[module]})
        element.text = f"{prefix}:{local}"
        return
    element = etree.SubElement(parent, tag)
    if isinstance(kind, EmptyType):
        return
    if isinstance(kind, BooleanType):
        element.text = "true" if value else "false"
    else:
        element.text = str(value)

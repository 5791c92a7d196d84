"""PKI material of *other implementations*, made with the OpenSSL CLI (never with the
project's certificate code), for conformance tests that play another vendor, another
registrar or the RFC 8995 Appendix C lab.

Everything is written under a folder the caller gives (a pytest ``tmp_path``) as PEM files,
so tests can hand them to curl, openssl and the project's CLI. What is here:

* ``make_vendor_pki`` -- a manufacturer per key type (``p256``, ``p384``, ``rsa2048``,
  ``ed25519``): vendor CA, MASA voucher-signing certificate, MASA TLS certificate, and
  ``VendorPki.idevid()`` for IDevIDs (subject serialNumber, AKI/SKI, SAN hardwareModuleName
  and, when asked, the RFC 8995 §2.3.2 id-pe-masa-url extension as an IA5String).
* ``make_domain_pki`` -- a domain CA, a registrar certificate with EKU id-kp-cmcRA only (as
  RFC 8995 Appendix C's), one with serverAuth + clientAuth + cmcRA, an intermediate CA and a
  registrar certificate under it.
* ``make_appendix_c`` -- the RFC 8995 Appendix C PKI re-issued for today with the published
  keys (tests/vectors/data): same keys, subject names (same DER) and extensions (same DER,
  same order), new serial numbers and validity. The original IDevID (valid to 2999, no AKI)
  chains to the re-issued vendor CA; the original certificates stay reachable.
* ``cms_sign`` -- ``openssl cms -sign`` of a JSON payload (DER, -nodetach, -binary), with
  id-data (OpenSSL's default) or ``-econtent_type`` id-ct-animaJSONVoucher, with or without
  the chain (not for Ed25519 signers: OpenSSL cannot, ``CmsUnsupported``).
* ``NONCE_SAMPLES`` -- nonces in every form the vectors show, each with the file it is from.
* ``idevid_issuer_forms`` -- the three encodings implementations put in idevid-issuer.
* ``write_vendor_folder`` / ``write_registrar_folder`` -- the folders ``zerotouch masa
  serve`` and ``zerotouch registrar serve`` run from (``--dir``), filled with this
  material instead of ``zerotouch vendor init`` / ``registrar init`` output.

Validity: certificates start at ``not_before`` (default: one day before now, so they suit
tests that pin ``now`` to a recent fixed date too) and last ``days`` days; IDevIDs never
expire (notAfter 99991231235959Z, IEEE 802.1AR / RFC 5280 §4.1.2.5).

Example::

    vendor = make_vendor_pki(tmp_path / "vendor", "p384")
    idevid = vendor.idevid("OV-0001", masa_url="https://127.0.0.1:9443")  # a Cert
    V = vendor.write_folder(tmp_path / "V", masa_url="https://127.0.0.1:9443")
    c = make_appendix_c(tmp_path / "c")  # c.vendor.cert, c.masa.key, c.idevid ...
    der = cms_sign({"ietf-voucher:voucher": {...}}, c.masa)  # id-data, as highway signs

Issuing goes through ``openssl ca`` (``-preserveDN``, explicit ``-startdate/-enddate``, a
random 128-bit serial, only the extensions the section lists: OpenSSL's default SKI/AKI are
switched off where a certificate must not have them).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, get_args

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

OPENSSL = shutil.which("openssl") or "openssl"

DATA = Path(__file__).resolve().parents[1] / "vectors" / "data"
APPENDIX_C_DIR = DATA / "examples" / "anima-bootstrap" / "examples"

OID_MASA_URL = "1.3.6.1.5.5.7.1.32"  # RFC 8995 §2.3.2 id-pe-masa-url
OID_HARDWARE_MODULE_NAME = "1.3.6.1.5.5.7.8.4"  # RFC 4108 §5
OID_KP_CMC_RA = "1.3.6.1.5.5.7.3.28"  # RFC 6402 §2.10 id-kp-cmcRA
OID_ANIMA_JSON_VOUCHER = "1.2.840.113549.1.9.16.1.40"  # RFC 8366 §8.3
OID_DATA = "1.2.840.113549.1.7.1"  # RFC 5652 §4, OpenSSL's default eContentType
HARDWARE_TYPE = "1.3.6.1.4.1.65535.1"  # hwType used in the IDevIDs' hardwareModuleName

KeyType = Literal["p256", "p384", "rsa2048", "ed25519"]
KEY_TYPES: tuple[KeyType, ...] = get_args(KeyType)
_GENPKEY: dict[str, tuple[str, ...]] = {
    "p256": ("-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"),
    "p384": ("-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"),
    "rsa2048": ("-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"),
    "ed25519": ("-algorithm", "ED25519"),
}
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
NO_EXPIRY = "99991231235959Z"


class OpenSSLError(RuntimeError):
    """An openssl command failed; the message has the command and its stderr."""


class CmsUnsupported(OpenSSLError):
    """OpenSSL cannot sign this CMS (Ed25519 signers: ``openssl cms -sign`` fails)."""


def openssl(*args: str | os.PathLike[str], cwd: Path | None = None, data: bytes = b"") -> bytes:
    """Run ``openssl ARGS`` and return stdout; OpenSSLError with stderr on failure."""
    command = [OPENSSL, *map(str, args)]
    result = subprocess.run(command, cwd=cwd, input=data, capture_output=True, timeout=60)
    if result.returncode != 0:
        raise OpenSSLError(
            f"{' '.join(command)} -> {result.returncode}: {result.stderr.decode(errors='replace')}"
        )
    return result.stdout


# ---------------------------------------------------------------------------------------------
# certificates


@dataclass(frozen=True)
class Cert:
    """One certificate as files. ``chain``: this certificate then the intermediate CAs above it
    (no root), what a TLS peer or a CMS signer sends; ``full_chain``: the same plus the root;
    ``root``: the self-signed trust anchor it chains to (itself for a root)."""

    name: str
    cert: Path
    key: Path
    chain: Path
    full_chain: Path
    root: Path
    key_type: str

    def x509(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert.read_bytes())

    @property
    def der(self) -> bytes:
        return self.x509().public_bytes(Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.read_bytes()


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%SZ")


def _default_start(not_before: datetime | None) -> datetime:
    return not_before if not_before is not None else datetime.now(UTC) - timedelta(days=1)


_CA_CONFIG = """\
[ca]
default_ca = this
[this]
database = index.txt
new_certs_dir = .
serial = serial
default_md = {md}
policy = anything
unique_subject = no
email_in_dn = no
copy_extensions = none
[anything]
domainComponent = optional
countryName = optional
stateOrProvinceName = optional
localityName = optional
organizationName = optional
organizationalUnitName = optional
commonName = optional
serialNumber = optional
[ext]
{extensions}
"""


class _Workshop:
    """A folder where keys, requests and certificates are made with the OpenSSL CLI."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.work = folder / ".openssl"
        self.work.mkdir(parents=True, exist_ok=True)

    def key(self, name: str, key_type: str) -> Path:
        if key_type not in _GENPKEY:
            raise ValueError(f"key type {key_type!r} is not one of {', '.join(_GENPKEY)}")
        path = self.folder / f"{name}.key"
        openssl("genpkey", *_GENPKEY[key_type], "-out", path)
        path.chmod(0o600)
        return path

    def request(self, name: str, key: Path, subject: str) -> Path:
        """A CSR for ``subject`` (OpenSSL ``-subj`` syntax, e.g. ``/O=Acme/CN=Acme CA``)."""
        path = self.work / f"{name}.csr"
        openssl("req", "-new", "-key", key, "-subj", subject, "-utf8", "-out", path)
        return path

    def request_from(self, name: str, cert: Path, key: Path) -> Path:
        """A CSR with the subject (same DER) of an existing certificate, signed by ``key``."""
        path = self.work / f"{name}.csr"
        openssl("x509", "-x509toreq", "-in", cert, "-signkey", key, "-out", path)
        return path

    def sign(
        self,
        name: str,
        request: Path,
        *,
        extensions: str,
        issuer: Cert | None,
        issuer_key: Path,
        not_before: datetime,
        not_after: datetime | str,
        md: str = "default",
    ) -> Path:
        """``openssl ca`` over ``request``: self-signed when ``issuer`` is None."""
        path = self.folder / f"{name}.pem"
        (self.work / "index.txt").write_text("")
        (self.work / "serial").write_text(secrets.token_hex(16) + "\n")
        config = self.work / f"{name}.cnf"
        config.write_text(_CA_CONFIG.format(md=md, extensions=extensions))
        end = not_after if isinstance(not_after, str) else _utc(not_after)
        args: list[str | os.PathLike[str]] = [
            "ca", "-batch", "-config", config, "-preserveDN", "-notext",
            "-keyfile", issuer_key, "-in", request, "-out", path, "-extensions", "ext",
            "-startdate", _utc(not_before), "-enddate", end,
        ]  # fmt: skip
        args += ["-selfsign"] if issuer is None else ["-cert", issuer.cert]
        openssl(*args, cwd=self.work)
        return path

    def cert(self, name: str, cert: Path, key: Path, issuer: Cert | None, key_type: str) -> Cert:
        """The ``Cert`` record: chain / full-chain files next to the certificate."""
        root, intermediates = cert, []
        if issuer is not None:
            root = issuer.root
            intermediates = x509.load_pem_x509_certificates(issuer.full_chain.read_bytes())[:-1]
        leaf = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(Encoding.PEM)
        middle = b"".join(c.public_bytes(Encoding.PEM) for c in intermediates)
        chain = self.folder / f"{name}.chain.pem"
        full = self.folder / f"{name}.fullchain.pem"
        chain.write_bytes(leaf + middle)
        full.write_bytes(leaf + middle + (b"" if issuer is None else root.read_bytes()))
        return Cert(name, cert, key, chain, full, root, key_type)


def _san(hosts: Sequence[str]) -> str:
    names = []
    for host in hosts:
        kind = "IP" if re.fullmatch(r"[\d.]+|[0-9a-fA-F:]*:[0-9a-fA-F:.]*", host) else "DNS"
        names.append(f"{kind}:{host}")
    return ", ".join(names)


def _ee_key_usage(key_type: str) -> str:
    # digitalSignature; keyEncipherment too for RSA (TLS key transport, RFC 5280 §4.2.1.3)
    return "digitalSignature, keyEncipherment" if key_type == "rsa2048" else "digitalSignature"


_CA_EXTENSIONS = """\
basicConstraints = critical, CA:TRUE{pathlen}
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always"""


def _ee_extensions(key_type: str, *lines: str) -> str:
    return "\n".join(
        (
            "basicConstraints = critical, CA:FALSE",
            f"keyUsage = critical, {_ee_key_usage(key_type)}",
            "subjectKeyIdentifier = hash",
            "authorityKeyIdentifier = keyid:always",
            *lines,
        )
    )


def _make_root(
    shop: _Workshop, name: str, subject: str, key_type: str, start: datetime, days: int
) -> Cert:
    key = shop.key(name, key_type)
    path = shop.sign(
        name,
        shop.request(name, key, subject),
        extensions=_CA_EXTENSIONS.format(pathlen=""),
        issuer=None,
        issuer_key=key,
        not_before=start,
        not_after=start + timedelta(days=days),
    )
    return shop.cert(name, path, key, None, key_type)


def _make_ee(
    shop: _Workshop,
    name: str,
    subject: str,
    issuer: Cert,
    key_type: str,
    extensions: str,
    start: datetime,
    not_after: datetime | str,
) -> Cert:
    key = shop.key(name, key_type)
    path = shop.sign(
        name,
        shop.request(name, key, subject),
        extensions=extensions,
        issuer=issuer,
        issuer_key=issuer.key,
        not_before=start,
        not_after=not_after,
    )
    return shop.cert(name, path, key, issuer, key_type)


# ---------------------------------------------------------------------------------------------
# another manufacturer


@dataclass(frozen=True)
class VendorPki:
    """Another manufacturer: vendor CA, MASA voucher signer, MASA TLS (server + client for
    127.0.0.1, localhost, ::1), all of ``key_type``; ``idevid()`` issues IDevIDs."""

    folder: Path
    name: str
    key_type: str
    ca: Cert
    masa: Cert
    masa_tls: Cert
    not_before: datetime

    def idevid(
        self,
        serial: str,
        *,
        masa_url: str | None = None,
        key_type: str | None = None,
        hardware_module_name: bool = True,
        aki: bool = True,
    ) -> Cert:
        """An IDevID: subject serialNumber=``serial`` (RFC 8995 §2.3.1), SKI, AKI (unless
        ``aki`` is False: then no idevid-issuer can be computed), SAN otherName
        hardwareModuleName (RFC 4108), id-pe-masa-url = ``masa_url`` as an IA5String when
        given (RFC 8995 §2.3.2; write it as the manufacturer would: "https://host:port" or,
        like Appendix C, "host:port"). Written under ``folder/idevid-<serial>*``.

        The project's registrar needs the MASA URL (from this extension or ``masa_url`` in
        registrar.toml, RFC 8995 §2.3.2); its MASA does not read it. ``zerotouch vendor
        idevid`` writes it as an IA5String with the full https:// URL, plus the
        hardwareModuleName; the project's code identifies the device by serialNumber."""
        kind = key_type or self.key_type
        if "/" in serial or not serial.isprintable():
            raise ValueError(f"serial {serial!r} cannot be a file name")
        lines = []
        if not aki:
            lines.append("authorityKeyIdentifier = none")
        if masa_url is not None:
            if not masa_url.isascii():
                raise ValueError("id-pe-masa-url is an IA5String: ASCII only")
            lines.append(f"{OID_MASA_URL} = ASN1:IA5STRING:{masa_url}")
        if hardware_module_name:
            lines += [
                f"subjectAltName = otherName:{OID_HARDWARE_MODULE_NAME};SEQ:hwmn",
                "[hwmn]",
                f"hwType = OID:{HARDWARE_TYPE}",
                f"hwSerialNum = FORMAT:HEX,OCTETSTRING:{serial.encode().hex()}",
            ]
        extensions = _ee_extensions(kind, *lines)
        if not aki:
            extensions = extensions.replace("authorityKeyIdentifier = keyid:always\n", "", 1)
        shop = _Workshop(self.folder)
        subject = "/serialNumber=" + _escape(serial)
        return _make_ee(
            shop,
            f"idevid-{serial}",
            subject,
            self.ca,
            kind,
            extensions,
            self.not_before,
            NO_EXPIRY,
        )

    def write_folder(self, folder: Path, *, masa_url: str) -> Path:
        """The vendor folder for ``zerotouch masa serve --dir`` (see write_vendor_folder)."""
        return write_vendor_folder(
            folder,
            ca=self.ca,
            masa=self.masa,
            masa_tls=self.masa_tls,
            masa_url=masa_url,
            key_type=self.key_type,
        )


def _escape(value: str) -> str:
    """A value for OpenSSL's ``-subj`` (``/`` and ``+`` and ``\\`` escaped)."""
    return re.sub(r"([/+\\])", r"\\\1", value)


def make_vendor_pki(
    folder: Path,
    key_type: KeyType = "p256",
    *,
    name: str | None = None,
    hosts: Sequence[str] = LOCAL_HOSTS,
    not_before: datetime | None = None,
    days: int = 3650,
) -> VendorPki:
    """Another vendor's PKI in ``folder`` (created): CA, MASA signer, MASA TLS."""
    folder.mkdir(parents=True, exist_ok=True)
    name = name or f"Other Vendor {key_type}"
    start = _default_start(not_before)
    shop = _Workshop(folder)
    ca = _make_root(shop, "vendor-ca", f"/O={name}/CN={name} CA", key_type, start, days)
    end = start + timedelta(days=days - 1)
    masa = _make_ee(
        shop, "masa-signer", f"/O={name}/CN={name} MASA", ca, key_type,
        _ee_extensions(key_type), start, end,
    )  # fmt: skip
    tls = _make_ee(
        shop, "masa-tls", f"/O={name}/CN={name} MASA TLS", ca, key_type,
        _ee_extensions(key_type, "extendedKeyUsage = serverAuth, clientAuth",
                       f"subjectAltName = {_san(hosts)}"),
        start, end,
    )  # fmt: skip
    return VendorPki(folder, name, key_type, ca, masa, tls, start)


# ---------------------------------------------------------------------------------------------
# another domain


@dataclass(frozen=True)
class DomainPki:
    """A domain: root CA, registrar certificates and an intermediate-CA variant.

    ``registrar_cmcra_only``: EKU id-kp-cmcRA alone, critical, like RFC 8995 Appendix C's
    jrc_prime256v1.crt (plus SAN for ``hosts``); ``registrar``: serverAuth, clientAuth and
    cmcRA (what the project issues); ``sub_ca`` (pathlen 0) under ``ca`` and
    ``registrar_via_sub_ca`` (the three EKUs) under it, whose ``chain`` file holds the
    sub-CA."""

    folder: Path
    name: str
    key_type: str
    ca: Cert
    registrar_cmcra_only: Cert
    registrar: Cert
    sub_ca: Cert
    registrar_via_sub_ca: Cert


def make_domain_pki(
    folder: Path,
    key_type: KeyType = "p256",
    *,
    name: str = "Other Domain",
    hosts: Sequence[str] = LOCAL_HOSTS,
    not_before: datetime | None = None,
    days: int = 3650,
) -> DomainPki:
    folder.mkdir(parents=True, exist_ok=True)
    start = _default_start(not_before)
    end = start + timedelta(days=days - 1)
    shop = _Workshop(folder)
    san = f"subjectAltName = {_san(hosts)}"
    ca = _make_root(shop, "domain-ca", f"/O={name}/CN={name} CA", key_type, start, days)
    cmcra_only = _make_ee(
        shop, "registrar-cmcra-only", f"/O={name}/CN={name} registrar (cmcRA only)", ca,
        key_type, _ee_extensions(key_type, f"extendedKeyUsage = critical, {OID_KP_CMC_RA}", san),
        start, end,
    )  # fmt: skip
    three = f"extendedKeyUsage = {OID_KP_CMC_RA}, serverAuth, clientAuth"
    registrar = _make_ee(
        shop, "registrar", f"/O={name}/CN={name} registrar", ca, key_type,
        _ee_extensions(key_type, three, san), start, end,
    )  # fmt: skip
    sub_key = shop.key("domain-sub-ca", key_type)
    sub_path = shop.sign(
        "domain-sub-ca",
        shop.request("domain-sub-ca", sub_key, f"/O={name}/CN={name} sub-CA"),
        extensions=_CA_EXTENSIONS.format(pathlen=", pathlen:0"),
        issuer=ca,
        issuer_key=ca.key,
        not_before=start,
        not_after=end,
    )
    sub_ca = shop.cert("domain-sub-ca", sub_path, sub_key, ca, key_type)
    via_sub = _make_ee(
        shop, "registrar-via-sub-ca", f"/O={name}/CN={name} registrar (via sub-CA)", sub_ca,
        key_type, _ee_extensions(key_type, three, san), start, end,
    )  # fmt: skip
    return DomainPki(folder, name, key_type, ca, cmcra_only, registrar, sub_ca, via_sub)


# ---------------------------------------------------------------------------------------------
# RFC 8995 Appendix C, re-issued for today


@dataclass(frozen=True)
class AppendixCOriginals:
    """The published files, as they are (expired certificates, 2021 artifacts)."""

    vendor: Path  # vendor.crt: CN=highway-test.example.com CA, P-384, expired 2023-04-13
    vendor_key: Path
    masa: Path  # masa.crt: CN=highway-test.example.com MASA, expired 2023-04-13
    masa_key: Path
    ownerca: Path  # ownerca_secp384r1.crt: the domain CA, expired 2022-02-24
    ownerca_key: Path
    jrc: Path  # jrc_prime256v1.crt: the registrar, EKU cmcRA only, expired 2022-02-24
    jrc_key: Path
    idevid: Path  # idevid_00-D0-E5-F2-00-02.crt: valid to 2999, no AKI, masa-url w/o scheme
    idevid_key: Path
    pledge_request: Path  # vr_00-D0-E5-F2-00-02.b64 (C.2.1, signed by the IDevID)
    registrar_request: Path  # parboiled_vr_00-D0-E5-F2-00-02.b64 (C.2.2, signed by jrc)
    voucher: Path  # voucher_00-D0-E5-F2-00-02.b64 (C.2.3, signed by masa)


APPENDIX_C_ORIGINALS = AppendixCOriginals(
    vendor=APPENDIX_C_DIR / "vendor.crt",
    vendor_key=APPENDIX_C_DIR / "vendor.key",
    masa=APPENDIX_C_DIR / "masa.crt",
    masa_key=APPENDIX_C_DIR / "masa.key",
    ownerca=APPENDIX_C_DIR / "ownerca_secp384r1.crt",
    ownerca_key=APPENDIX_C_DIR / "ownerca_secp384r1.key",
    jrc=APPENDIX_C_DIR / "jrc_prime256v1.crt",
    jrc_key=APPENDIX_C_DIR / "jrc_prime256v1.key",
    idevid=APPENDIX_C_DIR / "idevid_00-D0-E5-F2-00-02.crt",
    idevid_key=APPENDIX_C_DIR / "idevid_00-D0-E5-F2-00-02.key",
    pledge_request=APPENDIX_C_DIR / "vr_00-D0-E5-F2-00-02.b64",
    registrar_request=APPENDIX_C_DIR / "parboiled_vr_00-D0-E5-F2-00-02.b64",
    voucher=APPENDIX_C_DIR / "voucher_00-D0-E5-F2-00-02.b64",
)


@dataclass(frozen=True)
class AppendixC:
    """RFC 8995 Appendix C for today: ``vendor``, ``masa``, ``ownerca`` and ``jrc`` are
    re-issued (published key, same subject and extensions, new serial and validity);
    ``idevid`` is the original certificate with its key, whose ``root`` is the re-issued
    vendor CA; ``masa_tls`` is new (a TLS server+client certificate, fresh P-256 key, issued
    by the re-issued vendor CA) so the lab can run a MASA. The keys are copies (mode 0600) of
    the published ones."""

    folder: Path
    originals: AppendixCOriginals
    vendor: Cert
    masa: Cert
    ownerca: Cert
    jrc: Cert
    idevid: Cert
    masa_tls: Cert
    serial: str = "00-D0-E5-F2-00-02"
    nonce: str = "-_XE9zK9q8Ll1qylMtLKeg"  # unpadded base64url, as published
    masa_url: str = "highway-test.example.com:9443"  # the IDevID's id-pe-masa-url, verbatim


def _same_extensions(cert: Path) -> str:
    """An ``openssl ca`` section reproducing ``cert``'s extensions byte for byte, in order
    (``DER:`` values), and switching off OpenSSL's default SKI/AKI where it has none."""
    original = x509.load_pem_x509_certificate(cert.read_bytes())
    lines = []
    for extension in original.extensions:
        critical = "critical," if extension.critical else ""
        lines.append(
            f"{extension.oid.dotted_string} = {critical}DER:{extension.value.public_bytes().hex()}"
        )
    present = {e.oid for e in original.extensions}
    if x509.oid.ExtensionOID.SUBJECT_KEY_IDENTIFIER not in present:
        lines.append("subjectKeyIdentifier = none")
    if x509.oid.ExtensionOID.AUTHORITY_KEY_IDENTIFIER not in present:
        lines.append("authorityKeyIdentifier = none")
    return "\n".join(lines)


def _reissue(
    shop: _Workshop,
    name: str,
    original: Path,
    key: Path,
    issuer: Cert | None,
    issuer_key: Path,
    start: datetime,
    days: int,
    key_type: str,
) -> Cert:
    own_key = shop.folder / f"{name}.key"
    shutil.copyfile(key, own_key)
    own_key.chmod(0o600)
    path = shop.sign(
        name,
        shop.request_from(name, original, own_key),
        extensions=_same_extensions(original),
        issuer=issuer,
        issuer_key=issuer_key,
        not_before=start,
        not_after=start + timedelta(days=days),
        md="sha256",  # the published certificates are all ecdsa-with-SHA256
    )
    return shop.cert(name, path, own_key, issuer, key_type)


def make_appendix_c(
    folder: Path, *, not_before: datetime | None = None, days: int = 3650
) -> AppendixC:
    """Re-issue the RFC 8995 Appendix C certificates into ``folder`` (see ``AppendixC``)."""
    folder.mkdir(parents=True, exist_ok=True)
    start = _default_start(not_before)
    shop = _Workshop(folder)
    o = APPENDIX_C_ORIGINALS
    vendor = _reissue(
        shop, "vendor", o.vendor, o.vendor_key, None, o.vendor_key, start, days, "p384"
    )
    masa = _reissue(shop, "masa", o.masa, o.masa_key, vendor, vendor.key, start, days - 1, "p256")
    owner = _reissue(
        shop, "ownerca_secp384r1", o.ownerca, o.ownerca_key, None, o.ownerca_key, start, days,
        "p384",
    )  # fmt: skip
    jrc = _reissue(
        shop, "jrc_prime256v1", o.jrc, o.jrc_key, owner, owner.key, start, days - 1, "p256"
    )
    idevid_key = folder / "idevid_00-D0-E5-F2-00-02.key"
    shutil.copyfile(o.idevid_key, idevid_key)
    idevid_key.chmod(0o600)
    idevid_pem = folder / "idevid_00-D0-E5-F2-00-02.pem"
    shutil.copyfile(o.idevid, idevid_pem)
    idevid = shop.cert("idevid_00-D0-E5-F2-00-02", idevid_pem, idevid_key, vendor, "p256")
    tls = _make_ee(
        shop, "masa-tls", "/CN=highway-test.example.com MASA TLS", vendor, "p256",
        _ee_extensions("p256", "extendedKeyUsage = serverAuth, clientAuth",
                       f"subjectAltName = {_san(LOCAL_HOSTS)}"),
        start, start + timedelta(days=days - 1),
    )  # fmt: skip
    return AppendixC(folder, o, vendor, masa, owner, jrc, idevid, tls)


# ---------------------------------------------------------------------------------------------
# CMS


def cms_sign(
    payload: bytes | str | Mapping[str, object],
    signer: Cert,
    *,
    out: Path | None = None,
    econtent_type: str | None = None,
    include_chain: bool = True,
    include_root: bool = False,
    no_certs: bool = False,
    rsa_pss: bool = False,
    md: str | None = None,
) -> bytes:
    """``openssl cms -sign -outform DER -nodetach -binary`` over ``payload`` (a mapping is
    serialised as compact JSON) by ``signer``: DER ContentInfo, written to ``out`` if given.

    ``econtent_type`` None keeps OpenSSL's id-data (as RFC 8995 Appendix C);
    ``OID_ANIMA_JSON_VOUCHER`` is RFC 8366's. The signer certificate is always embedded unless
    ``no_certs``; ``include_chain`` adds the intermediates above it, ``include_root`` the root
    too. ``rsa_pss``: RSASSA-PSS for an RSA signer. ``md``: digest (OpenSSL's default:
    SHA-256; SHA-512 for Ed25519 per RFC 8419). An Ed25519 signer raises CmsUnsupported:
    OpenSSL cannot make such a CMS (the vendor PKI's Ed25519 certificates still serve TLS
    and path validation)."""
    if isinstance(payload, Mapping):
        content = json.dumps(payload, separators=(",", ":")).encode()
    elif isinstance(payload, str):
        content = payload.encode()
    else:
        content = bytes(payload)
    args: list[str | os.PathLike[str]] = [
        "cms", "-sign", "-binary", "-nodetach", "-outform", "DER",
        "-signer", signer.cert, "-inkey", signer.key,
    ]  # fmt: skip
    if econtent_type is not None:
        args += ["-econtent_type", econtent_type]
    if no_certs:
        args.append("-nocerts")
    else:
        extra = signer.full_chain if include_root else signer.chain
        others = x509.load_pem_x509_certificates(extra.read_bytes())[1:]
        if (include_chain or include_root) and others:
            bundle = signer.cert.with_suffix(".cms-certs.pem")
            if not include_chain:  # the root alone
                others = others[-1:]
            bundle.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in others))
            args += ["-certfile", bundle]
    if rsa_pss:
        args += ["-keyopt", "rsa_padding_mode:pss"]
    if md is None and signer.key_type == "ed25519":
        md = "sha512"  # RFC 8419 §3; OpenSSL 3.0 has no default digest for Ed25519 in CMS
    if md is not None:
        args += ["-md", md]
    try:
        der = openssl(*args, data=content)
    except OpenSSLError as exc:
        if signer.key_type == "ed25519":
            raise CmsUnsupported(
                "OpenSSL cannot make CMS SignedData with an Ed25519 key (3.0 up to at least "
                f"3.6: openssl/openssl#11915, #32248): {exc}"
            ) from exc
        raise
    if out is not None:
        out.write_bytes(der)
    return der


def cms_verify(der: bytes, root: Path, *, purpose: str = "any") -> bytes:
    """``openssl cms -verify`` of a DER ContentInfo against ``root``: the content."""
    return openssl(
        "cms", "-verify", "-binary", "-inform", "DER", "-CAfile", root, "-purpose", purpose,
        data=der,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# nonces and idevid-issuer


@dataclass(frozen=True)
class NonceSample:
    """A nonce as an implementation sent it: ``form``, the value, the file (under
    tests/vectors/data) it is copied from, and a note."""

    form: str
    value: str
    source: str
    note: str = ""


_F = "examples/AnimaGUS-minerva__fountain/spec/files/"
_H = "examples/CIRALabs__highway/spec/files/"
NONCE_SAMPLES: tuple[NonceSample, ...] = (
    NonceSample(
        "base64url-unpadded",
        "-_XE9zK9q8Ll1qylMtLKeg",
        "examples/anima-bootstrap/examples/vr_00-D0-E5-F2-00-02.b64.payload.json",
        "RFC 8995 Appendix C (pledge, registrar and MASA alike)",
    ),
    NonceSample(
        "base64url-unpadded",
        "Dss99sBr3pNMOACe-LYY7w",
        _F + "voucher-00-D0-E5-F2-00-02.pkcs.payload.json",
        "Sandelman highway MASA voucher",
    ),
    NonceSample(
        "base64-unpadded",
        "4vTsppS2CeqBzhEdoifM2g",
        _F + "voucher_request-00-D0-E5-F2-00-02.pkcs.payload.json",
        "16 bytes, no '-'/'_' and no padding (rfc8366bis examples use it too)",
    ),
    NonceSample(
        "base64-unpadded",
        "syRX4JIQiMeFGi1jKxzZFA",
        _F + "voucher-00-D0-E5-F2-00-03.vch.payload.json",
    ),
    NonceSample(
        "base64-padded",
        "ODFiM2I0ZTk0MmMwNmI5MGEzZDQxYjkwNjFjYWE1ZDA=",
        _H + "mranga-1-vr.vrq.payload.json",
        "RFC 7951 binary as YANG means it (and base64 of 32 hex characters)",
    ),
    NonceSample(
        "base64-padded",
        "base64encodedvalue==",
        "examples/rfc8366/ex-voucher-ephemeral.json",
        "the RFC 8366 §5.2 example's placeholder",
    ),
    NonceSample(
        "base64-no-padding-needed",
        "Iopeer8hi0hi",
        _H + "parboiled_unsigned_00-D0-E5-F2-00-01.vrq.payload.json",
        "12 characters: valid padded and unpadded base64 at once",
    ),
    NonceSample(
        "hex",
        "62a2e7693d82fcda2624de58fb6722e5",
        "examples/rfc8995-inline/voucherrequest_example1.json",
        "RFC 8995 §3.3 example: 32 hex characters",
    ),
    NonceSample(
        "hex",
        "fdba9f15fd18d898d5b5bfdee06e6194",
        _F + "parboiled_vr_00123456789A.txt",
    ),
    NonceSample(
        "decimal-digits",
        "1930729794786604",
        _F + "product_119/siemens-bt-voucher-request1.pkcs.payload.json",
        "Siemens pledge: 16 decimal digits (also valid hex and base64)",
    ),
    NonceSample(
        "abcd1234",
        "abcd1234",
        _F + "model_request_081196FFFE0181E0.txt",
        "a literal test value (valid hex and base64)",
    ),
)


@dataclass(frozen=True)
class IdevidIssuerForms:
    """What implementations put in idevid-issuer for one IDevID, all taken verbatim from the
    certificate's DER by ``openssl asn1parse`` offsets:

    * ``key_identifier``: the AKI keyIdentifier -- RFC 8366 §5.3's form (20 bytes with
      OpenSSL's SHA-1 method);
    * ``aki_der``: the AuthorityKeyIdentifier SEQUENCE (the extnValue's content);
    * ``extn_value``: that SEQUENCE inside the extension's DER OCTET STRING
      (``04 18 30 16 80 14 <keyid>``): the form the constrained-voucher examples carry
      (anima-wg/constrained-voucher ``rvr.hex``: ``h'041830168014cb8d...'``).

    RFC 8995 Appendix C carries no idevid-issuer at all (its voucher-requests omit the leaf,
    its IDevID has no AKI), and the JSON examples of RFC 8366/8995 carry the placeholder
    ``base64encodedvalue==``."""

    key_identifier: bytes
    aki_der: bytes
    extn_value: bytes


_ASN1_LINE = re.compile(
    r"^\s*(?P<offset>\d+):d=\s*(?P<depth>\d+)\s+hl=\s*(?P<hl>\d+)\s+l=\s*(?P<length>\d+)\s+"
    r"(?:prim|cons):\s*(?P<what>.*?)\s*$"
)


def _asn1(der: bytes) -> list[dict[str, str]]:
    text = openssl("asn1parse", "-inform", "DER", data=der).decode()
    return [m.groupdict() for m in map(_ASN1_LINE.match, text.splitlines()) if m]


def idevid_issuer_forms(cert: Path) -> IdevidIssuerForms | None:
    """The three idevid-issuer forms of the certificate in ``cert`` (PEM); None without an
    AuthorityKeyIdentifier keyIdentifier (e.g. the RFC 8995 Appendix C IDevID)."""
    der = openssl("x509", "-in", cert, "-outform", "DER")
    items = _asn1(der)
    for index, item in enumerate(items):
        if not item["what"].endswith(":X509v3 Authority Key Identifier"):
            continue
        depth = item["depth"]
        for value in items[index + 1 :]:
            if value["depth"] == depth and value["what"].startswith("OCTET STRING"):
                start, hl, length = int(value["offset"]), int(value["hl"]), int(value["length"])
                extn_value = der[start : start + hl + length]
                aki_der = extn_value[hl:]
                for part in _asn1(aki_der)[1:]:
                    if part["depth"] == "1" and part["what"] == "cont [ 0 ]":
                        at, phl, plen = int(part["offset"]), int(part["hl"]), int(part["length"])
                        key_id = aki_der[at + phl : at + phl + plen]
                        return IdevidIssuerForms(key_id, aki_der, extn_value)
                return None
    return None


# ---------------------------------------------------------------------------------------------
# the project's role folders


def _copy_key(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)
    target.chmod(0o600)


def write_vendor_folder(
    folder: Path,
    *,
    ca: Cert,
    masa: Cert,
    masa_tls: Cert,
    masa_url: str,
    key_type: str = "p256",
    masa_toml: str | None = None,
) -> Path:
    """The vendor folder ``zerotouch masa serve --dir`` runs from (the names of
    ``zerotouch vendor init``): ca.pem (the manufacturer trust anchor), ca.key (so
    ``zerotouch vendor idevid --dir`` can issue more IDevIDs, with the project's code),
    masa-signer.pem/.key (voucher signer, then its intermediates), masa-tls.pem/.key,
    vendor.toml (masa_url, key_type) and, when given, masa.toml."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ca.cert, folder / "ca.pem")
    _copy_key(ca.key, folder / "ca.key")
    shutil.copyfile(masa.chain, folder / "masa-signer.pem")
    _copy_key(masa.key, folder / "masa-signer.key")
    shutil.copyfile(masa_tls.chain, folder / "masa-tls.pem")
    _copy_key(masa_tls.key, folder / "masa-tls.key")
    (folder / "vendor.toml").write_text(
        f"masa_url = {json.dumps(masa_url)}\nkey_type = {json.dumps(key_type)}\n"
    )
    if masa_toml is not None:
        (folder / "masa.toml").write_text(masa_toml)
    return folder


def write_registrar_folder(
    folder: Path,
    *,
    ca: Cert,
    registrar: Cert,
    manufacturer_cas: Sequence[Path],
    masa_trust: Sequence[Path] = (),
    masa_url: str | None = None,
    listen: str = "127.0.0.1:8443",
    auto_accept: bool = False,
    extra_toml: str = "",
    masa_client: Cert | None = None,
) -> Path:
    """The registrar folder ``zerotouch registrar serve --dir`` runs from (the names of
    ``zerotouch registrar init``): ca.pem/.key (the domain CA that issues LDevIDs and is
    pinned), registrar.pem (the registrar certificate, then its intermediates)/.key,
    manufacturer-cas.pem, masa-trust.pem (when given), masa-client.pem/.key (when given: the
    TLS client identity towards the MASA) and registrar.toml. The hand-off client
    certificate is issued by the registrar itself on first start."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ca.cert, folder / "ca.pem")
    _copy_key(ca.key, folder / "ca.key")
    shutil.copyfile(registrar.chain, folder / "registrar.pem")
    _copy_key(registrar.key, folder / "registrar.key")
    if masa_client is not None:
        shutil.copyfile(masa_client.chain, folder / "masa-client.pem")
        _copy_key(masa_client.key, folder / "masa-client.key")
    (folder / "manufacturer-cas.pem").write_bytes(
        b"".join(p.read_bytes() for p in manufacturer_cas)
    )
    lines = [
        f"listen = {json.dumps(listen)}",
        'manufacturer_cas = ["manufacturer-cas.pem"]',
        f"auto_accept = {'true' if auto_accept else 'false'}",
    ]
    if masa_trust:
        (folder / "masa-trust.pem").write_bytes(b"".join(p.read_bytes() for p in masa_trust))
        lines.append('masa_trust = ["masa-trust.pem"]')
    if masa_url is not None:
        lines.append(f"masa_url = {json.dumps(masa_url)}")
    (folder / "registrar.toml").write_text("\n".join(lines) + "\n" + extra_toml)
    return folder

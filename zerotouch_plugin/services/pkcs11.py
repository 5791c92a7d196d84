"""Keys in a PKCS#11 token, named by RFC 7512 URIs: the MASA's voucher-signing key and the
registrar's domain CA key can live there instead of in a file; the private key never leaves
the token (it is generated there, sensitive and not extractable) and signs through
``Pkcs11Signer``, an ``artifacts.signer.Signer``.

A URI: ``pkcs11:token=LABEL;object=LABEL[;id=%01]?pin-value=PIN`` (or ``pin-source=file:PATH``,
``module-path=/path/lib.so``). Without ``module-path`` the module is $ZEROTOUCH_PKCS11_MODULE,
else SoftHSM2's. ECDSA (P-256, P-384, P-521) and RSA (PKCS#1 v1.5, PSS) keys sign; Ed25519 is
not offered by the tokens this was tested with.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.artifacts.certs.keys import PublicKey
from zerotouch_plugin.artifacts.signer import SignatureAlgorithm, SigningIdentity, digest_of
from zerotouch_plugin.errors import ConfigError
from zerotouch_plugin.services import certfiles

__all__ = [
    "DEFAULT_MODULE",
    "Pkcs11Signer",
    "Pkcs11Uri",
    "generate_key",
    "is_pkcs11_uri",
    "load_signing_identity",
    "parse_pkcs11_uri",
]

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
MODULE_ENV = "ZEROTOUCH_PKCS11_MODULE"
SCHEME = "pkcs11:"
# RFC 7512 §2.3 path attributes this module matches on, and query attributes it reads.
_PATH = frozenset({"token", "object", "id", "serial", "manufacturer", "model", "type"})
_QUERY = frozenset({"pin-value", "pin-source", "module-path"})
_CURVES = {"secp256r1": ec.SECP256R1, "secp384r1": ec.SECP384R1, "secp521r1": ec.SECP521R1}


@dataclass(frozen=True)
class Pkcs11Uri:
    """The parts of an RFC 7512 URI that find one key: its token, its label and/or id."""

    token: str | None
    label: str | None
    key_id: bytes | None
    serial: str | None
    pin: str | None
    module: str
    text: str  # the URI without the PIN, for messages

    def __str__(self) -> str:
        return self.text


def is_pkcs11_uri(value: str) -> bool:
    return value.startswith(SCHEME)


def _attributes(part: str, separator: str, allowed: frozenset[str], uri: str) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for item in filter(None, part.split(separator)):
        name, sep, value = item.partition("=")
        if not sep or name not in allowed:
            raise ConfigError(
                f"{uri}: {name!r} is not a PKCS#11 URI attribute this registrar or MASA reads "
                f"(RFC 7512 §2.3: {', '.join(sorted(allowed))})"
            )
        if name in found:
            raise ConfigError(f"{uri}: {name} is given twice")
        found[name] = unquote_to_bytes(value)
    return found


def _text(value: bytes | None, name: str, uri: str) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{uri}: {name} is not UTF-8") from exc


def _pin(query: dict[str, bytes], uri: str) -> str | None:
    pin = _text(query.get("pin-value"), "pin-value", uri)
    source = _text(query.get("pin-source"), "pin-source", uri)
    if pin is not None and source is not None:
        raise ConfigError(f"{uri}: give pin-value or pin-source, not both")
    if source is None:
        return pin
    path = Path(source.removeprefix("file:"))
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{uri}: cannot read the PIN from {path}: {exc}") from exc


def parse_pkcs11_uri(uri: str) -> Pkcs11Uri:
    """The key an RFC 7512 URI names (a private key: ``type``, if given, is ``private``);
    ConfigError naming what is wrong."""
    if not is_pkcs11_uri(uri):
        raise ConfigError(f"{uri!r} is not a PKCS#11 URI (RFC 7512: pkcs11:...)")
    path, _, query_part = uri[len(SCHEME) :].partition("?")
    shown = SCHEME + path
    attrs = _attributes(path, ";", _PATH, shown)
    query = _attributes(query_part, "&", _QUERY, shown)
    if attrs.get("type", b"private") != b"private":
        raise ConfigError(f"{shown}: type must be private (the key that signs)")
    label = _text(attrs.get("object"), "object", shown)
    key_id = attrs.get("id")
    if label is None and key_id is None:
        raise ConfigError(f"{shown}: name the key with object= (its label) or id=")
    module = _text(query.get("module-path"), "module-path", shown)
    return Pkcs11Uri(
        token=_text(attrs.get("token"), "token", shown),
        label=label,
        key_id=key_id,
        serial=_text(attrs.get("serial"), "serial", shown),
        pin=_pin(query, shown),
        module=module or os.environ.get(MODULE_ENV) or DEFAULT_MODULE,
        text=shown,
    )


def _lib(module: str) -> Any:
    import pkcs11

    try:
        return pkcs11.lib(module)
    except (RuntimeError, OSError) as exc:
        raise ConfigError(f"cannot load the PKCS#11 module {module}: {exc}") from exc


def _open(uri: Pkcs11Uri, *, rw: bool = False) -> Any:
    """A logged-in session on the URI's token."""
    import pkcs11

    lib = _lib(uri.module)
    try:
        token = lib.get_token(token_label=uri.token, token_serial=uri.serial)
        return token.open(user_pin=uri.pin, rw=rw)
    except pkcs11.exceptions.NoSuchToken as exc:
        raise ConfigError(f"{uri}: no such token in {uri.module}") from exc
    except pkcs11.exceptions.MultipleTokensReturned as exc:
        raise ConfigError(f"{uri}: several tokens match; add token= or serial=") from exc
    except pkcs11.exceptions.PinIncorrect as exc:
        raise ConfigError(f"{uri}: the token refused the PIN") from exc
    except pkcs11.exceptions.PKCS11Error as exc:
        raise ConfigError(f"{uri}: cannot open the token: {type(exc).__name__}") from exc


def _find(session: Any, uri: Pkcs11Uri, object_class: Any) -> Any:
    import pkcs11

    query: dict[str, Any] = {"object_class": object_class}
    if uri.label is not None:
        query["label"] = uri.label
    if uri.key_id is not None:
        query["id"] = uri.key_id
    try:
        return session.get_key(**query)
    except pkcs11.exceptions.NoSuchKey as exc:
        raise ConfigError(f"{uri}: no such key on the token") from exc
    except pkcs11.exceptions.MultipleObjectsReturned as exc:
        raise ConfigError(f"{uri}: several keys match; add id=") from exc


def _public_key(key: Any) -> PublicKey:
    from pkcs11 import KeyType
    from pkcs11.util.ec import encode_ec_public_key
    from pkcs11.util.rsa import encode_rsa_public_key

    if key.key_type == KeyType.EC:
        public = load_der_public_key(encode_ec_public_key(key))
    elif key.key_type == KeyType.RSA:
        public = load_der_public_key(_rsa_spki(encode_rsa_public_key(key)))
    else:
        raise ConfigError(f"the token's key is of type {key.key_type.name}: EC or RSA only")
    if not isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise ConfigError("the token's public key is neither EC nor RSA")
    return public


def _rsa_spki(pkcs1: bytes) -> bytes:
    """SubjectPublicKeyInfo around a PKCS#1 RSAPublicKey (RFC 8017 A.1.1, RFC 5280 §4.1)."""
    from asn1crypto import keys

    info = keys.PublicKeyInfo(
        {"algorithm": {"algorithm": "rsa"}, "public_key": keys.RSAPublicKey.load(pkcs1)}
    )
    return bytes(info.dump())


class Pkcs11Signer:
    """A ``Signer`` over a private key in a token; one session, used by one thread at a time.
    The token hashes nothing: the digest is computed here and signed raw (CKM_ECDSA,
    CKM_RSA_PKCS with the DigestInfo, CKM_RSA_PKCS_PSS), which every token offers."""

    def __init__(self, uri: Pkcs11Uri | str) -> None:
        from pkcs11 import ObjectClass

        self.uri = parse_pkcs11_uri(uri) if isinstance(uri, str) else uri
        self._session = _open(self.uri)
        self._key = _find(self._session, self.uri, ObjectClass.PRIVATE_KEY)
        self._public = _public_key(_find(self._session, self.uri, ObjectClass.PUBLIC_KEY))
        self._lock = threading.Lock()

    def public_key(self) -> PublicKey:
        return self._public

    def sign(self, data: bytes, algorithm: SignatureAlgorithm) -> bytes:
        from pkcs11 import MGF, Mechanism
        from pkcs11.util.ec import encode_ecdsa_signature

        digest_name = digest_of(algorithm)
        digest = hashlib.new(digest_name, data).digest()
        public = self._public
        with self._lock:
            if isinstance(public, ec.EllipticCurvePublicKey):
                if not algorithm.endswith("_ecdsa"):
                    raise ValueError(f"an EC key cannot sign with {algorithm}")
                return bytes(
                    encode_ecdsa_signature(self._key.sign(digest, mechanism=Mechanism.ECDSA))
                )
            if algorithm is SignatureAlgorithm.RSA_PSS_SHA256:
                params = (Mechanism.SHA256, MGF.SHA256, len(digest))
                return bytes(
                    self._key.sign(digest, mechanism=Mechanism.RSA_PKCS_PSS, mechanism_param=params)
                )
            if not algorithm.endswith("_rsa"):
                raise ValueError(f"an RSA key cannot sign with {algorithm}")
            return bytes(
                self._key.sign(_digest_info(digest_name, digest), mechanism=Mechanism.RSA_PKCS)
            )

    def close(self) -> None:
        self._session.close()


def _digest_info(name: str, digest: bytes) -> bytes:
    """DigestInfo of RFC 8017 §9.2, what PKCS#1 v1.5 signs."""
    from asn1crypto import algos

    info = algos.DigestInfo({"digest_algorithm": {"algorithm": name}, "digest": digest})
    return bytes(info.dump())


def generate_key(uri: Pkcs11Uri | str, *, curve: str = "secp256r1") -> PublicKey:
    """Generate an EC key pair in the token under the URI's label and id: the private key
    sensitive and never extractable; ConfigError if a key with that name exists."""
    import pkcs11
    from pkcs11 import Attribute, KeyType, ObjectClass
    from pkcs11.util.ec import encode_named_curve_parameters

    parsed = parse_pkcs11_uri(uri) if isinstance(uri, str) else uri
    if curve not in _CURVES:
        raise ConfigError(f"curve must be one of {', '.join(_CURVES)}")
    with _open(parsed, rw=True) as session:
        try:
            _find(session, parsed, ObjectClass.PRIVATE_KEY)
        except ConfigError:
            pass
        else:
            raise ConfigError(f"{parsed}: the token holds such a key already; not replaced")
        params = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(curve)}, local=True
        )
        names: dict[Any, Any] = {}
        if parsed.label is not None:
            names[Attribute.LABEL] = parsed.label
        if parsed.key_id is not None:
            names[Attribute.ID] = parsed.key_id
        try:
            public, _ = params.generate_keypair(
                store=True,
                public_template=dict(names),
                private_template={
                    **names,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.SIGN: True,
                },
            )
        except pkcs11.exceptions.PKCS11Error as exc:
            raise ConfigError(f"{parsed}: the token did not generate the key: {exc!r}") from exc
        return _public_key(public)


def load_signing_identity(
    cert_path: Path, key_path: Path, uri: str | None
) -> Identity | SigningIdentity:
    """A certificate file (leaf first, then its chain) with its key: the key file when
    ``uri`` is None, else the token key the URI names, which must match the certificate."""
    if uri is None:
        return certfiles.load_identity(cert_path, key_path)
    try:
        found = certs.load_certs(cert_path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read {cert_path}: {exc.strerror}") from exc
    try:
        return SigningIdentity(found[0], Pkcs11Signer(uri), tuple(found[1:]))
    except ValueError as exc:
        raise ConfigError(f"{cert_path} / {parse_pkcs11_uri(uri)}: {exc}") from exc

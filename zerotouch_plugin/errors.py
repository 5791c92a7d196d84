"""The one exception tree of zerotouch.

Every error carries its wire codes: the HTTP status (RFC 8995 §5.6 / RFC 8040 §7), the
NETCONF error-tag (RFC 6241 Appendix A) and a short ``reason`` slug used in CLI output and
logs. Exactly one place per transport turns these into responses; nothing else maps codes.

``LocalError`` is a fault on our side (configuration, storage, an upstream we depend on);
``RemoteError`` is a fault of the peer or of the input it sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

__all__ = [
    "AccessDenied",
    "ArtifactKindMismatch",
    "AwaitingApproval",
    "BadElement",
    "CertificateError",
    "ConfigError",
    "Conflict",
    "DigestMismatch",
    "Expired",
    "GraspError",
    "InUse",
    "InvalidInput",
    "InvalidParameter",
    "LocalError",
    "LockDenied",
    "LockNotHeld",
    "MethodNotAllowed",
    "MissingAttribute",
    "MissingElement",
    "MissingKey",
    "NotAcceptable",
    "NotCMS",
    "NotFound",
    "PayloadTooLarge",
    "PeerRpcError",
    "PolicyRefused",
    "PreconditionFailed",
    "RemoteError",
    "ReplayedRequest",
    "ResourceExists",
    "ResourceMissing",
    "SchemaError",
    "SignatureInvalid",
    "StorageError",
    "StorageUnavailable",
    "TooManySessions",
    "UnknownElement",
    "UnsupportedMediaType",
    "UnsupportedOperation",
    "UntrustedSigner",
    "UpstreamInvalid",
    "UpstreamUnavailable",
    "WrongNonce",
    "WrongSerial",
    "ZerotouchError",
]


class ZerotouchError(Exception):
    """Root of every error zerotouch raises on purpose."""

    reason: ClassVar[str] = "error"
    http_status: ClassVar[int] = 500
    netconf_tag: ClassVar[str] = "operation-failed"

    def __init__(
        self, message: str, *, path: str | None = None, info: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        # NETCONF <error-info> members (RFC 6241 Appendix A: bad-attribute, bad-element ...)
        self.info: Mapping[str, str] = dict(info or {})

    def __str__(self) -> str:
        if self.path:
            return f"{self.message} (at {self.path})"
        return self.message

    def one_line(self) -> str:
        """``reason: message`` on one line, as CLIs print it."""
        return f"{self.reason}: {self}".replace("\n", " ")


class LocalError(ZerotouchError):
    """Our fault: configuration, storage, or a dependency we could not reach."""


class RemoteError(ZerotouchError):
    """The peer's fault: its input is malformed, forged, or not allowed."""

    http_status = 400
    netconf_tag = "invalid-value"


class ConfigError(LocalError):
    reason = "config-error"


class StorageError(LocalError):
    reason = "storage-error"


class UpstreamUnavailable(LocalError):
    """A service we depend on (MASA, registrar) did not answer; retry later (RFC 8995 §5.6)."""

    reason = "upstream-unavailable"
    http_status = 503
    netconf_tag = "resource-denied"

    def __init__(self, message: str, *, retry_after: int = 30, path: str | None = None) -> None:
        super().__init__(message, path=path)
        self.retry_after = retry_after


class StorageUnavailable(StorageError, UpstreamUnavailable):
    """The database cannot take a write now (disk full, server restarting): nothing was
    written, so the client may retry the same request after Retry-After (RFC 9110 §15.6.4)."""

    reason = "storage-unavailable"


class UpstreamInvalid(LocalError):
    """A service we depend on answered with something we refuse to relay (a forged or
    mismatched voucher from the MASA, an unreadable audit log): 502 to our own client."""

    reason = "upstream-invalid"
    http_status = 502


class InvalidInput(RemoteError):
    """Syntactically broken input: bad JSON, bad base64, truncated DER."""

    reason = "malformed"
    netconf_tag = "malformed-message"


class GraspError(InvalidInput):
    """A GRASP message (RFC 8990) that is oversized, not well-formed CBOR, past the decoder's
    depth or item limits, or not what its CDDL says; ``kind`` names which (``oversized``,
    ``cbor``, ``limits``, ``message-type``, ``structure``), for the listener's counters."""

    reason = "malformed-grasp"

    def __init__(self, message: str, *, kind: str = "structure", path: str | None = None) -> None:
        super().__init__(message, path=path)
        self.kind = kind


class InvalidParameter(RemoteError):
    """A request parameter (RESTCONF query parameter) the server does not support or cannot
    parse (RFC 8040 §4.8: 400 with invalid-value)."""

    reason = "invalid-parameter"


class NotCMS(InvalidInput):
    reason = "not-cms"


class SchemaError(RemoteError):
    """Well-formed data that breaks its YANG schema: ``path`` names the node, message the rule."""

    reason = "schema-error"


class UnknownElement(SchemaError):
    """An element the schema does not know where it stands (RFC 6241 Appendix A)."""

    netconf_tag = "unknown-element"


class MissingKey(SchemaError):
    """A list entry without all its keys (RFC 7950 §8.3.1: missing-element)."""

    netconf_tag = "missing-element"


class BadElement(SchemaError):
    """An element that may not be there, such as data of a second case of one choice
    (RFC 7950 §8.3.1, RFC 6241 Appendix A)."""

    netconf_tag = "bad-element"


class ArtifactKindMismatch(RemoteError):
    """A voucher-request where a voucher was expected, or the reverse."""

    reason = "wrong-artifact"


class SignatureInvalid(RemoteError):
    reason = "bad-signature"
    http_status = 403
    netconf_tag = "access-denied"


class DigestMismatch(SignatureInvalid):
    reason = "digest-mismatch"


class UntrustedSigner(SignatureInvalid):
    reason = "untrusted-signer"


class CertificateError(RemoteError):
    """A certificate that is unusable for its role (missing extension, wrong key usage)."""

    reason = "bad-certificate"
    http_status = 403
    netconf_tag = "access-denied"


class Expired(SignatureInvalid):
    reason = "expired"


class WrongSerial(RemoteError):
    reason = "wrong-serial"
    http_status = 403
    netconf_tag = "access-denied"


class WrongNonce(RemoteError):
    reason = "wrong-nonce"
    http_status = 403
    netconf_tag = "access-denied"


class ReplayedRequest(WrongNonce):
    """A voucher-request whose nonce this device already used: stale, so refused with 403
    (RFC 8995 §5.3 and §5.6 name 403 for a stale voucher-request)."""

    reason = "replayed-request"


class AccessDenied(RemoteError):
    """Authentication or authorization failed (TLS identity, admin rights)."""

    reason = "access-denied"
    http_status = 401
    netconf_tag = "access-denied"


class PolicyRefused(RemoteError):
    """Authenticated, but policy says no (RFC 8995 §5.3, §5.5)."""

    reason = "policy-refused"
    http_status = 403
    netconf_tag = "access-denied"


class AwaitingApproval(PolicyRefused):
    """Held for an operator's decision (registrar policy ``ask``): where a wait is offered the
    answer is 202 with Retry-After (RFC 7030 §4.2.3, RFC 8995 §5.6), elsewhere this 403."""


class NotFound(RemoteError):
    reason = "not-found"
    http_status = 404
    netconf_tag = "data-missing"


class ResourceMissing(NotFound):
    """A RESTCONF target resource that does not exist (RFC 8040 §7: 404 with invalid-value)."""

    reason = "resource-missing"
    netconf_tag = "invalid-value"


class NotAcceptable(RemoteError):
    """The requested voucher format cannot be produced (RFC 8995 §5.6: 406)."""

    reason = "not-acceptable"
    http_status = 406
    netconf_tag = "operation-not-supported"


class Conflict(RemoteError):
    reason = "conflict"
    http_status = 409
    netconf_tag = "data-exists"


class ResourceExists(Conflict):
    """RESTCONF POST of a resource that already exists (RFC 8040 §4.4.1: 409 with
    resource-denied)."""

    reason = "resource-exists"
    netconf_tag = "resource-denied"


class PayloadTooLarge(RemoteError):
    reason = "too-large"
    http_status = 413
    netconf_tag = "too-big"


class TooManySessions(RemoteError):
    """A server already holds as many sessions as it allows (RFC 6241 resource-denied)."""

    reason = "too-many-sessions"
    http_status = 503
    netconf_tag = "resource-denied"


class UnsupportedMediaType(RemoteError):
    reason = "unsupported-media-type"
    http_status = 415
    netconf_tag = "operation-not-supported"


class LockDenied(RemoteError):
    """The datastore lock is held by another session (RFC 6241 §7.5: lock-denied)."""

    reason = "lock-denied"
    http_status = 409
    netconf_tag = "lock-denied"

    def __init__(self, message: str, *, holder: int | None = None, path: str | None = None) -> None:
        super().__init__(message, path=path)
        self.holder = holder


class InUse(LockDenied):
    """A write to a datastore another session has locked (RFC 6241 §7.5: in-use)."""

    reason = "in-use"
    netconf_tag = "in-use"


class LockNotHeld(RemoteError):
    """Unlock of a lock this session does not hold (RFC 6241 §7.6: operation-failed)."""

    reason = "lock-not-held"
    http_status = 409
    netconf_tag = "operation-failed"


class PreconditionFailed(RemoteError):
    """A conditional request (If-Match, If-Unmodified-Since) whose condition is false: the
    method is not performed (RFC 9110 §13.1; RFC 8040 §7 lists 412 under operation-failed)."""

    reason = "precondition-failed"
    http_status = 412
    netconf_tag = "operation-failed"


class UnsupportedOperation(RemoteError):
    """An RPC or operation the server does not implement (RFC 6241 Appendix A)."""

    reason = "operation-not-supported"
    http_status = 501
    netconf_tag = "operation-not-supported"


class MethodNotAllowed(UnsupportedOperation):
    """An HTTP method the RESTCONF resource does not allow (RFC 8040 §7: 405)."""

    reason = "method-not-allowed"
    http_status = 405

    def __init__(self, message: str, *, allowed: tuple[str, ...], path: str | None = None) -> None:
        super().__init__(message, path=path)
        self.allowed = allowed


class MissingElement(InvalidInput):
    """A required parameter of an operation is absent (RFC 6241 Appendix A)."""

    reason = "missing-element"
    netconf_tag = "missing-element"


class MissingAttribute(InvalidInput):
    """A required XML attribute is absent, e.g. an rpc's message-id (RFC 6241 §4.1)."""

    reason = "missing-attribute"
    netconf_tag = "missing-attribute"


class PeerRpcError(RemoteError):
    """A NETCONF server answered an RPC with ``<rpc-error>`` (RFC 6241 §4.3): ``error_tag``
    is the tag it sent (the class's ``netconf_tag`` is what we would send ourselves)."""

    reason = "rpc-error"
    http_status = 502

    def __init__(self, message: str, *, error_tag: str, path: str | None = None) -> None:
        super().__init__(message, path=path)
        self.error_tag = error_tag

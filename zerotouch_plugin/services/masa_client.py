"""The registrar's HTTPS client for the MASA (RFC 8995 §5.5, §5.8.1).

TLS with the registrar certificate as client certificate, the MASA verified against the
configured anchors. Transport faults become ``UpstreamUnavailable`` (the registrar answers
503 + Retry-After and the pledge retries); the MASA's own refusals keep their meaning.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping, Sequence

import aiohttp
from cryptography import x509

from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.artifacts.cms import MEDIA_TYPE_VOUCHER_CMS
from zerotouch_plugin.errors import (
    NotAcceptable,
    NotFound,
    PolicyRefused,
    ReplayedRequest,
    UpstreamInvalid,
    UpstreamUnavailable,
    WrongNonce,
    WrongSerial,
    ZerotouchError,
)
from zerotouch_plugin.services._tls import client_context

__all__ = ["MAX_RESPONSE_BYTES", "MasaClient"]

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 1 << 20

# MASA status -> the error the registrar raises (and so answers its pledge with).
_REFUSALS: Mapping[int, type[ZerotouchError]] = {
    403: PolicyRefused,
    404: NotFound,
    406: NotAcceptable,
}
# A MASA refusal whose reason (first word of the text/plain answer) is one of these keeps
# that reason, so the pledge learns e.g. that its request was a replay (same status).
_BY_REASON: Mapping[str, type[ZerotouchError]] = {
    cls.reason: cls for cls in (ReplayedRequest, WrongNonce, WrongSerial)
}


class _HandshakeRefused(UpstreamUnavailable):
    """The connection failed after TCP connected, with our client certificate presented."""


class MasaClient:
    """One connection pool to any MASA; ``close()`` when the registrar stops."""

    def __init__(
        self,
        identity: Identity,
        *,
        trust: Sequence[x509.Certificate],
        timeout: float,
        retry_after: int,
    ) -> None:
        self._ssl: ssl.SSLContext = client_context(identity, trust=trust)
        self._anonymous_ssl: ssl.SSLContext = client_context(None, trust=trust)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retry_after = retry_after
        self._session: aiohttp.ClientSession | None = None
        self._anonymous: aiohttp.ClientSession | None = None

    async def request_voucher(self, masa_url: str, registrar_request: bytes) -> bytes:
        """POST the registrar voucher-request; the voucher CMS back (RFC 8995 §5.5)."""
        url = f"{masa_url}/.well-known/brski/requestvoucher"
        try:
            return await self._post(url, registrar_request, accept=MEDIA_TYPE_VOUCHER_CMS)
        except _HandshakeRefused:
            # A MASA that verifies client certificates against domains it knows resets the
            # handshake of a new domain's registrar; RFC 8995 §5.5.4 lets it vouch anyway.
            log.info("MASA %s refused our client certificate; asking without it", url)
            return await self._post(
                url, registrar_request, accept=MEDIA_TYPE_VOUCHER_CMS, anonymous=True
            )

    async def request_audit_log(self, masa_url: str, registrar_request: bytes) -> bytes:
        """POST the same voucher-request to /requestauditlog; JSON back (RFC 8995 §5.8.1)."""
        url = f"{masa_url}/.well-known/brski/requestauditlog"
        try:
            return await self._post(url, registrar_request, accept="application/json")
        except _HandshakeRefused as exc:
            raise UpstreamUnavailable(
                f"the MASA at {url} refused the registrar's TLS client certificate and serves "
                "audit logs only to an authenticated registrar of the device's domain (RFC "
                "8995 §5.8.1): the certificate must chain to the domain CA and allow "
                "id-kp-clientAuth (masa-client.pem and masa-client.key in the registrar "
                "folder give one)",
                retry_after=self._retry_after,
            ) from exc

    async def close(self) -> None:
        for session in (self._session, self._anonymous):
            if session is not None:
                await session.close()
        self._session = self._anonymous = None

    def _session_for(self, anonymous: bool) -> aiohttp.ClientSession:
        """One handshake per request (``force_close``): a MASA that learned our domain from
        the voucher it just issued asks for the client certificate only on a new connection
        (the audit log needs it, RFC 8995 §5.8.1)."""
        if anonymous:
            if self._anonymous is None:
                self._anonymous = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(ssl=self._anonymous_ssl, force_close=True),
                    timeout=self._timeout,
                )
            return self._anonymous
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, force_close=True),
                timeout=self._timeout,
            )
        return self._session

    def _unreachable(
        self, url: str, exc: Exception, kind: type[UpstreamUnavailable] | None
    ) -> UpstreamUnavailable:
        log.warning("MASA %s unreachable: %s", url, exc)
        return (kind or UpstreamUnavailable)(
            f"the MASA at {url} is unreachable ({type(exc).__name__}: {exc}); "
            "the request is kept, retry later",
            retry_after=self._retry_after,
        )

    async def _post(self, url: str, body: bytes, *, accept: str, anonymous: bool = False) -> bytes:
        session = self._session_for(anonymous)
        headers = {"Content-Type": MEDIA_TYPE_VOUCHER_CMS, "Accept": accept}
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                data = await resp.content.read(MAX_RESPONSE_BYTES + 1)
                status, media = resp.status, resp.content_type
                retry_after = resp.headers.get("Retry-After", "")
        except (
            aiohttp.ClientSSLError,
            aiohttp.ClientOSError,
            aiohttp.ServerDisconnectedError,
        ) as exc:
            # Connected, then reset, alerted or closed: with TLS 1.3 a client certificate the
            # MASA cannot verify fails its side of the handshake, before any request is read.
            refused = not anonymous and not isinstance(exc, aiohttp.ClientConnectorError)
            raise self._unreachable(url, exc, _HandshakeRefused if refused else None) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise self._unreachable(url, exc, None) from exc
        text = data[:500].decode("utf-8", "replace").strip()
        if status >= 500:
            wait = int(retry_after) if retry_after.isdigit() else self._retry_after
            raise UpstreamUnavailable(
                f"the MASA at {url} answered {status}: {text}", retry_after=wait
            )
        if status in _REFUSALS:
            refusal = _BY_REASON.get(text.split(":", 1)[0], _REFUSALS[status])
            if refusal.http_status != status:
                refusal = _REFUSALS[status]
            raise refusal(f"the MASA refused ({status}): {text}")
        if status != 200:
            raise UpstreamInvalid(f"the MASA at {url} answered {status}: {text}")
        if len(data) > MAX_RESPONSE_BYTES:
            raise UpstreamInvalid(
                f"the MASA at {url} answered more than {MAX_RESPONSE_BYTES} bytes"
            )
        if media != accept:
            raise UpstreamInvalid(f"the MASA at {url} answered {media!r}, expected {accept!r}")
        return data

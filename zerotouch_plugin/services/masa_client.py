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
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retry_after = retry_after
        self._session: aiohttp.ClientSession | None = None

    async def request_voucher(self, masa_url: str, registrar_request: bytes) -> bytes:
        """POST the registrar voucher-request; the voucher CMS back (RFC 8995 §5.5)."""
        return await self._post(
            f"{masa_url}/.well-known/brski/requestvoucher",
            registrar_request,
            accept=MEDIA_TYPE_VOUCHER_CMS,
        )

    async def request_audit_log(self, masa_url: str, registrar_request: bytes) -> bytes:
        """POST the same voucher-request to /requestauditlog; JSON back (RFC 8995 §5.8.1)."""
        return await self._post(
            f"{masa_url}/.well-known/brski/requestauditlog",
            registrar_request,
            accept="application/json",
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(self, url: str, body: bytes, *, accept: str) -> bytes:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl), timeout=self._timeout
            )
        headers = {"Content-Type": MEDIA_TYPE_VOUCHER_CMS, "Accept": accept}
        try:
            async with self._session.post(url, data=body, headers=headers) as resp:
                data = await resp.content.read(MAX_RESPONSE_BYTES + 1)
                status, media = resp.status, resp.content_type
                retry_after = resp.headers.get("Retry-After", "")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.warning("MASA %s unreachable: %s", url, exc)
            raise UpstreamUnavailable(
                f"the MASA at {url} is unreachable ({type(exc).__name__}: {exc}); "
                "the request is kept, retry later",
                retry_after=self._retry_after,
            ) from exc
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

"""The registrar's HTTPS client for the MASA (RFC 8995 §5.5, §5.8.1).

TLS with the registrar certificate as client certificate, the MASA verified against the
configured anchors. Transport faults become ``UpstreamUnavailable`` (the registrar answers
503 + Retry-After, or from escrow, and the pledge retries); the MASA's own refusals keep
their meaning. A call is tried again with backoff within one ``timeout`` in all, so a
pledge's connection is never held longer; a circuit breaker per MASA (``roles.circuit``)
stops calling a MASA that keeps failing and lets one trial through after a cooldown.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from cryptography import x509

from zerotouch_plugin._text import is_decimal
from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.artifacts.cms import MEDIA_TYPE_VOUCHER_CMS
from zerotouch_plugin.config import RegistrarConfig
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
from zerotouch_plugin.roles.backoff import Backoff
from zerotouch_plugin.roles.circuit import Breakers, BreakerState
from zerotouch_plugin.services._http import read_at_most
from zerotouch_plugin.services._tls import client_context

__all__ = ["MAX_RESPONSE_BYTES", "MasaClient", "OutagePolicy", "outage_policy"]

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


# A retry within one call: short, so that the attempts fit in masa_timeout.
_RETRY = Backoff(initial=0.2, factor=2.0, maximum=2.0, jitter=0.5)
_COOLDOWN = Backoff(initial=2.0, factor=2.0, maximum=60.0, jitter=0.2)
# Seconds an idle kept-alive connection to a MASA stays open: below a server's usual idle
# limit (10 s for ours, header_timeout), so the client closes first.
_KEEPALIVE_SECONDS = 4.0


@dataclass(frozen=True)
class OutagePolicy:
    """How the client rides out a MASA outage (RegistrarConfig masa_* keys)."""

    attempts: int = 3
    retry: Backoff = _RETRY
    breaker_threshold: int = 3
    breaker_cooldown: Backoff = _COOLDOWN
    gone: bool = False  # the MASA is out of business: never call it


def _masa_key(url: str) -> str:
    """The breaker's key: scheme and authority of the MASA (one server, every path)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class MasaClient:
    """Kept-alive connections to any MASA, with the registrar's client certificate;
    ``close()`` when the registrar stops."""

    def __init__(
        self,
        identity: Identity,
        *,
        trust: Sequence[x509.Certificate],
        timeout: float,
        retry_after: int,
        outage: OutagePolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ssl: ssl.SSLContext = client_context(identity, trust=trust)
        self._anonymous_ssl: ssl.SSLContext = client_context(None, trust=trust)
        self._budget = timeout
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retry_after = retry_after
        self._outage = outage or OutagePolicy()
        self._breakers = Breakers(self._outage.breaker_threshold, self._outage.breaker_cooldown)
        self._clock = clock
        self._pooled: aiohttp.ClientSession | None = None
        self._fresh: aiohttp.ClientSession | None = None
        self._anonymous: aiohttp.ClientSession | None = None
        self._retired: list[aiohttp.ClientSession] = []
        self._vouched_by: set[str] = set()

    def breaker_states(self) -> dict[str, BreakerState]:
        """The circuit of each MASA called so far (metrics, admin API)."""
        return self._breakers.states()

    async def request_voucher(self, masa_url: str, registrar_request: bytes) -> bytes:
        """POST the registrar voucher-request; the voucher CMS back (RFC 8995 §5.5)."""
        url = f"{masa_url}/.well-known/brski/requestvoucher"

        async def call() -> bytes:
            try:
                voucher = await self._post(url, registrar_request, accept=MEDIA_TYPE_VOUCHER_CMS)
            except _HandshakeRefused:
                # A MASA that verifies client certificates against domains it knows resets
                # the handshake of a new domain's registrar; RFC 8995 §5.5.4 lets it vouch.
                log.info("MASA %s refused our client certificate; asking without it", url)
                voucher = await self._post(
                    url, registrar_request, accept=MEDIA_TYPE_VOUCHER_CMS, anonymous=True
                )
            self._vouched(url)
            return voucher

        return await self._guarded(url, call)

    async def request_audit_log(self, masa_url: str, registrar_request: bytes) -> bytes:
        """POST the same voucher-request to /requestauditlog; JSON back (RFC 8995 §5.8.1)."""
        url = f"{masa_url}/.well-known/brski/requestauditlog"
        try:
            return await self._guarded(
                url, lambda: self._post(url, registrar_request, accept="application/json")
            )
        except _HandshakeRefused as exc:
            raise UpstreamUnavailable(
                f"the MASA at {url} refused the registrar's TLS client certificate and serves "
                "audit logs only to an authenticated registrar of the device's domain (RFC "
                "8995 §5.8.1): the certificate must chain to the domain CA and allow "
                "id-kp-clientAuth (masa-client.pem and masa-client.key in the registrar "
                "folder give one)",
                retry_after=self._retry_after,
            ) from exc

    async def _guarded(self, url: str, call: Callable[[], Awaitable[bytes]]) -> bytes:
        """``call`` through the MASA's circuit breaker, tried again with backoff while the
        MASA is unreachable and the whole stays within the timeout; a client certificate
        the MASA refused is an answer, returned to the caller at once."""
        if self._outage.gone:
            raise UpstreamUnavailable(
                f"the MASA at {url} is configured as gone (masa_gone): vouchers come from "
                "escrow only",
                retry_after=self._retry_after,
            )
        breaker = self._breakers[_masa_key(url)]
        deadline = self._clock() + self._budget
        attempt = 0
        while True:
            wait = breaker.allow(self._clock())
            if wait > 0:
                raise UpstreamUnavailable(
                    f"the MASA at {url} failed {self._outage.breaker_threshold} calls in a row "
                    f"and is not called again for {wait:.0f} s (circuit open)",
                    retry_after=max(1, math.ceil(wait)),
                )
            attempt += 1
            try:
                data = await self._within(url, call, deadline - self._clock())
            except _HandshakeRefused:
                breaker.succeeded()
                raise
            except UpstreamUnavailable:
                pause = self._outage.retry.delay(attempt, random.random())
                if (
                    attempt >= self._outage.attempts
                    or breaker.state is not BreakerState.CLOSED  # a trial is tried once
                    or self._clock() + pause >= deadline
                ):
                    breaker.failed(self._clock(), random.random())  # one failed call
                    raise
                await asyncio.sleep(pause)
                continue
            except ZerotouchError:
                breaker.succeeded()  # the MASA answered, with a refusal
                raise
            breaker.succeeded()
            return data

    async def _within(
        self, url: str, call: Callable[[], Awaitable[bytes]], seconds: float
    ) -> bytes:
        try:
            return await asyncio.wait_for(call(), timeout=max(seconds, 0.001))
        except TimeoutError as exc:
            raise self._unreachable(url, exc, None) from exc

    async def close(self) -> None:
        for session in (self._pooled, self._fresh, self._anonymous, *self._retired):
            if session is not None:
                await session.close()
        self._pooled = self._fresh = self._anonymous = None
        self._retired = []

    def _vouched(self, url: str) -> None:
        """After the first voucher from a MASA: a MASA that learned our domain from it asks
        for the client certificate only on connections opened from now on (the audit log
        needs it, RFC 8995 §5.8.1), so the kept-alive connections opened before are no
        longer used (closed with the client)."""
        key = _masa_key(url)
        if key in self._vouched_by:
            return
        self._vouched_by.add(key)
        if self._pooled is not None:
            self._retired.append(self._pooled)
            self._pooled = None

    def _session_for(self, anonymous: bool, fresh: bool) -> aiohttp.ClientSession:
        """Calls with the client certificate share kept-alive connections (one handshake for
        many calls); ``fresh``: a new connection for this call alone, as anonymous calls
        always get."""
        if anonymous:
            if self._anonymous is None:
                self._anonymous = self._new_session(self._anonymous_ssl, keep_alive=False)
            return self._anonymous
        if fresh:
            if self._fresh is None:
                self._fresh = self._new_session(self._ssl, keep_alive=False)
            return self._fresh
        if self._pooled is None:
            self._pooled = self._new_session(self._ssl, keep_alive=True)
        return self._pooled

    def _new_session(self, context: ssl.SSLContext, *, keep_alive: bool) -> aiohttp.ClientSession:
        connector = (
            aiohttp.TCPConnector(ssl=context, keepalive_timeout=_KEEPALIVE_SECONDS)
            if keep_alive
            else aiohttp.TCPConnector(ssl=context, force_close=True)
        )
        return aiohttp.ClientSession(connector=connector, timeout=self._timeout)

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
        headers = {"Content-Type": MEDIA_TYPE_VOUCHER_CMS, "Accept": accept}
        fresh = anonymous
        while True:
            session = self._session_for(anonymous, fresh)
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    data = await read_at_most(resp.content, MAX_RESPONSE_BYTES)
                    status, media = resp.status, resp.content_type
                    retry_after = resp.headers.get("Retry-After", "")
                break
            except aiohttp.ClientConnectorError as exc:
                raise self._unreachable(url, exc, None) from exc
            except (
                aiohttp.ClientSSLError,
                aiohttp.ClientOSError,
                aiohttp.ServerDisconnectedError,
            ) as exc:
                if not fresh:
                    # a kept-alive connection the MASA closed meanwhile, or a refused
                    # handshake: told apart on a new connection
                    fresh = True
                    continue
                # Connected, then reset, alerted or closed: with TLS 1.3 a client certificate
                # the MASA cannot verify fails its side of the handshake, before any request
                # is read.
                refused = _HandshakeRefused if not anonymous else None
                raise self._unreachable(url, exc, refused) from exc
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                raise self._unreachable(url, exc, None) from exc
        text = data[:500].decode("utf-8", "replace").strip()
        if status >= 500:
            wait = int(retry_after) if is_decimal(retry_after) else self._retry_after
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


def outage_policy(config: RegistrarConfig) -> OutagePolicy:
    """The registrar's masa_* keys as the client's outage policy."""
    return OutagePolicy(
        attempts=config.masa_attempts,
        breaker_threshold=config.masa_breaker_threshold,
        breaker_cooldown=Backoff(
            initial=config.masa_breaker_cooldown,
            factor=2.0,
            maximum=config.masa_breaker_max_cooldown,
            jitter=0.2,
        ),
        gone=config.masa_gone,
    )

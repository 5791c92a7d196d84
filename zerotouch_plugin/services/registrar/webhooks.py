"""Webhooks: every device event POSTed to each configured receiver, in order, exactly as the
events table holds it, until the receiver answers 2xx.

One task per webhook (``[[webhooks]]`` of registrar.toml). It reads the events after its
cursor, the id of the last event the receiver acknowledged, kept in the database
(``registrar_webhook_cursors``), so a restarted registrar resumes where the last one stopped;
a new webhook starts at the newest event. Registrar processes sharing one database take
turns by a lease on the cursor: one delivers, and another takes over when its lease expires
or it shuts down. A refused or failed delivery is retried after the
one backoff schedule (roles/backoff.py), forever: the order is kept and nothing is skipped
(events past retention excepted). The body is the event's JSON; ``X-Zerotouch-Signature:
sha256=HEX`` is its HMAC-SHA256 under the webhook's secret, so the receiver can tell the
registrar's posts from anyone's (compare in constant time, deduplicate by ``id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import socket
import ssl
from datetime import timedelta
from pathlib import Path

import aiohttp

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.config import WebhookConfig
from zerotouch_plugin.errors import ConfigError, ZerotouchError
from zerotouch_plugin.roles.backoff import Backoff
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services._tls import client_context
from zerotouch_plugin.services.registrar.common import in_thread, utc_now
from zerotouch_plugin.services.registrar.events import CommitWatch
from zerotouch_plugin.store.registrar import EventRow, RegistrarRepository
from zerotouch_plugin.store.registrar.events import EVENT_TYPES

__all__ = ["SIGNATURE_HEADER", "WebhookWorker", "load_webhooks", "sign"]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Zerotouch-Signature"
_PAGE = 100
_POLL = 5.0  # seconds between looks for events other registrar processes wrote
_MIN_SECRET = 16  # bytes


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value for ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def _ssl_context(hook: WebhookConfig, folder: Path) -> ssl.SSLContext | None:
    """TLS for an https receiver: the configured CA or the system's, the client identity."""
    if not hook.url.startswith("https:"):
        return None
    try:
        identity = (
            certfiles.load_identity(folder / hook.cert, folder / hook.key)
            if hook.cert is not None and hook.key is not None
            else None
        )
        if hook.ca is not None:
            trust = certs.load_certs((folder / hook.ca).read_bytes())
            return client_context(identity, trust=trust)
        ctx = ssl.create_default_context()
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if hook.cert is not None and hook.key is not None:
            ctx.load_cert_chain(folder / hook.cert, folder / hook.key)
        return ctx
    except (OSError, ValueError, ssl.SSLError, ZerotouchError) as exc:
        raise ConfigError(f"webhook {hook.name}: cannot load its TLS files: {exc}") from exc


def _secret(hook: WebhookConfig, folder: Path) -> bytes:
    path = folder / hook.secret_file
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"webhook {hook.name}: cannot read secret_file {path}: {exc}") from exc
    if len(secret) < _MIN_SECRET:
        raise ConfigError(
            f"webhook {hook.name}: the secret in {path} is shorter than {_MIN_SECRET} bytes"
        )
    return secret


class WebhookWorker:
    """Delivers the events to one receiver, in order, with retries."""

    def __init__(
        self,
        repo: RegistrarRepository,
        hook: WebhookConfig,
        *,
        secret: bytes,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.hook = hook
        self._repo = repo
        self._secret = secret
        self._ssl = ssl_context
        self._backoff = Backoff(
            initial=hook.backoff, factor=2.0, maximum=hook.max_backoff, jitter=0.2
        )
        self._watch = CommitWatch(f"webhook {hook.name}", _POLL, self._catch_up)
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"[-120:]
        # long enough for an attempt and the wait before the next, renewed at each
        self._lease = timedelta(seconds=2 * (hook.timeout + hook.max_backoff) + 10)
        self._session: aiohttp.ClientSession | None = None
        # clear while a POST is out and its acknowledgement not yet recorded
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self.cursor = 0
        self.delivered = 0
        self.failures = 0

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else False)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.hook.timeout), connector=connector
        )
        self._watch.start()

    async def close(self) -> None:
        """Stop after the delivery in flight, if any, is recorded (within ``timeout``), so a
        receiver does not get that event again from the next process."""
        self._stopping = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.hook.timeout + 1):
                await self._idle.wait()
        await self._watch.close()
        if self._session is not None:
            await self._session.close()
        try:
            await in_thread(self._repo.release_webhook, self.hook.name, self._owner)
        except ZerotouchError as exc:  # the lease then expires by itself
            log.warning("webhook %s: lease not released: %s", self.hook.name, exc.one_line())

    async def _claim(self) -> int | None:
        """This process's lease on the webhook, renewed, and its cursor; None while another
        registrar process sharing the database delivers to it."""
        now = utc_now()
        return await in_thread(
            self._repo.claim_webhook,
            self.hook.name,
            self._owner,
            now=now,
            lease_until=now + self._lease,
        )

    async def _catch_up(self) -> None:
        if self._session is None:
            raise RuntimeError(f"webhook {self.hook.name} is not started")
        while True:
            cursor = await self._claim()
            if cursor is None:
                return
            self.cursor = cursor
            batch = await in_thread(self._repo.events_after, cursor, limit=_PAGE)
            for event in batch:
                if self._stopping:
                    return
                if self.hook.types and event.type not in self.hook.types:
                    continue  # passed over: the cursor moves past it with the next record
                try:
                    if not await self._deliver(self._session, event):
                        return
                    if not await self._advance(event.id):
                        return
                finally:
                    self._idle.set()
            if batch and batch[-1].id > self.cursor and not await self._advance(batch[-1].id):
                return
            if len(batch) < _PAGE:
                return

    async def _advance(self, last_id: int) -> bool:
        """Record ``last_id`` as acknowledged (renewing the lease); False if it was lost."""
        now = utc_now()
        done = await in_thread(
            self._repo.advance_webhook,
            self.hook.name,
            self._owner,
            last_id,
            now=now,
            lease_until=now + self._lease,
        )
        if done:
            self.cursor = last_id
        return done

    async def _deliver(self, session: aiohttp.ClientSession, event: EventRow) -> bool:
        """POST ``event`` until the receiver takes it (True); False when the lease went to
        another process meanwhile (it delivers from its cursor on)."""
        body = json.dumps(event.to_json_dict(), separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Zerotouch-Event": event.type,
            "X-Zerotouch-Event-Id": str(event.id),
            SIGNATURE_HEADER: sign(self._secret, body),
        }
        attempt = 0
        while True:
            attempt += 1
            self._idle.clear()
            try:
                # a redirect is an answer, not another receiver: the event and its signature
                # go to the configured URL only; the answer's body, whatever its size, is
                # left unread
                async with session.post(
                    self.hook.url, data=body, headers=headers, allow_redirects=False
                ) as answer:
                    if 200 <= answer.status < 300:
                        self.delivered += 1
                        return True
                    problem = f"answered {answer.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            self._idle.set()
            self.failures += 1
            wait = self._backoff.delay(attempt, secrets.randbelow(1 << 30) / (1 << 30))
            log.warning(
                "webhook %s: event %d not delivered (attempt %d, %s); retry in %.1f s",
                self.hook.name,
                event.id,
                attempt,
                problem,
                wait,
            )
            await asyncio.sleep(wait)
            if self._stopping:
                return False
            cursor = await self._claim()
            if cursor is None or cursor >= event.id:
                return False


def load_webhooks(
    repo: RegistrarRepository, hooks: tuple[WebhookConfig, ...], folder: Path
) -> list[WebhookWorker]:
    """A worker per configured webhook; ConfigError for a secret or TLS file that cannot be
    used, before the registrar listens."""
    for hook in hooks:
        unknown = sorted(set(hook.types) - set(EVENT_TYPES))
        if unknown:
            raise ConfigError(
                f"webhook {hook.name}: unknown event types {', '.join(unknown)}; "
                f"known: {', '.join(EVENT_TYPES)}"
            )
    return [
        WebhookWorker(
            repo, hook, secret=_secret(hook, folder), ssl_context=_ssl_context(hook, folder)
        )
        for hook in hooks
    ]

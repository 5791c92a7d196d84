"""The revoked client certificates (``registrar revoke --fingerprint``) as a running registrar
process holds them: reloaded from the database every ``REVOCATIONS_RELOAD`` by a task of its
own, so the admin API and the console check a certificate against a set in memory, not with a
query per request (roles/client_certs.py says how long a revocation may take to arrive).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web
from cryptography import x509

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.errors import PolicyRefused, StorageUnavailable, ZerotouchError
from zerotouch_plugin.roles.client_certs import (
    REVOCATIONS_MAX_AGE,
    REVOCATIONS_RELOAD,
    RevokedClients,
)
from zerotouch_plugin.services._tasks import cancel_task
from zerotouch_plugin.services.registrar.common import in_thread, utc_now
from zerotouch_plugin.store.registrar import RegistrarRepository

__all__ = ["REVOCATIONS_KEY", "ClientRevocations", "refuse_revoked"]

log = logging.getLogger(__name__)


class ClientRevocations:
    """The revoked client certificates this process knows of, kept current by ``start``."""

    def __init__(self, repo: RegistrarRepository) -> None:
        self._repo = repo
        self._known: RevokedClients | None = None
        self._task: asyncio.Task[None] | None = None

    async def reload(self) -> None:
        began = utc_now()  # a revocation committed before the read began is in it
        fingerprints = await in_thread(self._repo.revoked_client_fingerprints, now=began)
        self._known = RevokedClients(fingerprints, began)

    async def start(self) -> None:
        with contextlib.suppress(ZerotouchError):  # _run tries again, and logs it
            await self.reload()
        self._task = asyncio.create_task(self._run(), name="client-revocations")

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel_task(task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(REVOCATIONS_RELOAD.total_seconds())
            try:
                await self.reload()
            except ZerotouchError as exc:
                log.warning("reloading revoked client certificates: %s", exc.one_line())
            except Exception:  # a bug must not freeze the set for good: logged, next round
                log.exception("reloading revoked client certificates failed")

    def check(self, cert: x509.Certificate) -> None:
        """403 for a revoked client certificate; 503 while the set is too old to decide (the
        database has not answered for ``REVOCATIONS_MAX_AGE``)."""
        known = self._known
        if known is None or not known.current(utc_now()):
            raise StorageUnavailable(
                "the registrar cannot read which client certificates are revoked "
                f"(not for {int(REVOCATIONS_MAX_AGE.total_seconds())} s)",
                retry_after=int(REVOCATIONS_RELOAD.total_seconds()),
            )
        fingerprint = certs.fingerprint(cert)
        if known.revoked(fingerprint):
            raise PolicyRefused(f"the client certificate {fingerprint} was revoked")


REVOCATIONS_KEY = web.AppKey("registrar_client_revocations", ClientRevocations)


def refuse_revoked(request: web.Request, cert: x509.Certificate) -> None:
    """``ClientRevocations.check`` of the running registrar."""
    request.app[REVOCATIONS_KEY].check(cert)

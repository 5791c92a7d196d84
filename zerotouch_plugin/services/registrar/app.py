"""The registrar's HTTPS service: the route table and the aiohttp application that serves
BRSKI (RFC 8995 §5), EST (RFC 7030 + RFC 8951) and the admin API.

Every request but GET /.well-known/est/cacerts (RFC 7030 §4.1.1) must come with a client
certificate: an IDevID from a configured manufacturer CA, or a certificate from the registrar's
own domain CA (an LDevID for re-enrollment, an admin or NMS certificate); ``ROUTES`` says which
routes are anonymous and ``services/_http.py`` refuses the rest without one. The hand-off
worker, the escrow renewal, the event reader and the webhooks start with the application;
the event streams end when it shuts down, and the registrar closes with it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from zerotouch_plugin.roles import registrar as role
from zerotouch_plugin.services._http import make_app
from zerotouch_plugin.services.registrar.admin import (
    HUB_KEY,
    METRICS_KEY,
    admin_approve,
    admin_delete_address,
    admin_delete_day0,
    admin_delete_voucher,
    admin_device,
    admin_devices,
    admin_events,
    admin_get_day0,
    admin_get_voucher,
    admin_handoff,
    admin_metrics,
    admin_openapi,
    admin_put_address,
    admin_put_day0,
    admin_put_voucher,
    admin_remove_policy,
    set_policy,
)
from zerotouch_plugin.services.registrar.audit import PREFETCH_KEY, AuditPrefetch
from zerotouch_plugin.services.registrar.brski import enroll_status, request_voucher, voucher_status
from zerotouch_plugin.services.registrar.common import APP_KEY
from zerotouch_plugin.services.registrar.console import CONSOLE_ROUTES, add_security_headers
from zerotouch_plugin.services.registrar.escrow import EscrowRenewal, VendorCollector
from zerotouch_plugin.services.registrar.est import (
    cacerts,
    csrattrs,
    simple_enroll,
    simple_reenroll,
)
from zerotouch_plugin.services.registrar.events import EventHub
from zerotouch_plugin.services.registrar.loader import Registrar
from zerotouch_plugin.services.registrar.metrics import registrar_metrics
from zerotouch_plugin.services.registrar.revocations import REVOCATIONS_KEY, ClientRevocations
from zerotouch_plugin.services.registrar.webhooks import load_webhooks

__all__ = ["ROUTES", "STREAMING", "Route", "registrar_app"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    """One endpoint. ``anonymous`` routes may be used without a TLS client certificate;
    every other one is refused 401 without one before its handler runs."""

    method: str
    path: str
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    anonymous: bool = False


ROUTES: tuple[Route, ...] = (
    Route("POST", "/.well-known/brski/requestvoucher", request_voucher),
    Route("POST", "/.well-known/brski/voucher_status", voucher_status),
    Route("POST", "/.well-known/brski/enrollstatus", enroll_status),
    # RFC 7030 §4.1.1: the CA certificates SHOULD be available without a client certificate
    Route("GET", "/.well-known/est/cacerts", cacerts, anonymous=True),
    Route("GET", "/.well-known/est/csrattrs", csrattrs),
    Route("POST", "/.well-known/est/simpleenroll", simple_enroll),
    Route("POST", "/.well-known/est/simplereenroll", simple_reenroll),
    Route("GET", "/admin/devices", admin_devices),
    Route("GET", "/admin/devices/{serial}", admin_device),
    Route("POST", "/admin/devices/{serial}/allow", set_policy(role.PolicyDecision.ALLOW)),
    Route("POST", "/admin/devices/{serial}/deny", set_policy(role.PolicyDecision.DENY)),
    Route("POST", "/admin/devices/{serial}/approve", admin_approve),
    Route("DELETE", "/admin/devices/{serial}/policy", admin_remove_policy),
    Route("GET", "/admin/devices/{serial}/day0", admin_get_day0),
    Route("PUT", "/admin/devices/{serial}/day0", admin_put_day0),
    Route("DELETE", "/admin/devices/{serial}/day0", admin_delete_day0),
    Route("POST", "/admin/devices/{serial}/handoff", admin_handoff),
    Route("PUT", "/admin/devices/{serial}/address", admin_put_address),
    Route("DELETE", "/admin/devices/{serial}/address", admin_delete_address),
    Route("PUT", "/admin/devices/{serial}/voucher", admin_put_voucher),
    Route("GET", "/admin/devices/{serial}/voucher", admin_get_voucher),
    Route("DELETE", "/admin/devices/{serial}/voucher", admin_delete_voucher),
    Route("GET", "/admin/day0/default", admin_get_day0),
    Route("PUT", "/admin/day0/default", admin_put_day0),
    Route("DELETE", "/admin/day0/default", admin_delete_day0),
    Route("GET", "/admin/events", admin_events),
    Route("GET", "/admin/openapi.json", admin_openapi),
    Route("GET", "/metrics", admin_metrics),
    # the console: a browser may come without a certificate; console/auth.py decides
    *(Route(method, path, handler, anonymous=True) for method, path, handler in CONSOLE_ROUTES),
)

# Routes whose answer is a stream: no latency histogram.
STREAMING = frozenset({"/admin/events", "/console/events"})


def registrar_app(registrar: Registrar) -> web.Application:
    """The aiohttp application; serve it with ``tls_context(registrar)``."""
    app = make_app(
        log,
        realm="zerotouch registrar",
        body_limit=registrar.config.max_body_bytes,
        anonymous=[(r.method, r.path) for r in ROUTES if r.anonymous],
    )
    hub = EventHub(registrar.repo, registrar.config.events)
    webhooks = load_webhooks(registrar.repo, registrar.config.webhooks, registrar.folder)
    metrics = registrar_metrics(registrar.repo, hub, webhooks, streaming=STREAMING)
    renewal = EscrowRenewal(registrar)
    metrics.registry.register(VendorCollector(registrar))
    metrics.install(app)
    app.on_response_prepare.append(add_security_headers)
    app[APP_KEY] = registrar
    app[HUB_KEY] = hub
    app[METRICS_KEY] = metrics
    app[PREFETCH_KEY] = prefetch = AuditPrefetch(registrar)
    app[REVOCATIONS_KEY] = revocations = ClientRevocations(registrar.repo)
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)

    async def _start(_: web.Application) -> None:
        await revocations.start()
        registrar.handoff.start()
        renewal.start()
        await hub.start()
        for hook in webhooks:
            await hook.start()

    async def _shutdown(_: web.Application) -> None:
        await renewal.close()
        await revocations.close()
        await prefetch.close()
        await hub.close()
        for hook in webhooks:
            await hook.close()

    async def _close(_: web.Application) -> None:
        await registrar.close()

    app.on_startup.append(_start)
    app.on_shutdown.append(_shutdown)
    app.on_cleanup.append(_close)
    return app

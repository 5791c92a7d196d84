"""The registrar service, one concern per module: ``loader`` (identities, trust, database,
MASA client and hand-off worker from a registrar folder), ``brski`` (RFC 8995 §5), ``est``
(RFC 7030), ``admin`` (the admin API) and ``app`` (route table and aiohttp application)."""

from zerotouch_plugin.services.registrar.app import ROUTES, Route, registrar_app
from zerotouch_plugin.services.registrar.est import CSR_ATTRIBUTES
from zerotouch_plugin.services.registrar.loader import (
    Registrar,
    day0_schema,
    load_context,
    load_registrar,
    tls_context,
)

__all__ = [
    "CSR_ATTRIBUTES",
    "ROUTES",
    "Registrar",
    "Route",
    "day0_schema",
    "load_context",
    "load_registrar",
    "registrar_app",
    "tls_context",
]

"""RESTCONF (RFC 8040) over HTTPS with mutual TLS, on the device's datastores: ``app`` is the
aiohttp server, ``wire`` what it sends and accepts; which node a path names and what the GET
query parameters keep are decided in ``device/restconf_path.py`` and
``device/restconf_query.py``."""

from __future__ import annotations

from zerotouch_plugin.services.restconf.app import (
    RESTCONF_SESSION_ID,
    bound_port,
    restconf_app,
    start_restconf,
)
from zerotouch_plugin.services.restconf.wire import (
    CAPABILITIES,
    MEDIA_JSON,
    MEDIA_XML,
    WWW_AUTHENTICATE,
)

__all__ = [
    "CAPABILITIES",
    "MEDIA_JSON",
    "MEDIA_XML",
    "RESTCONF_SESSION_ID",
    "WWW_AUTHENTICATE",
    "bound_port",
    "restconf_app",
    "start_restconf",
]

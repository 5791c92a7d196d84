"""Finders of registrars the device is told about rather than finds on the link: those of
its configuration (``--registrar URL``, method ``configured``) and the manufacturer's
well-known registrar (method ``vendor``, RFC 8995 §2.7: the last resort).

A vendor registrar that is not the owner's may redirect the pledge's voucher-request to the
owner's registrar; the pledge machine follows one redirect to another origin at most
(RFC 8995 §5.6), so nothing more is needed here.
"""

from __future__ import annotations

from collections.abc import Sequence

from zerotouch_plugin.roles.discovery import Candidate, Method, candidate_from_url

__all__ = ["UrlFinder"]


class UrlFinder:
    """Hands out the candidates of fixed https URLs, in the order given, at once."""

    def __init__(self, method: Method, urls: Sequence[str]) -> None:
        if method not in (Method.CONFIGURED, Method.VENDOR):
            raise ValueError(f"{method} candidates are found on the link, not configured")
        self.method: Method = method
        self.candidates = tuple(candidate_from_url(url, method) for url in urls)

    async def find(self, *, timeout: float) -> Sequence[Candidate]:
        return self.candidates

"""Voucher-request JSON bodies (RFC 8995 §3) for parser tests: a valid base plus changes."""

from __future__ import annotations

import base64
import json
from typing import Any

from zerotouch_plugin.artifacts.voucher import new_nonce

VR = "ietf-voucher-request:voucher"


def voucher_request_json(cert_leaf: str, cert_value: bytes, **changes: Any) -> bytes:
    """A voucher-request carrying ``cert_leaf`` (the pledge's proximity-registrar-cert or
    the registrar's prior-signed-voucher-request); a change to None drops that leaf."""
    body: dict[str, Any] = {
        "created-on": "2026-11-26T12:00:00Z",
        "assertion": "proximity",
        "serial-number": "SN-1",
        "nonce": new_nonce(b"0123456789abcdef"),
        cert_leaf: base64.b64encode(cert_value).decode(),
    }
    body.update(changes)
    return json.dumps({VR: {k: v for k, v in body.items() if v is not None}}).encode()

"""What the SZTP tests set up with the real CLIs: an ownership voucher signed by a vendor
folder's MASA key (``zerotouch voucher sign``) and a bootstrap server folder that onboards
one device (``zerotouch sztp init``, ``response set``, ``devices --set``)."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from tests.support.processes import run_cli
from zerotouch_plugin.artifacts import certs

__all__ = ["onboarding_server", "ownership_voucher"]


def ownership_voucher(vendor: Path, folder: Path, serial: str, *, pinned: Path) -> Path:
    """A nonceless voucher (expires-on ten years ahead) for ``serial`` pinning the first
    certificate of ``pinned``, written to ``folder/SERIAL.cms``."""
    anchor = certs.load_certs(pinned.read_bytes())[0]
    payload = {
        "ietf-voucher:voucher": {
            "created-on": "2026-01-01T00:00:00Z",
            "expires-on": "2036-01-01T00:00:00Z",
            "assertion": "verified",
            "serial-number": serial,
            "pinned-domain-cert": base64.b64encode(anchor.public_bytes(Encoding.DER)).decode(),
        }
    }
    (folder / "v.json").write_text(json.dumps(payload))
    out = folder / f"{serial}.cms"
    run_cli(
        "voucher", "sign", "--payload", folder / "v.json",
        "--cert", vendor / "masa-signer.pem", "--key", vendor / "masa-signer.key",
        "--out", out,
    )  # fmt: skip
    return out


def onboarding_server(
    vendor: Path,
    folder: Path,
    serial: str,
    config: bytes,
    *,
    hosts: Sequence[str] = (),
    response: Sequence[str] = (),
    pinned: Path | None = None,
) -> Path:
    """A server folder whose response ``onboard`` merges ``config`` (plus ``response``
    options of ``sztp response set``), given to ``serial`` with a voucher pinning the
    server's owner CA (or ``pinned``)."""
    extra = [arg for host in hosts for arg in ("--host", host)]
    run_cli("sztp", "init", "--dir", folder, "--manufacturer-ca", vendor / "ca.pem", *extra)
    (folder / "config.json").write_bytes(config)
    run_cli("sztp", "response", "set", "--dir", folder, "--name", "onboard",
            "--config", folder / "config.json", "--handling", "merge", *response)  # fmt: skip
    voucher = ownership_voucher(vendor, folder, serial, pinned=pinned or folder / "owner-ca.pem")
    run_cli("sztp", "devices", "--dir", folder, "--set", serial, "--response", "onboard",
            "--voucher", voucher)  # fmt: skip
    return folder

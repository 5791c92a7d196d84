"""The domain identity on disk in a device (or pledge) folder, with one commit point.

A bootstrap leaves four files: the LDevID key and certificate chain, the voucher that
authorised it, and the domain trust anchors. Each file is replaced atomically, but a crash
between files could leave a mixed set; so ``domain-ca.pem`` is written last and removed
first: it is the commit point. Without it, the other files are leftovers of an interrupted
install (or forget) and ``discard_incomplete`` removes them at start, so the device simply
bootstraps again.

An install costs at most six fsyncs (seven when it removes an old commit point), not a file
and a folder fsync per file: the new files are written to temporary names and fsynced
together, and the folder is fsynced once when the parts are in place and once when the
commit point is.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from zerotouch_plugin._files import discard, stage, sync_folder
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.artifacts.certs import PrivateKey

__all__ = [
    "CA_FILE",
    "CERT_FILE",
    "KEY_FILE",
    "VOUCHER_FILE",
    "discard_incomplete",
    "forget_domain",
    "write_domain",
]

log = logging.getLogger(__name__)

KEY_FILE = "ldevid.key"
CERT_FILE = "ldevid.pem"
VOUCHER_FILE = "voucher.cms"
CA_FILE = "domain-ca.pem"  # the commit point: written last, removed first
_REQUIRED = (KEY_FILE, CERT_FILE)  # with CA_FILE, what a usable identity needs
_PARTS = (KEY_FILE, CERT_FILE, VOUCHER_FILE)


def write_domain(
    folder: Path,
    *,
    key: PrivateKey,
    chain: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    voucher_cms: bytes | None = None,
) -> None:
    """Store an identity: every new file is written and fsynced under a temporary name (a
    crash meanwhile leaves the old identity whole); then the old commit point goes (a crash
    from here on leaves no mixed set that looks complete), key, certificate chain (leaf
    first) and voucher take their names, and the trust anchors commit it.

    Without ``voucher_cms`` an existing ``voucher.cms`` is left alone: the pledge agent's
    store (device/agent_store.py) writes the voucher there before the host installs the
    identity, and a renewal keeps it, for the enrollstatus owed after a restart (RFC 8995
    §5.9.4)."""
    if not chain or not anchors:
        raise ValueError("an identity needs a certificate and at least one trust anchor")
    commit_point = folder / CA_FILE
    files = [(folder / KEY_FILE, certs.key_pem(key), 0o600)]
    files.append((folder / CERT_FILE, certs.certs_pem(chain), 0o644))
    if voucher_cms is not None:
        files.append((folder / VOUCHER_FILE, voucher_cms, 0o644))
    files.append((commit_point, certs.certs_pem(anchors), 0o644))
    staged = stage(files)
    try:
        if _remove(commit_point):
            sync_folder(folder)  # gone for good before any part is replaced
        for tmp, (path, _, _) in zip(staged[:-1], files[:-1], strict=True):
            os.replace(tmp, path)
        sync_folder(folder)  # the parts are in place before the commit point names them
        os.replace(staged[-1], commit_point)
    except BaseException:
        discard(staged)
        raise
    sync_folder(folder)


def _remove(path: Path) -> bool:
    """Remove ``path``; whether it was there. When it was not, there is no removal to make
    durable: this module fsyncs the folder after each removal of its own."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def forget_domain(folder: Path) -> list[str]:
    """Remove the identity, commit point first; the names of the files removed."""
    removed = [name for name in (CA_FILE, *_PARTS) if (folder / name).exists()]
    (folder / CA_FILE).unlink(missing_ok=True)
    sync_folder(folder)
    for name in _PARTS:
        (folder / name).unlink(missing_ok=True)
    sync_folder(folder)
    return removed


def discard_incomplete(folder: Path) -> list[str]:
    """At start: remove what an interrupted install or forget left behind (and temporary
    files of interrupted writes). A set without its commit point, or a commit point without
    key and certificate, is incomplete. The names of the files removed."""
    for name in (CA_FILE, *_PARTS):
        for stale in folder.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)
    committed = (folder / CA_FILE).exists()
    complete = committed and all((folder / name).exists() for name in _REQUIRED)
    if complete:
        return []
    present = [name for name in (CA_FILE, *_PARTS) if (folder / name).exists()]
    if not present:
        return []
    forget_domain(folder)
    log.warning(
        "%s: discarded an incomplete domain identity (%s), left by an interrupted install; "
        "the device bootstraps again",
        folder,
        ", ".join(present),
    )
    return present

"""The reference device's domain identity files under a cancelled install: the agent stops a
renewal (a task cancel) before a factory reset forgets the identity, but the thread writing
the renewed files cannot be stopped. The reset must still leave no identity on disk, or the
next start would bring the forgotten domain back (RFC 8995 §5.9.4: the domain trust is what
the device was told to forget)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.artifacts.signer import SigningIdentity, SoftwareSigner
from zerotouch_plugin.config import DeviceConfig
from zerotouch_plugin.device import domain_files
from zerotouch_plugin.services import device_server
from zerotouch_plugin.services.device_server import DeviceServer

NOW = datetime.now(UTC)
CA = certs.make_ca("Domain CA", now=NOW)


def ldevid(name: str) -> SigningIdentity:
    issued = certs.issue_tls_server(CA, name, hosts=["127.0.0.1"], now=NOW)
    return SigningIdentity(issued.cert, SoftwareSigner(issued.key), ())


async def test_a_factory_reset_after_a_cancelled_renewal_leaves_no_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = DeviceConfig()
    device = DeviceServer(tmp_path, config)
    await device.install_identity(ldevid("SN-1"), [CA.cert])
    assert device.has_domain_identity

    writing = threading.Event()

    def slow_write(folder: Path, **kw: Any) -> None:
        writing.set()
        time.sleep(0.3)  # a slow flash: the renewal's thread is still writing
        domain_files.write_domain(folder, **kw)

    monkeypatch.setattr(device_server, "write_domain", slow_write)
    renewal = asyncio.create_task(device.install_identity(ldevid("SN-1 renewed"), [CA.cert]))
    await asyncio.to_thread(writing.wait, 5)
    renewal.cancel()  # what the agent's restart-bootstrap does to its renewal task
    with contextlib.suppress(asyncio.CancelledError):
        await renewal
    await device.forget_identity()
    assert not device.has_domain_identity
    await asyncio.sleep(0.6)  # any write still running has ended by now
    await device.close()

    assert not (tmp_path / domain_files.CA_FILE).exists()
    assert not DeviceServer(tmp_path, config).has_domain_identity

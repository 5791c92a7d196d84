"""The demo's process runner, also used by the benchmarks: a service counts as started once
it printed its ``listening`` line, and a service that dies first fails the wait."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from zerotouch_plugin.demo.services import Services, StepFailed, free_port


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


async def test_serve_returns_the_address_the_service_printed(tmp_path: Path) -> None:
    services = Services(tmp_path)
    port = free_port()
    await services.run("vendor", "init", "--dir", "V", "--masa-url", f"https://127.0.0.1:{port}")
    try:
        masa, address = await services.serve(
            "masa", "masa", "masa", "serve", "--dir", "V", "--listen", f"127.0.0.1:{port}",
            deadline=time.monotonic() + 60,
        )  # fmt: skip
        assert address == f"https://127.0.0.1:{port}"
        assert masa.popen.poll() is None
    finally:
        statuses = services.stop()
    assert set(statuses) == {"masa"}


async def test_a_service_that_dies_before_listening_fails_the_wait(tmp_path: Path) -> None:
    services = Services(tmp_path)
    try:
        with pytest.raises(StepFailed, match="masa exited unexpectedly"):
            await services.serve(
                "masa", "masa", "masa", "serve", "--dir", "missing", "--listen", "127.0.0.1:0",
                deadline=time.monotonic() + 60,
            )  # fmt: skip
    finally:
        services.stop()

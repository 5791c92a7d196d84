"""HTTP basic authentication of devices at the bootstrap server (RFC 8572 §5.3)."""

from __future__ import annotations

import pytest

from zerotouch_plugin.config import hash_password
from zerotouch_plugin.errors import AccessDenied
from zerotouch_plugin.roles import sztp_server
from zerotouch_plugin.services.sztp.server import Authenticator, DeviceView, SztpConfig


class _View(DeviceView):
    """The device record as the database holds it now (the real view re-reads it each
    second)."""

    def __init__(self) -> None:
        self.device: sztp_server.DeviceRecord | None = None

    def set_password(self, password: str | None) -> None:
        stored = None if password is None else hash_password(password, salt=b"s", iterations=1)
        self.device = sztp_server.DeviceRecord("SN-1", password=stored)

    async def lookup(
        self, serial: str
    ) -> tuple[sztp_server.DeviceRecord | None, dict[str, sztp_server.Response]]:
        return self.device, {}


async def test_a_replaced_or_removed_password_stops_matching_at_once() -> None:
    view = _View()
    auth = Authenticator(SztpConfig(basic_auth=True), view)
    view.set_password("old")
    await auth._check("SN-1", "old")
    await auth._check("SN-1", "old")  # from the cache of verified passwords
    view.set_password("new")
    with pytest.raises(AccessDenied):
        await auth._check("SN-1", "old")
    await auth._check("SN-1", "new")
    view.set_password(None)
    with pytest.raises(AccessDenied):
        await auth._check("SN-1", "new")

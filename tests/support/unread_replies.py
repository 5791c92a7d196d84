"""Pipelined NETCONF requests whose replies the client does not read: how many the server
handled before it stopped, paused by a full write buffer (``NetconfSession.pause_writing``)
or because every one was handled."""

from __future__ import annotations

import asyncio

import pytest

from zerotouch_plugin.services.netconf.protocol import NetconfSession

MONITORING = "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"
NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
SCHEMA_REPLY = 39 * 1024  # the text of ietf-interfaces, what each reply holds at least


def get_schema_requests(count: int) -> bytes:
    """``count`` get-schema RPCs for ietf-interfaces, end-of-message framed (base:1.0)."""
    op = f'<get-schema xmlns="{MONITORING}"><identifier>ietf-interfaces</identifier></get-schema>'
    return b"".join(
        f'<rpc xmlns="{NC}" message-id="{i}">{op}</rpc>]]>]]>'.encode() for i in range(count)
    )


class UnreadReplies:
    """Counts the RPCs sessions handle; ``stopped`` is set when a session pauses or the
    ``count``-th RPC is handled."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, count: int) -> None:
        self.handled = 0
        self.stopped = asyncio.Event()
        handle_rpc = NetconfSession.handle_rpc
        pause_writing = NetconfSession.pause_writing

        async def counted(session: NetconfSession, message: bytes) -> bytes:
            self.handled += 1
            if self.handled == count:
                self.stopped.set()
            return await handle_rpc(session, message)

        def paused(session: NetconfSession) -> None:
            pause_writing(session)
            self.stopped.set()

        monkeypatch.setattr(NetconfSession, "handle_rpc", counted)
        monkeypatch.setattr(NetconfSession, "pause_writing", paused)

    async def held(self) -> int:
        """The RPCs handled once the session stopped (the client has read nothing yet)."""
        await asyncio.wait_for(self.stopped.wait(), 60)
        return self.handled

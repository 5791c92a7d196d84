"""Fuzzing NETCONF framing (RFC 6242 §4.2, §4.3): byte streams, valid and broken, split
anywhere into reads.

The framer either hands out exactly the messages that were framed, or raises ``FramingError``
(malformed-message) or ``PayloadTooLarge`` (too-big); nothing else escapes it, and what it
buffers stays under its cap whatever arrives. A session fed the same streams answers with
``<rpc-reply>`` messages only and, on broken framing, sends an ``<rpc-error>`` and closes
(RFC 6242 §4.2: "the session MUST be closed" on a framing error).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from zerotouch_plugin.config import NetconfLimits
from zerotouch_plugin.device.datastore import Datastores
from zerotouch_plugin.device.schema import DeviceSchema, load_device_schema
from zerotouch_plugin.errors import PayloadTooLarge
from zerotouch_plugin.services.netconf import build_netconf_server
from zerotouch_plugin.services.netconf.framing import (
    EOM,
    Framer,
    FramingError,
    encode_chunked,
    encode_eom,
)
from zerotouch_plugin.services.netconf.protocol import NetconfServer, SessionInfo

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
MAX_MESSAGE = 2048
SLACK = 64 * 1024  # what framing.py lets a session hold beyond one message
ERRORS = (FramingError, PayloadTooLarge)

# Bytes that matter to either framing: chunk headers, end-of-chunks, the EOM marker.
_TOKENS = [b"\n", b"#", b"##", b"\n#", b"\n##\n", b"]]>]]>", b"]]>", b"0", b"9", b"1", b"x"]
_payload = st.binary(max_size=300)
_noise = st.lists(st.sampled_from(_TOKENS) | st.binary(max_size=8), max_size=40).map(b"".join)


@st.composite
def _cuts(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` split at random points, as a transport may deliver it."""
    points = sorted(draw(st.sets(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def _chunked_stream(draw: st.DrawFn) -> tuple[list[bytes], bytes]:
    """Messages each cut into chunks of random sizes (§4.2 allows any split)."""
    messages = draw(st.lists(st.binary(min_size=1, max_size=400), max_size=4))
    out = bytearray()
    for message in messages:
        rest = message
        while rest:
            size = draw(st.integers(1, len(rest)))
            out += b"\n#%d\n" % size + rest[:size]
            rest = rest[size:]
        out += b"\n##\n"
    return messages, bytes(out)


@st.composite
def _mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few bytes replaced, inserted or deleted, or noise appended."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, len(out)))
        action = draw(st.sampled_from(["replace", "insert", "delete", "append"]))
        token = draw(st.sampled_from(_TOKENS) | st.binary(min_size=1, max_size=3))
        if action == "replace" and where < len(out):
            out[where : where + 1] = token
        elif action == "delete" and where < len(out):
            del out[where]
        elif action == "append":
            out += draw(_noise)
        else:
            out[where:where] = token
    return bytes(out)


def _drain(framer: Framer) -> Iterator[bytes]:
    while (message := framer.next_message()) is not None:
        yield message


def _feed_all(framer: Framer, pieces: list[bytes]) -> list[bytes]:
    """Every message out of ``pieces``; checks the buffer cap after every read."""
    got: list[bytes] = []
    for piece in pieces:
        framer.feed(piece)
        assert framer.buffered <= framer.max_message + SLACK + len(piece)
        got.extend(_drain(framer))
        bound = framer.max_message + (SLACK if framer.chunked else len(EOM) + len(piece))
        assert framer.buffered <= bound
    return got


@settings(deadline=None)
@given(st.data(), st.lists(_payload.filter(lambda m: EOM not in m), max_size=5))
def test_end_of_message_streams_split_anywhere(data: st.DataObject, messages: list[bytes]) -> None:
    stream = b"".join(encode_eom(m) for m in messages)
    framer = Framer(max_message=MAX_MESSAGE)
    assert _feed_all(framer, data.draw(_cuts(stream))) == messages


@settings(deadline=None)
@given(st.data(), _chunked_stream())
def test_chunked_streams_split_anywhere(
    data: st.DataObject, stream: tuple[list[bytes], bytes]
) -> None:
    messages, raw = stream
    framer = Framer(max_message=MAX_MESSAGE)
    framer.use_chunked()
    assert _feed_all(framer, data.draw(_cuts(raw))) == messages
    assert framer.buffered == 0


@settings(deadline=None)
@given(st.data(), _chunked_stream(), st.booleans())
def test_broken_chunked_streams_give_messages_or_a_framing_error(
    data: st.DataObject, stream: tuple[list[bytes], bytes], small: bool
) -> None:
    """A mutated stream: whatever messages come out before the error, then only the
    protocol's errors; a 1-byte-at-a-time peer sees the same outcome as one big read."""
    raw = data.draw(_mutated(stream[1]))
    limit = 64 if small else MAX_MESSAGE
    outcomes = []
    for pieces in (data.draw(_cuts(raw)), [raw]):
        framer = Framer(max_message=limit)
        framer.use_chunked()
        try:
            got = _feed_all(framer, pieces)
        except ERRORS as exc:
            assert exc.message and exc.netconf_tag in ("malformed-message", "too-big")
            outcomes.append(type(exc).__name__)
        else:
            assert all(0 < len(m) <= limit for m in got)
            outcomes.append(b"|".join(got).hex())
    # A cap may trip on the bytes of a read before its messages are parsed, so only a
    # stream that frames cleanly must frame the same way however it is cut.
    if "FramingError" not in outcomes and "PayloadTooLarge" not in outcomes:
        assert outcomes[0] == outcomes[1]


@settings(deadline=None)
@given(st.data(), _noise, st.booleans())
def test_random_bytes_in_either_framing(data: st.DataObject, raw: bytes, chunked: bool) -> None:
    framer = Framer(max_message=64)
    if chunked:
        framer.use_chunked()
    try:
        got = _feed_all(framer, data.draw(_cuts(raw)))
    except ERRORS as exc:
        assert exc.message
    else:
        assert all(len(m) <= 64 for m in got)
        assert chunked or all(EOM not in m for m in got)


# -- the same streams into a real session ---------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> DeviceSchema:
    return load_device_schema()


class _Peer:
    """The client side of one in-memory session: what the server sent, and whether it
    closed the transport."""

    def __init__(self, server: NetconfServer) -> None:
        self.framer = Framer()
        self.closed = False
        self.session = server.open_session(
            SessionInfo("fuzz", "memory", "local"), self.framer.feed, self._close
        )

    def _close(self) -> None:
        self.closed = True


def _hello(base: str) -> bytes:
    return encode_eom(
        f'<hello xmlns="{NC}"><capabilities><capability>urn:ietf:params:netconf:base:{base}'
        "</capability></capabilities></hello>".encode()
    )


_LOCK = f'<rpc xmlns="{NC}" message-id="9"><lock><target><running/></target></lock></rpc>'


def test_sessions_answer_or_close_on_any_stream(schema: DeviceSchema, tmp_path: Path) -> None:
    """Streams (valid ``<rpc>`` messages and random payloads, some over the size cap, chunked
    after a base:1.1 hello or end-of-message framed after a base:1.0 one, mutated, cut
    anywhere) into sessions: every message sent back is an ``<rpc-reply>``; a framing error or
    an over-size message ends in an ``<rpc-error>`` and a closed session."""
    loop = asyncio.new_event_loop()
    server = build_netconf_server(
        Datastores(schema, tmp_path), NetconfLimits(max_message=MAX_MESSAGE)
    )
    big = st.integers(MAX_MESSAGE - 10, MAX_MESSAGE + 10).map(lambda n: b"x" * n)
    bodies = st.lists(st.sampled_from([_LOCK.encode()]) | st.binary(min_size=1, max_size=80)
                      | big, min_size=1, max_size=3)  # fmt: skip

    async def settle() -> None:
        for _ in range(5):
            await asyncio.sleep(0)

    async def connect() -> _Peer:
        return _Peer(server)

    def exchange(peer: _Peer, chunked: bool, pieces: list[bytes]) -> list[bytes]:
        """The messages the server sent after its hello."""
        peer.session.data_received(_hello("1.1" if chunked else "1.0"))
        loop.run_until_complete(settle())
        for piece in pieces:
            peer.session.data_received(piece)
            loop.run_until_complete(settle())
            assert peer.session.framer.buffered <= MAX_MESSAGE + SLACK + len(piece)
        hello = peer.framer.next_message()
        assert hello is not None and hello.startswith(b"<hello")
        if chunked:
            peer.framer.use_chunked()
        return list(_drain(peer.framer))

    @settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.data(), bodies, st.booleans())
    def check(data: st.DataObject, messages: list[bytes], chunked: bool) -> None:
        frame = encode_chunked if chunked else encode_eom
        raw = b"".join(frame(m) for m in messages)
        if data.draw(st.booleans()):
            raw = data.draw(_mutated(raw))
        pieces = data.draw(_cuts(raw))
        peer = loop.run_until_complete(connect())
        try:
            replies = exchange(peer, chunked, pieces)
            closed = peer.closed
        finally:
            peer.session.close()
            loop.run_until_complete(settle())
        assert server.buffered == 0 and not server.sessions
        for reply in replies:
            root = etree.fromstring(reply)
            assert root.tag == f"{{{NC}}}rpc-reply", reply
            message = root.findtext(f".//{{{NC}}}error-message") or ""
            assert not message.startswith("internal error"), reply
        if closed:
            last = etree.fromstring(replies[-1]) if replies else None
            assert last is not None and last.get("message-id") is None, replies
            tag = last.findtext(f"{{{NC}}}rpc-error/{{{NC}}}error-tag")
            assert tag in ("malformed-message", "too-big"), replies

    try:
        check()
    finally:
        loop.run_until_complete(server.close())
        loop.close()

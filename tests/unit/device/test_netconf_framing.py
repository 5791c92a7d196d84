"""RFC 6242 framing: end-of-message and chunked, including malformed chunks."""

from __future__ import annotations

import pytest

from zerotouch_plugin.errors import PayloadTooLarge
from zerotouch_plugin.services.netconf.framing import (
    Framer,
    FramingError,
    encode_chunked,
    encode_eom,
)


def _drain(framer: Framer) -> list[bytes]:
    out = []
    while (msg := framer.next_message()) is not None:
        out.append(msg)
    return out


def test_eom_messages_split_anywhere() -> None:
    data = encode_eom(b"<hello/>") + encode_eom(b"<rpc/>")
    framer = Framer()
    got: list[bytes] = []
    for i in range(len(data)):
        framer.feed(data[i : i + 1])
        got += _drain(framer)
    assert got == [b"<hello/>", b"<rpc/>"]


def test_switch_to_chunked_between_messages_of_one_read() -> None:
    framer = Framer()
    framer.feed(encode_eom(b"<hello/>") + encode_chunked(b"<rpc/>"))
    assert framer.next_message() == b"<hello/>"
    framer.use_chunked()
    assert framer.next_message() == b"<rpc/>"
    assert framer.next_message() is None


def test_chunked_rfc_example_with_several_chunks() -> None:
    # RFC 6242 §4.2 example: one message in two chunks.
    framer = Framer()
    framer.use_chunked()
    data = b'\n#4\n<rpc\n#18\n message-id="102"\n\n##\n'
    for i in range(len(data)):
        framer.feed(data[i : i + 1])
        if i < len(data) - 1:
            assert framer.next_message() is None
    assert framer.next_message() == b'<rpc message-id="102"\n'


def test_chunk_content_may_contain_framing_bytes() -> None:
    framer = Framer()
    framer.use_chunked()
    payload = b"\n##\n]]>]]>\n#3\n"
    framer.feed(encode_chunked(payload) * 2)
    assert _drain(framer) == [payload, payload]


@pytest.mark.parametrize(
    "bad",
    [
        b"\n#0\nx\n##\n",  # zero size
        b"\n#01\nx\n##\n",  # leading zero
        b"\n#-1\nx\n##\n",
        b"\n#abc\n",
        b"#4\nabcd\n##\n",  # no leading LF
        b"\n##\n",  # end of chunks without a chunk
        b"\n#99999999999\n",  # too many digits
        b"\n#4\nabcdX\n##\n",  # garbage after a chunk
        b"\n#1 \nx",
        b"\n#12345678901234",  # header never ends
    ],
)
def test_malformed_chunks_raise(bad: bytes) -> None:
    framer = Framer()
    framer.use_chunked()
    framer.feed(bad)
    with pytest.raises(FramingError):
        _drain(framer)


def test_size_limits() -> None:
    framer = Framer(max_message=10)
    framer.use_chunked()
    framer.feed(b"\n#8\n12345678\n#8\n")
    with pytest.raises(PayloadTooLarge):
        _drain(framer)
    eom = Framer(max_message=10)
    with pytest.raises(PayloadTooLarge):
        eom.feed(b"x" * 100)


def test_encode_follows_mode() -> None:
    framer = Framer()
    assert framer.encode(b"a") == b"a]]>]]>"
    framer.use_chunked()
    assert framer.encode(b"abc") == b"\n#3\nabc\n##\n"

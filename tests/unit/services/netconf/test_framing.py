"""RFC 6242 framing: end-of-message and chunked, malformed chunks, and hostile input (memory
per byte, the message cap, linear EOM search)."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from zerotouch_plugin.errors import PayloadTooLarge
from zerotouch_plugin.services.netconf.framing import (
    EOM,
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


def test_eom_message_over_the_cap_is_refused_when_its_marker_arrives_with_it() -> None:
    """Found by the framing fuzzer: 11 bytes and ]]>]]> in one read slipped past a cap of 10."""
    one_read = Framer(max_message=10)
    with pytest.raises(PayloadTooLarge):
        one_read.feed(b"x" * 11 + EOM)
    pipelined = Framer(max_message=10)
    pipelined.feed(b"ok" + EOM + b"y" * 11 + EOM)
    assert pipelined.next_message() == b"ok"
    with pytest.raises(PayloadTooLarge):
        pipelined.next_message()
    exact = Framer(max_message=10)
    exact.feed(b"z" * 10 + EOM)
    assert exact.next_message() == b"z" * 10


def test_encode_follows_mode() -> None:
    framer = Framer()
    assert framer.encode(b"a") == b"a]]>]]>"
    framer.use_chunked()
    assert framer.encode(b"abc") == b"\n#3\nabc\n##\n"


def test_one_byte_chunks_cost_about_their_size() -> None:
    """RFC 6242 §4.2 allows 1-byte chunks; each once cost a bytes object (~40 bytes)."""
    framer = Framer()
    framer.use_chunked()
    count = 200_000
    tracemalloc.start()
    try:
        for _ in range(count):
            framer.feed(b"\n#1\nx")
            assert framer.next_message() is None
        current, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert current < 4 * count
    framer.feed(b"\n##\n")
    assert framer.next_message() == b"x" * count


def test_unparsed_chunked_input_is_cut_at_the_cap() -> None:
    """Bytes arriving faster than they are parsed cannot pile up past one message."""
    framer = Framer(max_message=1_000_000)
    framer.use_chunked()
    with pytest.raises(PayloadTooLarge):
        for _ in range(2000):
            framer.feed(b"\n#1000\n" + b"x" * 1000)
    assert framer.buffered <= 1_000_000 + 64 * 1024 + 1007


def test_assembled_chunks_over_the_cap_are_refused() -> None:
    framer = Framer(max_message=10_000)
    framer.use_chunked()
    with pytest.raises(PayloadTooLarge):
        for _ in range(20):
            framer.feed(b"\n#1000\n" + b"x" * 1000)
            assert framer.next_message() is None


def test_end_of_message_search_is_linear() -> None:
    """One-byte reads of a long hello: each byte is searched once, not the whole buffer."""
    framer = Framer()
    start = time.process_time()
    for _ in range(300_000):
        framer.feed(b"x")
        assert framer.next_message() is None
    assert time.process_time() - start < 10  # quadratic: minutes
    framer.feed(EOM)
    assert framer.next_message() == b"x" * 300_000


def test_release_frees_the_buffers() -> None:
    framer = Framer()
    framer.use_chunked()
    framer.feed(b"\n#5\nhello\n#100\nabc")
    assert framer.next_message() is None
    framer.release()
    assert framer.buffered == 0

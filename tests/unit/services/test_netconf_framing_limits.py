"""RFC 6242 framing under hostile input: memory per byte, the message cap, linear EOM search."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from zerotouch_plugin.errors import PayloadTooLarge
from zerotouch_plugin.services.netconf.framing import EOM, Framer


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

"""NETCONF message framing (RFC 6242 §4), sans-IO.

Both peers start with end-of-message framing (``]]>]]>``, §4.3) for the hello; when both
advertise base:1.1 they switch to chunked framing (§4.2) right after the hellos. Bytes go in
with ``feed``; ``next_message`` hands out one complete message at a time so the caller can
switch the framing between two messages that arrived in the same read.
"""

from __future__ import annotations

import re

from zerotouch_plugin.errors import InvalidInput, PayloadTooLarge

__all__ = [
    "DEFAULT_MAX_MESSAGE",
    "EOM",
    "MAX_CHUNK",
    "Framer",
    "FramingError",
    "encode_chunked",
    "encode_eom",
]

EOM = b"]]>]]>"
MAX_CHUNK = 4294967295  # RFC 6242 §4.2: chunk-size 1..4294967295
_CHUNK_HEADER = re.compile(rb"\n#([1-9][0-9]{0,9})\n")


class FramingError(InvalidInput):
    """The peer broke RFC 6242 framing; the session must be closed."""

    reason = "framing-error"


def encode_eom(message: bytes) -> bytes:
    return message + EOM


def encode_chunked(message: bytes) -> bytes:
    """One chunk per message (§4.2 allows any split); empty messages are not sent."""
    return b"\n#%d\n%s\n##\n" % (len(message), message)


DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024
# Unparsed bytes a session may hold beyond one maximal message: chunk headers and the start
# of the next pipelined message (RFC 6242 sets no limit on either).
_SLACK = 64 * 1024


class Framer:
    """Incoming-message framer for one session.

    A message being assembled from chunks is kept in one bytearray, so tiny chunks cost
    their size, not a Python object each. ``buffered`` (raw plus assembled bytes) never
    exceeds ``max_message`` plus a small slack: ``feed`` raises PayloadTooLarge first.
    """

    def __init__(self, *, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        self.chunked = False
        self.max_message = max_message
        self._buf = bytearray()
        self._message = bytearray()
        self._scanned = 0  # end-of-message framing: _buf[:_scanned] holds no complete EOM

    @property
    def buffered(self) -> int:
        return len(self._buf) + len(self._message)

    def feed(self, data: bytes) -> None:
        self._buf += data
        if self.chunked:
            if self.buffered > self.max_message + _SLACK:
                raise PayloadTooLarge(f"message larger than {self.max_message} bytes")
        else:
            end = self._find_eom()
            longest = len(self._buf) - len(EOM) if end < 0 else end
            if longest > self.max_message:
                raise PayloadTooLarge(f"message larger than {self.max_message} bytes")

    def release(self) -> None:
        """Drop every buffered byte (the session is closed)."""
        self._buf = bytearray()
        self._message = bytearray()
        self._scanned = 0

    def use_chunked(self) -> None:
        """Switch to chunked framing (after hellos that both list base:1.1)."""
        self.chunked = True

    def encode(self, message: bytes) -> bytes:
        return encode_chunked(message) if self.chunked else encode_eom(message)

    def next_message(self) -> bytes | None:
        """The next complete message, or None until more bytes arrive."""
        return self._next_chunked() if self.chunked else self._next_eom()

    def _find_eom(self) -> int:
        """Where the first EOM starts, or -1; bytes already searched are not searched again
        (one-byte reads would otherwise cost time quadratic in the message size)."""
        end = self._buf.find(EOM, max(0, self._scanned - len(EOM) + 1))
        self._scanned = len(self._buf) if end < 0 else end
        return end

    def _next_eom(self) -> bytes | None:
        end = self._find_eom()
        if end < 0:
            return None
        if end > self.max_message:  # a later message of a pipelined read: not checked in feed
            raise PayloadTooLarge(f"message larger than {self.max_message} bytes")
        message = bytes(self._buf[:end])
        del self._buf[: end + len(EOM)]
        self._scanned = 0
        return message

    def _next_chunked(self) -> bytes | None:
        buf = self._buf
        while True:
            head = bytes(buf[:2])
            if not b"\n#".startswith(head):
                raise FramingError(f"bad chunk header {bytes(buf[:12])!r}")
            if len(buf) < 4:
                return None
            if buf[2:4] == b"#\n":  # end-of-chunks (§4.2)
                if not self._message:
                    raise FramingError("end of chunks without any chunk")
                del buf[:4]
                message = bytes(self._message)
                self._message = bytearray()
                return message
            newline = buf.find(b"\n", 2, 14)
            if newline < 0:
                if len(buf) >= 14:
                    raise FramingError(f"bad chunk header {bytes(buf[:14])!r}")
                return None
            header = _CHUNK_HEADER.fullmatch(bytes(buf[: newline + 1]))
            if header is None:
                raise FramingError(f"bad chunk header {bytes(buf[: newline + 1])!r}")
            size = int(header.group(1))
            if size > MAX_CHUNK:
                raise FramingError(f"chunk size {size} exceeds {MAX_CHUNK}")
            if len(self._message) + size > self.max_message:
                raise PayloadTooLarge(f"message larger than {self.max_message} bytes")
            start = newline + 1
            if len(buf) < start + size:
                return None
            self._message += buf[start : start + size]
            del buf[: start + size]

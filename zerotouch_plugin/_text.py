"""Client-supplied text made safe to log or print: escaped and bounded.

A request path, a header or a pledge's status ``reason`` is whatever the client sent. Written
raw, CR/LF forge log lines, ESC sequences drive the operator's terminal, bidi overrides
reorder what is shown, and a 60 KB string swamps a table row. ``printable`` is the one place
such text is made safe; JSON output needs none of it (JSON escapes control characters).
"""

from __future__ import annotations

__all__ = ["DEFAULT_LIMIT", "is_decimal", "printable"]

DEFAULT_LIMIT = 200

# Unicode format characters that reorder or hide text (bidi embeddings, overrides, isolates,
# marks) and line/paragraph separators that some viewers treat as new lines.
_UNICODE_ESCAPED = (
    0x061C,
    0x200E,
    0x200F,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
    0x2028,
    0x2029,
)
_ESCAPES: dict[int, str] = {
    **{code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))},
    **{code: f"\\u{code:04x}" for code in _UNICODE_ESCAPED},
    ord("\\"): "\\\\",  # so an escape written by the client cannot pass for one of ours
}


def printable(text: str, limit: int = DEFAULT_LIMIT) -> str:
    """``text`` with control characters (C0, DEL, C1 including ESC) as ``\\xNN``, bidi and
    line-separator characters as ``\\uNNNN``, backslash doubled, and at most ``limit``
    characters of the original kept (``...[N more characters]`` says what was cut)."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    cut = len(text) - limit
    shown = text[:limit].translate(_ESCAPES)
    return f"{shown}...[{cut} more characters]" if cut > 0 else shown


def is_decimal(text: str) -> bool:
    """Whether ``text`` is one to 18 ASCII digits 0-9, the DIGIT of HTTP (RFC 5234 B.1), so
    that ``int(text)`` cannot fail: ``str.isdigit`` also takes superscripts and other
    scripts' digits, on which ``int`` fails, and ``int`` refuses more than 4300 digits."""
    return 0 < len(text) <= 18 and text.isascii() and text.isdigit()

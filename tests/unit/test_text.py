"""``printable``: client-supplied text escaped and bounded for logs and terminals."""

from __future__ import annotations

import pytest

from zerotouch_plugin._text import is_decimal, printable


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text é ✓", "plain text é ✓"),
        ("a\r\nb", "a\\x0d\\x0ab"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("\x00\x7f\x85\x9b", "\\x00\\x7f\\x85\\x9b"),
        ("abc\u202edef\u2066\u2028", "abc\\u202edef\\u2066\\u2028"),
        ("C:\\x1b", "C:\\\\x1b"),  # a client's own "\x1b" cannot pass for an escape
    ],
)
def test_control_and_bidi_characters_are_escaped(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def test_long_text_is_cut_with_a_marker() -> None:
    assert printable("A" * 60_000, limit=10) == "A" * 10 + "...[59990 more characters]"
    assert printable("A" * 10, limit=10) == "A" * 10
    with pytest.raises(ValueError, match="at least 1"):
        printable("x", limit=0)


@pytest.mark.parametrize(
    ("text", "decimal"),
    [
        ("0", True),
        ("0123", True),
        ("9" * 18, True),
        ("9" * 19, False),  # int() of 4301 digits raises; none is read past 18
        ("", False),
        ("\u00b2", False),
        ("\u0663", False),
        ("-1", False),
    ],
)
def test_is_decimal_takes_ascii_digits_only(text: str, decimal: bool) -> None:
    assert is_decimal(text) is decimal

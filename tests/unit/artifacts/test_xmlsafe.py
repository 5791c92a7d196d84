"""The hardened parser every outside XML goes through: entities, DTDs and bombs never expand,
comments and processing instructions are dropped, and the error names the document."""

from __future__ import annotations

from itertools import pairwise

import pytest
from lxml import etree

from zerotouch_plugin.artifacts.xmlsafe import parse_untrusted
from zerotouch_plugin.errors import InvalidInput

LEVELS = "abcdefg"
BOMB = (
    '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
    + "".join(f'<!ENTITY {n} "{f"&{p};" * 10}">' for p, n in pairwise(LEVELS))
    + "]><r>&g;</r>"
).encode()


def test_a_plain_document_parses_without_comments_or_processing_instructions() -> None:
    root = parse_untrusted(b"<a><!-- note --><?pi x?><b>1</b></a>", "the body")
    assert [child.tag for child in root] == ["b"]
    assert etree.tostring(root) == b"<a><b>1</b></a>"


@pytest.mark.parametrize(
    "data",
    [
        b'<!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/hostname">]><a>&e;</a>',
        b'<!DOCTYPE a SYSTEM "http://127.0.0.1:9/a.dtd"><a/>',
        b"<!DOCTYPE a><a/>",
    ],
)
def test_a_doctype_is_refused_naming_the_document(data: bytes) -> None:
    with pytest.raises(InvalidInput, match=r"^day-0 configuration has a DOCTYPE declaration"):
        parse_untrusted(data, "day-0 configuration")


@pytest.mark.parametrize("data", [b"", b"<a>", b"<a></b>", b"\xff\xfe<a/>", b"<a/><b/>"])
def test_malformed_xml_is_invalid_input_naming_the_document(data: bytes) -> None:
    with pytest.raises(InvalidInput, match=r"^the message is not well-formed XML: "):
        parse_untrusted(data, "the message")


def test_an_entity_bomb_is_refused_before_it_expands() -> None:
    """libxml2 stops the amplification while parsing; the DOCTYPE check would refuse it next."""
    with pytest.raises(InvalidInput, match=r"^the body (is not well-formed|has a DOCTYPE)"):
        parse_untrusted(BOMB, "the body")

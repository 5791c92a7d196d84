"""The one hardened lxml parser for XML from outside (NETCONF messages, RESTCONF bodies, day-0
configuration, SZTP conveyed information): no DTD loaded, no entity expanded, no network, no
huge trees, comments and processing instructions dropped; a DOCTYPE is refused outright,
since its entities would otherwise become silent empty text and internal subsets are how XML
bombs start."""

from __future__ import annotations

from lxml import etree

from zerotouch_plugin.errors import InvalidInput

__all__ = ["PARSER", "parse_untrusted"]

PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
)


def parse_untrusted(data: bytes, what: str) -> etree._Element:
    """The root element of ``data``; InvalidInput naming ``what`` ("the body", "day-0
    configuration") when it is not well-formed or has a DOCTYPE."""
    try:
        root = etree.fromstring(data, PARSER)
    except etree.XMLSyntaxError as exc:
        raise InvalidInput(f"{what} is not well-formed XML: {exc}") from None
    if root.getroottree().docinfo.doctype:  # type: ignore[union-attr]
        raise InvalidInput(f"{what} has a DOCTYPE declaration, which is not allowed")
    return root

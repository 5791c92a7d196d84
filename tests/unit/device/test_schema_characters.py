"""Strings XML cannot carry are refused on every write (RFC 7950 §9.4), whatever the source:
RESTCONF's JSON can carry U+0008, which no NETCONF reply (XML 1.0) could then hold."""

from __future__ import annotations

import pytest
from lxml import etree

from zerotouch_plugin.device.schema import DeviceSchema
from zerotouch_plugin.device.xmlcodec import tree_to_xml
from zerotouch_plugin.errors import SchemaError

SYS = "urn:ietf:params:xml:ns:yang:ietf-system"


@pytest.mark.parametrize("char", ["\x00", "\x08", "\x1f", "\ufffe", "\ud800"])
def test_a_string_with_a_control_character_is_refused(schema: DeviceSchema, char: str) -> None:
    tree = {"ietf-system:system": {"location": f"rack{char}4"}}
    with pytest.raises(SchemaError) as raised:
        schema.validate(tree)
    assert raised.value.path == "/ietf-system:system/location"
    assert f"U+{ord(char):04X}" in raised.value.message
    assert char not in raised.value.message  # the error itself can be sent as XML


def test_a_member_name_with_a_control_character_is_refused(schema: DeviceSchema) -> None:
    with pytest.raises(SchemaError, match=r"U\+0008"):
        schema.validate({"ietf-system:system": {"\x08": "x"}})


def test_strings_in_a_list_entry_are_checked(schema: DeviceSchema) -> None:
    entry = {"name": "eth\x010", "type": "iana-if-type:ethernetCsmacd"}
    with pytest.raises(SchemaError, match=r"U\+0001"):
        schema.validate({"ietf-interfaces:interfaces": {"interface": [entry]}})


def test_tabs_newlines_and_any_script_are_kept(schema: DeviceSchema) -> None:
    schema.validate({"ietf-system:system": {"location": "rack\t4\r\nrow ☃ \U0001f600"}})


def test_published_state_with_a_control_character_still_encodes_as_xml(
    schema: DeviceSchema,
) -> None:
    """State is not validated and may quote a peer (a registrar's refusal text): the encoder
    puts U+FFFD in place of what XML cannot carry."""
    tree = {"ietf-system:system": {"location": "refused: \x1b[31mno\x00"}}
    root = etree.fromstring(f"<data>{tree_to_xml(schema, tree)}</data>")
    assert root.findtext(f".//{{{SYS}}}location") == "refused: \ufffd[31mno\ufffd"

"""Day-0 configuration documents (device/day0.py): what the parser cannot hold is InvalidInput."""

from __future__ import annotations

import pytest

from zerotouch_plugin.device.day0 import Day0Format, parse_day0
from zerotouch_plugin.device.schema import DeviceSchema
from zerotouch_plugin.errors import InvalidInput


@pytest.mark.parametrize(
    "text",
    [
        "{",
        '{"ietf-system:system": {"clock": {"timezone-utc-offset": ' + "9" * 5000 + "}}}",
        "[" * 100_000 + "]" * 100_000,
        "[" * 65 + "]" * 65,
    ],
    ids=["broken", "huge-integer", "deep-nesting", "nesting-past-the-bound"],
)
def test_json_the_parser_cannot_hold_is_invalid_input(schema: DeviceSchema, text: str) -> None:
    with pytest.raises(InvalidInput, match="not JSON"):
        parse_day0(schema, text, Day0Format.JSON)

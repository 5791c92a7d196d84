"""Day-0 configuration documents: YANG data in JSON (RFC 7951) or XML (RFC 7950 §7).

The registrar checks a document when it is stored, not when it is pushed: it must parse and
be valid configuration for the device schema (``device/schema.py``, plus the deployer's
modules) on its own. The result keeps the text as given (shown back to the operator) and the
canonical XML that goes inside ``<config>`` of the hand-off's edit-config (RFC 6241 §7.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from zerotouch_plugin._json import bounded_loads
from zerotouch_plugin.artifacts.xmlsafe import parse_untrusted
from zerotouch_plugin.device.schema import DeviceSchema
from zerotouch_plugin.device.xmlcodec import NETCONF_BASE_NS, tree_from_xml, tree_to_xml
from zerotouch_plugin.errors import InvalidInput, SchemaError

__all__ = ["Day0Document", "Day0Format", "format_of", "parse_day0"]

# Wrappers an XML document may use around several top-level data elements.
_WRAPPERS = frozenset({f"{{{NETCONF_BASE_NS}}}config", f"{{{NETCONF_BASE_NS}}}data"})


class Day0Format(StrEnum):
    JSON = "json"
    XML = "xml"


_EXTENSIONS = {".json": Day0Format.JSON, ".xml": Day0Format.XML}


def format_of(filename: str, override: str | None = None) -> Day0Format:
    """``override`` if given, else from the file name's extension (.json / .xml)."""
    if override is not None:
        return Day0Format(override)
    suffix = filename[filename.rfind(".") :].lower() if "." in filename else ""
    try:
        return _EXTENSIONS[suffix]
    except KeyError:
        raise InvalidInput(
            f"cannot tell the format of {filename!r} from its extension: name it .json or .xml, "
            "or give --format json|xml"
        ) from None


@dataclass(frozen=True)
class Day0Document:
    text: str  # as given
    format: Day0Format
    edit_xml: str  # canonical XML of the top-level data nodes, without a wrapper


def _json_tree(text: str) -> dict[str, object]:
    try:
        tree = bounded_loads(text)
    except ValueError as exc:
        # JSONDecodeError, integers of more digits than Python converts (4300) and nesting
        # past _json.MAX_DEPTH
        raise InvalidInput(f"day-0 configuration is not JSON: {exc}") from None
    if not isinstance(tree, dict) or not tree:
        raise InvalidInput("day-0 configuration must be a non-empty JSON object (RFC 7951)")
    return tree


def _xml_tree(schema: DeviceSchema, text: str) -> dict[str, object]:
    root = parse_untrusted(text.encode(), "day-0 configuration")
    elements = [el for el in root if isinstance(el.tag, str)] if root.tag in _WRAPPERS else [root]
    return tree_from_xml(schema, elements)


def parse_day0(schema: DeviceSchema, text: str, fmt: Day0Format) -> Day0Document:
    """Parse and validate; InvalidInput (syntax) or SchemaError naming the path."""
    fmt = Day0Format(fmt)
    tree = _json_tree(text) if fmt is Day0Format.JSON else _xml_tree(schema, text)
    if not tree:
        raise InvalidInput("day-0 configuration holds no data nodes")
    schema.validate(tree)
    try:
        edit_xml = tree_to_xml(schema, tree)
    except (KeyError, ValueError) as exc:
        raise SchemaError(f"cannot encode as XML: {exc}") from None
    return Day0Document(text, fmt, edit_xml)

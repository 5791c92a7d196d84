"""XPath the engine cannot evaluate is answered operation-failed with a reason the client can
act on, not the name of a Python exception (RFC 6241 §8.9 filters, Appendix A tags)."""

from __future__ import annotations

import pytest

from zerotouch_plugin.device.schema import DeviceSchema
from zerotouch_plugin.services.netconf.xpath import XPathFailed, apply_xpath_filter

DATA = {"ietf-system:system": {"hostname": "device-1", "location": "lab"}}
NS = {"sys": "urn:ietf:params:xml:ns:yang:ietf-system"}


@pytest.mark.parametrize(
    ("select", "reason"),
    [
        ("//*[1 div 0]", "infinite number"),
        ("-(current())[1 div 0]", "infinite number"),
        ("--('eth0')['(']", "predicate"),
        ("-descendant-or-self::sys:system['a']", "unary minus"),
    ],
)
def test_engine_limits_are_explained(schema: DeviceSchema, select: str, reason: str) -> None:
    with pytest.raises(XPathFailed) as raised:
        apply_xpath_filter(schema, DATA, select, NS)
    assert reason in raised.value.message
    assert "Error" not in raised.value.message
    assert raised.value.netconf_tag == "operation-failed" and raised.value.path == "/filter"

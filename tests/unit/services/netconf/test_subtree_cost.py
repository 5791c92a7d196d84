"""Subtree filter cost grows with filter plus data, not their product; a filter over its
budget of steps is refused with resource-denied, one with too many elements with too-big
(RFC 6241 §6.2.5, Appendix A)."""

from __future__ import annotations

from typing import Any

import pytest
from lxml import etree

from zerotouch_plugin.device.schema import DeviceSchema
from zerotouch_plugin.errors import PayloadTooLarge
from zerotouch_plugin.services.netconf import subtree
from zerotouch_plugin.services.netconf.subtree import (
    SubtreeTooCostly,
    apply_subtree_filter,
    parse_subtree_filter,
)

IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
ETH = "iana-if-type:ethernetCsmacd"
K = 400


def _entry(i: int) -> dict[str, Any]:
    return {"name": f"q{i}", "type": ETH, "enabled": i % 2 == 0}


DATA: dict[str, Any] = {"ietf-interfaces:interfaces": {"interface": [_entry(i) for i in range(K)]}}


def _nodes(body: str) -> tuple[subtree.FilterNode, ...]:
    return parse_subtree_filter(etree.fromstring(f'<filter type="subtree">{body}</filter>'))


def _interfaces(body: str) -> str:
    return f'<interfaces xmlns="{IF}">{body}</interfaces>'


def _entries(result: dict[str, Any]) -> list[dict[str, Any]]:
    return list(result.get("ietf-interfaces:interfaces", {}).get("interface", []))


@pytest.fixture
def evaluations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the sibling sets evaluated against a data node (``_Filter.object`` calls)."""
    calls = [0]
    original = subtree._Filter.object

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(subtree._Filter, "object", counted)
    return calls


def test_each_entry_is_matched_only_against_the_nodes_naming_it(
    schema: DeviceSchema, evaluations: list[int]
) -> None:
    """K containment nodes naming K entries by key: K evaluations, not K * K."""
    body = "".join(f"<interface><name>q{i}</name></interface>" for i in reversed(range(K)))
    result = apply_subtree_filter(schema, DATA, _nodes(_interfaces(body)))
    assert _entries(result) == [_entry(i) for i in range(K)]
    assert evaluations[0] <= K + 2


def test_nodes_naming_no_key_still_apply_to_every_entry(
    schema: DeviceSchema, evaluations: list[int]
) -> None:
    """§6.2.5: sibling containment nodes are OR'ed, those naming a key with those that do not."""
    body = "".join(f"<interface><name>q{i}</name><type/></interface>" for i in range(0, K, 2))
    body += "<interface><enabled>false</enabled><name/></interface>"
    result = apply_subtree_filter(schema, DATA, _nodes(_interfaces(body)))
    assert _entries(result) == [
        {"name": f"q{i}", "type": ETH} if i % 2 == 0 else {"name": f"q{i}", "enabled": False}
        for i in range(K)
    ]
    assert evaluations[0] <= K + K // 2 + 2


def test_many_sibling_containers_of_one_list_merge_in_linear_steps(schema: DeviceSchema) -> None:
    """K sibling ``<interfaces>`` nodes each naming one entry: their results merge by key."""
    body = "".join(_interfaces(f"<interface><name>q{i}</name></interface>") for i in range(K))
    result = apply_subtree_filter(schema, DATA, _nodes(body), budget=20 * K)
    assert _entries(result) == [_entry(i) for i in range(K)]


def test_a_filter_over_the_budget_is_refused(schema: DeviceSchema) -> None:
    """The same containment node repeated: its work is counted and stopped (resource-denied)."""
    nodes = _nodes(_interfaces("<interface><type/></interface>" * 50))
    with pytest.raises(SubtreeTooCostly, match="more than 10000 steps") as err:
        apply_subtree_filter(schema, DATA, nodes, budget=10_000)
    assert err.value.netconf_tag == "resource-denied"
    assert subtree.MAX_STEPS >= 100 * K  # an ordinary filter of a long list fits
    assert _entries(apply_subtree_filter(schema, DATA, _nodes(_interfaces("<interface/>"))))


def test_a_filter_with_too_many_elements_is_refused_before_parsing() -> None:
    one = _interfaces("<interface><name/></interface>")  # three elements
    element = etree.fromstring(
        f'<filter type="subtree">{one * (subtree.MAX_FILTER_NODES // 3 + 1)}</filter>'
    )
    with pytest.raises(PayloadTooLarge, match="more than 100000 elements") as err:
        parse_subtree_filter(element)
    assert err.value.netconf_tag == "too-big"
    assert len(_nodes(one * 1000)) == 1000

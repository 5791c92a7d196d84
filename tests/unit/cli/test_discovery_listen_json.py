"""``zerotouch discovery listen`` prints one JSON object per candidate (RFC 8259): an
objective-value from the link that JSON cannot carry (a CBOR NaN or infinity, RFC 8949
§3.3) is shown as text, so a neighbour cannot make the output unparseable."""

from __future__ import annotations

import ipaddress
import json
import math
import socket
from collections.abc import Iterator

import pytest

from zerotouch_plugin.artifacts.grasp import AN_PROXY, Flood, Locator, Objective
from zerotouch_plugin.cli import main
from zerotouch_plugin.services.discovery.grasp import GraspListener


@pytest.fixture
def sender(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """Datagrams sent here reach the listener the command opens (on [::1], not ff02::13)."""
    receiver = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    receiver.bind(("::1", 0))
    monkeypatch.setattr(GraspListener, "_open", lambda self: receiver.dup())
    out = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    out.connect(receiver.getsockname())
    yield out
    out.close()
    receiver.close()


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_value_json_cannot_carry_is_printed_as_text(
    sender: socket.socket, capsys: pytest.CaptureFixture[str], value: float
) -> None:
    objective = Objective(AN_PROXY, 4, 1, value)
    locator = Locator.ip("fe80::1", port=4443)
    sender.send(Flood(7, ipaddress.IPv6Address("fe80::1"), 0, ((objective, locator),)).encode())
    code = main(["discovery", "listen", "--method", "grasp", "--interface", "lo", "--timeout", "3"])
    assert code == 0
    (line,) = capsys.readouterr().out.splitlines()

    def refuse(constant: str) -> object:
        raise ValueError(f"{constant} is not JSON")

    record = json.loads(line, parse_constant=refuse)
    assert record["value"] == repr(value) and record["port"] == 4443

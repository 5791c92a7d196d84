"""netopeer2 on sysrepo as a second host of the pledge agent (tests/support/netopeer2.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ncclient import manager

from tests.support.netopeer2 import Netopeer2, netopeer2_server

NETCONF_SERVER_NS = "urn:ietf:params:xml:ns:yang:ietf-netconf-server"


@pytest.fixture
def netopeer2() -> Iterator[Netopeer2]:
    with netopeer2_server() as server:
        yield server


def test_the_fixture_serves_netconf_over_ssh_on_loopback_only(netopeer2: Netopeer2) -> None:
    with manager.connect(
        host="127.0.0.1",
        port=netopeer2.ssh_port,
        username=netopeer2.user,
        key_filename=str(netopeer2.ssh_key),
        hostkey_verify=False,
        look_for_keys=False,
        allow_agent=False,
        timeout=30,
    ) as session:
        assert "urn:ietf:params:netconf:base:1.1" in session.server_capabilities
        # NETCONF 1.1 servers list their modules in the YANG library (RFC 8526), not as
        # capabilities.
        assert any(
            c.startswith("urn:ietf:params:netconf:capability:yang-library:1.1")
            for c in session.server_capabilities
        )
        reply = session.get_config(
            source="running",
            filter=("subtree", f'<netconf-server xmlns="{NETCONF_SERVER_NS}"/>'),
        )
    endpoints = reply.data.findall(f".//{{{NETCONF_SERVER_NS}}}endpoint")
    assert [e.findtext(f"{{{NETCONF_SERVER_NS}}}name") for e in endpoints] == ["test-ssh"]
    address = reply.data.findtext(f".//{{{NETCONF_SERVER_NS}}}local-address")
    assert address == "127.0.0.1"
    assert int(reply.data.findtext(f".//{{{NETCONF_SERVER_NS}}}local-port")) == netopeer2.ssh_port

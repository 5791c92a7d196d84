"""``zerotouch demo --discovery``: the devices are told nothing and find their registrar.

Each device runs in a network namespace of its own, on a link to the join proxy's host only
(the devices' links are bridged there); the registrar and the MASA run in a third host on the
proxy's other link, with no route from the devices. The proxy learns the registrar by URL
and announces itself by GRASP (RFC 8990 M_FLOOD ``AN_Proxy``, RFC 8995 §4.1.1); each device
runs ``device run --discovery grasp --interface eth0`` with no ``--registrar``, finds the
proxy, and enrolls through it (the proxy relays the TLS byte for byte). The day-0 hand-off
and the NMS steps of the plain demo are left out: a join proxy carries connections from the
pledge's side only, so the registrar cannot reach the devices behind it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from zerotouch_plugin.demo.flow import (
    HOST,
    Demo,
    Device,
    Step,
    idevids,
    manufacturer_pki,
    policy,
)
from zerotouch_plugin.demo.flow import domain_pki as _domain_pki
from zerotouch_plugin.demo.netns import Network
from zerotouch_plugin.demo.services import StepFailed

__all__ = ["DISCOVERY_STEPS", "DiscoveryDemo", "found_by"]

REGISTRAR_HOST, PROXY_HOST, BRIDGE = "registrar", "proxy", "br0"


class DiscoveryDemo(Demo):
    """The demo over ``DISCOVERY_STEPS``; its namespaces are removed when it finishes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.network = Network()
        super().__init__(*args, steps=DISCOVERY_STEPS, on_finish=self._remove, **kwargs)

    def _remove(self) -> str:
        removed = self.network.close()
        return f"removed {len(removed)} network namespaces"


def _network(demo: Demo) -> Network:
    assert isinstance(demo, DiscoveryDemo), "a discovery step runs in a DiscoveryDemo"
    return demo.network


def _device_host(device: Device) -> str:
    return device.name


def _port(address: str) -> int:
    return int(address.rstrip("/").rsplit(":", 1)[1])


async def _serve_in(demo: Demo, host: str, name: str, listener: str, *args: str) -> tuple[Any, str]:
    service = demo.services.start(name, *args, prefix=_network(demo).prefix(host))
    prefix = f"listening {listener} "
    line = await service.wait_line(
        lambda text: text.startswith(prefix), prefix.strip(), demo.until(), demo.services
    )
    return service, line.split()[-1]


def _make_network(demo: Demo) -> str:
    net = _network(demo)
    for host in (REGISTRAR_HOST, PROXY_HOST, *(_device_host(d) for d in demo.devices)):
        net.add(host)
    net.link(PROXY_HOST, REGISTRAR_HOST)  # proxy eth0 -- registrar eth0
    pledge_side = [net.link(_device_host(d), PROXY_HOST)[1] for d in demo.devices]
    net.bridge(PROXY_HOST, BRIDGE, pledge_side)
    return (
        f"namespaces {', '.join(net.name(h) for h in net.hosts)}: each device's eth0 "
        f"to the proxy's {BRIDGE}, the proxy's eth0 to the registrar's eth0; IPv6 link-local "
        "only, no route from the devices to the registrar"
    )


async def network(demo: Demo) -> str:
    return await asyncio.to_thread(_make_network, demo)


async def start_masa(demo: Demo) -> str:
    port = demo.masa_url.rsplit(":", 1)[1]
    masa, address = await _serve_in(
        demo, REGISTRAR_HOST, "masa", "masa",
        "masa", "serve", "--dir", "vendor", "--listen", f"{HOST}:{port}",
    )  # fmt: skip
    return f"MASA {address} in the registrar's host (pid {masa.popen.pid})"


async def start_registrar(demo: Demo) -> str:
    registrar, address = await _serve_in(
        demo, REGISTRAR_HOST, "registrar", "registrar",
        "registrar", "serve", "--dir", "registrar", "--listen", "[::]:0",
    )  # fmt: skip
    link_local = await asyncio.to_thread(_network(demo).link_local, REGISTRAR_HOST, "eth0")
    # as the proxy reaches it: the registrar's link-local address, zone = the proxy's eth0
    demo.registrar_url = f"https://[{link_local}%25eth0]:{_port(address)}"
    return f"registrar {demo.registrar_url} (pid {registrar.popen.pid})"


async def start_proxy(demo: Demo) -> str:
    proxy, address = await _serve_in(
        demo, PROXY_HOST, "proxy", "proxy",
        "proxy", "serve", "--listen", "[::]:0", "--interface", BRIDGE,
        "--registrar", demo.registrar_url, "--announce", "grasp",
    )  # fmt: skip
    return (
        f"join proxy {address} on {BRIDGE}, relaying to {demo.registrar_url}, announcing "
        f"AN_Proxy by GRASP (pid {proxy.popen.pid})"
    )


async def _start_device(demo: Demo, device: Device) -> None:
    device.service, address = await _serve_in(
        demo, _device_host(device), device.name, "netconf-tls",
        "device", "run", "--dir", device.folder, "--netconf-tls", "[::]:0",
        "--discovery", "grasp", "--interface", "eth0",
    )  # fmt: skip
    device.ports["netconf-tls"] = _port(address)


async def start_devices(demo: Demo) -> str:
    await asyncio.gather(*(_start_device(demo, device) for device in demo.devices))
    return (
        f"{len(demo.devices)} device(s): device run --discovery grasp --interface eth0, no "
        "--registrar (factory identity only)"
    )


async def enrollment(demo: Demo) -> str:
    async def enrolled(device: Device) -> None:
        assert device.service is not None
        expected = f"enrolled {device.serial}"
        await device.service.wait_line(
            lambda text: text.startswith(expected), expected, demo.until(), demo.services
        )

    await asyncio.gather(*(enrolled(device) for device in demo.devices))
    listed = json.loads(
        await demo.services.run("registrar", "devices", "--dir", "registrar", "--json")
    )
    states = {record["serial"]: record.get("state") for record in listed["devices"]}
    late = [d.serial for d in demo.devices if states.get(d.serial) != "enroll-confirmed"]
    if late:
        raise StepFailed(
            f"{late[0]}: registrar state {states.get(late[0])}, not enroll-confirmed",
            logs=[demo.path("logs/registrar.log")],
        )
    return (
        f"{len(demo.devices)} device(s) enrolled through the proxy: voucher accepted, LDevID "
        "installed, enrollstatus confirmed at the registrar (registrar devices)"
    )


def found_by(demo: Demo, device: Device) -> str:
    """How ``device`` found its registrar, from the events it kept
    (the folder's ``bootstrap-state.json``: candidate-found and enrolled)."""
    path = demo.path(f"{device.folder}/bootstrap-state.json")
    try:
        events = json.loads(path.read_text())["events"]
    except (OSError, ValueError, KeyError) as exc:
        raise StepFailed(f"{device.name}: no bootstrap events in {path}: {exc}") from exc
    found = [e.get("detail", "") for e in events if e.get("event") == "candidate-found"]
    used = [e.get("detail", "") for e in events if e.get("event") == "enrolled"]
    if not found or not used:
        raise StepFailed(f"{device.name}: its events name no candidate found and enrolled")
    return f"{device.name} found {found[-1]} and enrolled through {used[-1]}"


async def how_found(demo: Demo) -> str:
    lines = [found_by(demo, device) for device in demo.devices]
    demo.found = lines
    return "; ".join(lines)


DISCOVERY_STEPS: tuple[Step, ...] = (
    Step("manufacturer-pki", "manufacturer PKI", (), manufacturer_pki),
    Step("idevids", "factory identities (IDevID)", ("manufacturer-pki",), idevids),
    Step("network", "network namespaces and links", (), network),
    Step("domain-pki", "owner's domain PKI", ("manufacturer-pki",), _domain_pki),
    Step("policy", "allow the devices' serials", ("domain-pki",), policy),
    Step("masa", "start the MASA (registrar's host)", ("manufacturer-pki", "network"), start_masa),
    Step(
        "registrar",
        "start the registrar (its own host)",
        ("domain-pki", "network"),
        start_registrar,
    ),
    Step("proxy", "start the join proxy (GRASP AN_Proxy)", ("registrar",), start_proxy),
    Step(
        "devices",
        "start the devices (each in its own host)",
        ("idevids", "masa", "proxy", "policy"),
        start_devices,
    ),
    Step("enrollment", "devices find the proxy and enroll", ("devices",), enrollment),
    Step("how-found", "how each device found its registrar", ("enrollment",), how_found),
)

"""A three-host BRSKI site in network namespaces, for the join proxy and discovery tests.

Topology (tests/support/netns.py hosts, IPv6 link-local only, no route between the ends)::

    pledge [pledge_if] -- [proxy_pledge_if] proxy [proxy_registrar_if] -- [registrar_if] registrar
    (the MASA runs in the registrar host, on its 127.0.0.1)

* the vendor folder (``lab.brski.vendor``) and the registrar folder (``lab.brski.domain``)
  are made as in tests/e2e/test_brski_flow.py (``make_lab``); IDevIDs name the MASA at
  ``https://127.0.0.1:<masa_port>``, which the registrar reaches inside its own host;
* ``discovery_lab(root, ...)`` starts the MASA and ``zerotouch registrar serve --listen
  [::]:0`` in the registrar host (``registrar_announce="grasp,mdns"`` adds ``--announce ...
  --interface <registrar_if>``), and ``zerotouch proxy serve --listen [::]:0 --interface
  <proxy_pledge_if>`` in the proxy host, given the registrar by URL (its link-local address
  with zone), or with ``proxy_by_grasp=True`` finding it by GRASP AN_join_registrar on
  ``proxy_registrar_if``; ``proxy_announce="grasp,mdns"`` makes the proxy announce itself;
  ``start_proxy=False`` leaves it to the test (``lab.start_proxy(...)``);
* ``lab.start_in(host, role, ...)`` starts any other ``zerotouch`` server in a host (e.g. a
  second proxy, ``lab.start_proxy(registrar=URL)`` in front of a dead registrar);
* ``lab.new_pledge()`` makes an allowed pledge folder; ``lab.run_pledge(...)`` runs
  ``zerotouch ARGS`` in the pledge host, ``lab.start_in_pledge(role, ...)`` starts a server
  (e.g. ``device run``) there; ``lab.proxy_url`` is the proxy as the pledge reaches it
  (``https://[fe80::..%25eth0]:PORT``, RFC 6874 zone);
* everything is stopped and the namespaces removed when the context ends; skips where
  namespaces cannot be made (netns.py).

Example::

    with discovery_lab(tmp_path, proxy_announce="grasp") as lab:
        serial, folder = lab.new_pledge()
        result = lab.run_pledge("pledge", "enroll", "--dir", folder,
                                "--registrar", lab.proxy_url, check=False)
        assert lab.brski.state(serial) == "enroll-confirmed"
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.test_brski_flow import Lab as BrskiLab
from tests.e2e.test_brski_flow import make_lab
from tests.support.netns import Host, Lab, netns_lab
from tests.support.processes import ServerProcess, run_cli, start_server

__all__ = ["DiscoveryLab", "discovery_lab"]


def _port(url: str) -> int:
    return int(url.rstrip("/").rpartition(":")[2])


@dataclass
class DiscoveryLab:
    """The hosts, their interfaces and the servers running in them (see the module doc)."""

    net: Lab
    brski: BrskiLab
    pledge: Host
    proxy: Host
    registrar: Host
    pledge_if: str
    proxy_pledge_if: str
    proxy_registrar_if: str
    registrar_if: str
    servers: list[ServerProcess] = field(default_factory=list)
    registrar_process: ServerProcess | None = None
    proxy_process: ServerProcess | None = None

    # --- addresses ---

    @property
    def proxy_link_local(self) -> str:
        """The proxy's address on the pledge's link."""
        return self.proxy.link_local(self.proxy_pledge_if)

    @property
    def registrar_link_local(self) -> str:
        """The registrar's address on the proxy's registrar-facing link."""
        return self.registrar.link_local(self.registrar_if)

    @property
    def registrar_port(self) -> int:
        assert self.registrar_process is not None
        return _port(self.registrar_process.url)

    @property
    def proxy_port(self) -> int:
        assert self.proxy_process is not None
        return _port(self.proxy_process.url)

    @property
    def proxy_url(self) -> str:
        """The proxy as the pledge reaches it (zone: the pledge's interface, RFC 6874)."""
        return f"https://[{self.proxy_link_local}%25{self.pledge_if}]:{self.proxy_port}"

    @property
    def registrar_url_from_proxy(self) -> str:
        return (
            f"https://[{self.registrar_link_local}%25{self.proxy_registrar_if}]:"
            f"{self.registrar_port}"
        )

    # --- processes ---

    def start_in(self, host: Host, role: str, *args: str | os.PathLike[str]) -> ServerProcess:
        """``zerotouch ARGS`` in ``host`` until it prints ``listening <role> ...``; stopped
        with the lab."""
        process = start_server(role, *args, prefix=host.prefix([]))
        self.servers.append(process)
        return process

    def start_registrar(self, *extra: str) -> ServerProcess:
        self.registrar_process = self.start_in(
            self.registrar, "registrar", "-v", "registrar", "serve", "--dir", self.brski.domain,
            "--listen", "[::]:0", *extra,
        )  # fmt: skip
        return self.registrar_process

    def start_proxy(
        self, *extra: str, by_grasp: bool = False, registrar: str | None = None
    ) -> ServerProcess:
        """``proxy serve`` on the pledge link, given the lab's registrar by URL (or
        ``registrar``, e.g. a dead one's) unless ``by_grasp`` (then ``--registrar-interface``);
        ``extra`` e.g. ``--announce grasp``. The last one started is ``proxy_process``."""
        upstream = (
            ("--registrar-interface", self.proxy_registrar_if)
            if by_grasp
            else ("--registrar", registrar or self.registrar_url_from_proxy)
        )
        self.proxy_process = self.start_in(
            self.proxy, "proxy", "-v", "proxy", "serve", "--listen", "[::]:0",
            "--interface", self.proxy_pledge_if, *upstream, *extra,
        )  # fmt: skip
        return self.proxy_process

    def stop(self, process: ServerProcess | None) -> None:
        if process is not None:
            process.stop()

    def new_pledge(self) -> tuple[str, Path]:
        """An IDevID folder for a new serial, allowed by the registrar."""
        return self.brski.pledge()

    def run_pledge(
        self, *args: str | os.PathLike[str], check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """``zerotouch ARGS`` to completion in the pledge host."""
        return run_cli(*args, check=check, timeout=timeout, prefix=self.pledge.prefix([]))

    def start_in_pledge(self, role: str, *args: str | os.PathLike[str]) -> ServerProcess:
        """A ``zerotouch`` server (e.g. ``device run``) in the pledge host, ready when it
        prints ``listening <role> ...``."""
        return self.start_in(self.pledge, role, *args)

    def close(self) -> None:
        for process in reversed(self.servers):
            process.stop()
            process.log_path.unlink(missing_ok=True)
        self.servers.clear()


@contextmanager
def discovery_lab(
    root: Path,
    *,
    registrar_announce: str | None = None,
    proxy_announce: str | None = None,
    proxy_by_grasp: bool = False,
    start_proxy: bool = True,
) -> Iterator[DiscoveryLab]:
    """The site of the module doc, running; removed on exit."""
    brski = make_lab(root)
    with netns_lab() as net:
        pledge, proxy, registrar = net.host("pledge"), net.host("proxy"), net.host("registrar")
        pledge_if, proxy_pledge_if = net.link(pledge, proxy)
        proxy_registrar_if, registrar_if = net.link(proxy, registrar)
        lab = DiscoveryLab(
            net, brski, pledge, proxy, registrar,
            pledge_if, proxy_pledge_if, proxy_registrar_if, registrar_if,
        )  # fmt: skip
        try:
            lab.start_in(
                registrar, "masa", "-v", "masa", "serve", "--dir", brski.vendor,
                "--listen", f"127.0.0.1:{brski.masa_port}",
            )  # fmt: skip
            announce = (
                ("--announce", registrar_announce, "--interface", registrar_if)
                if registrar_announce
                else ()
            )
            lab.start_registrar(*announce)
            if start_proxy:
                extra = ("--announce", proxy_announce) if proxy_announce else ()
                lab.start_proxy(*extra, by_grasp=proxy_by_grasp)
            yield lab
        finally:
            lab.close()

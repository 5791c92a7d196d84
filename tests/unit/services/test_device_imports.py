"""What a device loads at start: a listener's library only with that listener, the
discovery finders and HTTPS clients of the pledge agent only when a run needs them (the idle
memory of ``zerotouch device run``, benchmarks/device_rss_bench.py).

Checked by the modules a fresh interpreter has loaded, not by memory, so the figure of one
machine cannot make it pass or fail.
"""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import json, sys
import zerotouch_plugin.cli.device
import zerotouch_plugin.services.device_server
import zerotouch_plugin.services.pledge_agent
print(json.dumps(sorted(sys.modules)))
"""

# library -> the listener or step that needs it
LAZY = {
    "asyncssh": "NETCONF over SSH",
    "aiohttp": "RESTCONF, LDevID renewal",
    "zeroconf": "mDNS discovery",
    "dns": "DNS-SD discovery",
    "sqlalchemy": "nothing on a device",
}


def test_a_device_loads_no_listener_or_discovery_library_at_start() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert {"cryptography", "yangson", "lxml"} <= loaded  # the probe did import the device
    early = {name: LAZY[name] for name in LAZY if name in loaded}
    assert early == {}
    modules = set(json.loads(done.stdout))
    assert "zerotouch_plugin.services.netconf.ssh" not in modules
    assert "zerotouch_plugin.services.restconf" not in modules
    assert "zerotouch_plugin.services.pledge_client" not in modules

"""RESTCONF listens from the start but loads its HTTP server (aiohttp) with the first
connection (services/device_server.py): the idle memory of a device managed over NETCONF,
benchmarks/device_rss_bench.py. Checked by the modules a fresh interpreter has loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

_PROBE = """
import asyncio, json, sys, tempfile
from pathlib import Path
from tests.support.device_pki import make_device_pki
from zerotouch_plugin.config import DeviceConfig
from zerotouch_plugin.device.datastore import Datastore
from zerotouch_plugin.device.domain_files import write_domain
from zerotouch_plugin.services.device_server import DeviceServer

async def get(port, ctx):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    writer.write(b"GET /restconf/yang-library-version HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    status = await asyncio.wait_for(reader.readline(), 30)
    writer.close()
    return status.decode().strip()

async def main(folder):
    pki = make_device_pki()
    write_domain(folder, key=pki.server.key, chain=[pki.server.cert], anchors=[pki.ca.cert])
    device = DeviceServer(folder, DeviceConfig())
    bound = await device.start(restconf_address="127.0.0.1:0")
    port = bound["restconf"][1]
    idle = "aiohttp" in sys.modules
    state = "ietf-restconf-monitoring:restconf-state" in device.datastores.view(
        Datastore.OPERATIONAL
    )
    ctx = pki.client_context()
    ctx.check_hostname = False
    first = await asyncio.gather(*(get(port, ctx) for _ in range(3)))
    stranger = pki.client_context(pki.stranger)
    stranger.check_hostname = False
    try:
        refused = await get(port, stranger)
    except (OSError, asyncio.IncompleteReadError) as exc:
        refused = type(exc).__name__
    await device.close()
    print(json.dumps({"idle": idle, "state": state, "first": first, "refused": refused,
                      "loaded": "aiohttp" in sys.modules, "port": port}))

with tempfile.TemporaryDirectory() as tmp:
    asyncio.run(main(Path(tmp)))
"""


def test_restconf_loads_its_server_with_the_first_connection() -> None:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=REPO,
        env=env,
    )
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["port"] > 0  # bound at start
    assert result["idle"] is False  # listening without aiohttp
    assert result["state"] is True  # RFC 8040 §9.1 state published before any client
    # the connections queued while the server loaded are all served
    assert all(status.startswith("HTTP/1.1 200") for status in result["first"]), result
    assert not result["refused"].startswith("HTTP/1.1 200")  # client certificates still checked
    assert result["loaded"] is True

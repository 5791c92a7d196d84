"""RESTCONF listens from the start but loads its HTTP server (aiohttp) with the first
connection (services/device_server.py): the idle memory of a device managed over NETCONF,
benchmarks/device_rss_bench.py. Checked by the modules a fresh interpreter has loaded; a
server that cannot load then ends the device's run (``DeviceServer.serve``) with the cause."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]

_PROBE = """
import asyncio, json, sys, tempfile, threading
from pathlib import Path
from tests.support.device_pki import make_device_pki
from zerotouch_plugin.config import DeviceConfig
from zerotouch_plugin.device.datastore import Datastore
from zerotouch_plugin.device.domain_files import write_domain
from zerotouch_plugin.services.device_server import DeviceServer

importers = {}

class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "aiohttp":
            importers.setdefault(name, threading.current_thread().name)
        return None

sys.meta_path.insert(0, Watch())

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
                      "loaded": "aiohttp" in sys.modules, "port": port,
                      "importer": importers.get("aiohttp")}))

with tempfile.TemporaryDirectory() as tmp:
    asyncio.run(main(Path(tmp)))
"""


# aiohttp made unimportable (a broken installation) before the first client connects.
_BROKEN = """
import asyncio, json, sys, tempfile
from pathlib import Path
from tests.support.device_pki import make_device_pki
from zerotouch_plugin.config import DeviceConfig
from zerotouch_plugin.device.domain_files import write_domain
from zerotouch_plugin.services.device_server import DeviceServer

async def main(folder):
    pki = make_device_pki()
    write_domain(folder, key=pki.server.key, chain=[pki.server.cert], anchors=[pki.ca.cert])
    device = DeviceServer(folder, DeviceConfig())
    port = (await device.start(restconf_address="127.0.0.1:0"))["restconf"][1]
    sys.modules["aiohttp"] = None
    ctx = pki.client_context()
    ctx.check_hostname = False
    try:
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=ctx), 20)
        client = "connected"
    except TimeoutError:
        client = "unanswered"
    except (OSError, asyncio.IncompleteReadError) as exc:
        client = type(exc).__name__
    try:
        await asyncio.wait_for(device.serve(asyncio.Event()), 30)
        ended = "stopped"
    except ImportError as exc:
        ended = str(exc)
    await device.close()
    print(json.dumps({"client": client, "ended": ended, "bound": sorted(device.bound)}))

with tempfile.TemporaryDirectory() as tmp:
    asyncio.run(main(Path(tmp)))
"""


def _probe(code: str) -> tuple[dict[str, Any], str]:
    """What ``code`` printed last (JSON) in a fresh interpreter, and its stderr."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=REPO,
        env=env,
    )
    return json.loads(done.stdout.splitlines()[-1]), done.stderr


def test_restconf_loads_its_server_with_the_first_connection() -> None:
    result, _ = _probe(_PROBE)
    assert result["port"] > 0  # bound at start
    assert result["idle"] is False  # listening without aiohttp
    assert result["state"] is True  # RFC 8040 §9.1 state published before any client
    # the connections queued while the server loaded are all served
    assert all(status.startswith("HTTP/1.1 200") for status in result["first"]), result
    assert not result["refused"].startswith("HTTP/1.1 200")  # client certificates still checked
    assert result["loaded"] is True
    # imported beside the event loop, which goes on serving the sessions already open
    assert result["importer"] not in (None, "MainThread")


def test_a_restconf_server_that_cannot_load_ends_the_device() -> None:
    """The first client finds no server and the device's run ends with the cause, logged:
    the device does not stay up without RESTCONF (as NETCONF/SSH, test_device_idle_libraries)."""
    result, stderr = _probe(_BROKEN)
    assert result["client"] not in {"connected", "unanswered"}, result  # refused at once
    assert "aiohttp" in result["ended"]  # serve raised the import error
    assert "restconf" not in result["bound"]
    assert "RESTCONF server failed to start: not listening" in stderr

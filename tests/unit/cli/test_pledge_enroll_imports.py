"""``zerotouch pledge enroll --registrar URL`` loads what an enrollment needs and nothing more:
no aiohttp (the pledge speaks HTTP/1.1 itself), no database layer, no SSH, and the discovery
libraries only with ``--discovery``. Start-up time of the command is mostly imports, so the
module list keeps it fast; checked by the modules a fresh interpreter has loaded."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.services import certfiles

_PROBE = """
import contextlib, io, json, sys
from zerotouch_plugin.cli import main
err = io.StringIO()
with contextlib.redirect_stderr(err):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exit:
        code = exit.code
print(json.dumps({"code": code, "stderr": err.getvalue(), "modules": sorted(sys.modules)}))
"""

NOT_FOR_ENROLL = (
    "aiohttp",
    "sqlalchemy",
    "asyncssh",
    "zeroconf",
    "dns",
    "ncclient",
    "zerotouch_plugin.store",
    "zerotouch_plugin.services.discovery",
    "zerotouch_plugin.services.registrar",
)


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, never listened: connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_pledge_enroll_loads_no_web_framework_database_or_discovery(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    vendor = certs.make_ca("vendor", now=now)
    idevid = certs.issue_idevid(vendor, "SN-IMPORTS-1", masa_url=None, now=now)
    certfiles.write_certs(tmp_path / "idevid.pem", [idevid.cert, vendor.cert])
    certfiles.write_key(tmp_path / "idevid.key", idevid.key)
    certfiles.write_certs(tmp_path / "masa-ca.pem", [vendor.cert])
    url = f"https://127.0.0.1:{_closed_port()}"
    argv = ["pledge", "enroll", "--dir", str(tmp_path), "--registrar", url, "--retries", "0"]
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(done.stdout)
    assert result["code"] == 1  # nothing listens there: the enrollment ran, and failed
    assert "unreachable" in result["stderr"], result["stderr"]
    modules = result["modules"]
    assert "zerotouch_plugin.services.pledge_client" in modules
    assert "zerotouch_plugin.roles.pledge" in modules
    unwanted = [m for m in modules if any(m == n or m.startswith(n + ".") for n in NOT_FOR_ENROLL)]
    assert unwanted == []

"""Run ``zerotouch masa serve`` as a real process and talk to it as a registrar would."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.support.masa_world import World
from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.artifacts.cms import MEDIA_TYPE_VOUCHER_CMS
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services._tls import client_context
from zerotouch_plugin.services.masa_app import (
    CA_CERT,
    SIGNER_CERT,
    SIGNER_KEY,
    TLS_CERT,
    TLS_KEY,
    VOUCHER_PATH,
)

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_vendor_folder(world: World, folder: Path) -> Path:
    """The vendor folder the MASA serves from, with ``world``'s manufacturer PKI."""
    folder.mkdir(parents=True, exist_ok=True)
    certfiles.write_certs(folder / CA_CERT, [world.vendor_ca.cert])
    for (pem, key), ident in (
        ((SIGNER_CERT, SIGNER_KEY), world.masa_signer),
        ((TLS_CERT, TLS_KEY), world.masa_tls),
    ):
        certfiles.write_certs(folder / pem, [ident.cert, *ident.chain])
        certfiles.write_key(folder / key, ident.key)
    return folder


@dataclass
class MasaProcess:
    folder: Path
    port: int
    args: tuple[str, ...] = ()
    proc: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> MasaProcess:
        cmd = [
            sys.executable,
            "-m",
            "zerotouch_plugin",
            "-v",
            "masa",
            "serve",
            "--dir",
            str(self.folder),
            "--listen",
            f"127.0.0.1:{self.port}",
            *self.args,
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not sel.select(timeout=0.5):
                if self.proc.poll() is not None:
                    break
                continue
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line)
            if line.startswith("listening masa https://"):
                return self
        self.stop()
        raise RuntimeError("masa did not start:\n" + "".join(self.output))

    def stop(self) -> int:
        """SIGTERM, then the exit status (the rest of the output is kept in ``output``)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rest, _ = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rest, _ = self.proc.communicate()
        self.output.append(rest or "")
        code = self.proc.returncode
        self.proc = None
        return int(code)


async def post(
    url: str,
    body: bytes,
    *,
    trust: Identity | list[object] | None,
    client: Identity | None = None,
    path: str = VOUCHER_PATH,
    content_type: str = MEDIA_TYPE_VOUCHER_CMS,
    accept: str | None = MEDIA_TYPE_VOUCHER_CMS,
) -> tuple[int, dict[str, str], bytes]:
    """POST ``body`` over real TLS (server verified against ``trust``); status, headers, body."""
    anchors = [trust.cert] if isinstance(trust, Identity) else trust
    ctx = client_context(client, trust=anchors)  # type: ignore[arg-type]
    headers = {"Content-Type": content_type}
    if accept is not None:
        headers["Accept"] = accept
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + path, data=body, headers=headers, ssl=ctx) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()

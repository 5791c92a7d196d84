"""The MASA and RESTCONF listeners past their connection caps, against real processes, with
curl as the client: the first connections past the cap complete TLS and are answered from an
overload slot with Retry-After (the MASA 503 and text/plain; RESTCONF the status RFC 8040 §7
gives resource-denied, with its ``ietf-restconf:errors`` body), then closed; with every
overload slot held, the next connection is closed before the handshake."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_hardening_limits import closed_within, connect
from tests.support.device_pki import make_device_pki
from tests.support.device_process import device, write_device_config
from tests.support.processes import free_port, run_cli, server
from zerotouch_plugin.errors import UpstreamUnavailable
from zerotouch_plugin.services._limits import OVERLOAD_RETRY_AFTER
from zerotouch_plugin.services.certfiles import write_certs, write_key
from zerotouch_plugin.services.restconf.wire import status_and_tag

CAP = 4
SLOTS = 4  # overload_slots of a cap of 4: the lower bound
LIMITS = f"""
[limits]
max_connections = {CAP}
max_connections_per_ip = {CAP}
header_timeout = 9
"""


def held(port: int, count: int, context: ssl.SSLContext) -> list[ssl.SSLSocket]:
    """``count`` TLS connections with the handshake done and no request sent."""
    return [context.wrap_socket(connect(port), server_hostname="127.0.0.1") for _ in range(count)]


def curl(url: str, *tls: str) -> tuple[int, dict[str, str], str]:
    """Status, header fields (lower-case names) and body of one request by curl."""
    done = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "--max-time", "30", "-i", *tls, url],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    head, _, body = done.stdout.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    assert lines, done.stderr
    fields = dict(
        (name.strip().lower(), value.strip())
        for name, _, value in (line.partition(":") for line in lines[1:])
    )
    return int(lines[0].split()[1]), fields, body


def over_the_cap(
    port: int, context: ssl.SSLContext, url: str, *tls: str
) -> tuple[int, dict[str, str], str]:
    """Fill the cap, ask once (answered from an overload slot), then fill the overload slots:
    the next connection is closed at once. The answer to the one request."""
    regular = held(port, CAP, context)
    try:
        status, fields, body = curl(url, *tls)
        overload = held(port, SLOTS, context)
        try:
            late = connect(port)
            assert closed_within(late, 2), "a connection past every overload slot was held"
            late.close()
        finally:
            for sock in overload:
                sock.close()
    finally:
        for sock in regular:
            sock.close()
    return status, fields, body


@pytest.fixture(scope="module")
def masa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    root = tmp_path_factory.mktemp("masa-overload")
    port = free_port()
    run_cli("vendor", "init", "--dir", root / "V", "--masa-url", f"https://127.0.0.1:{port}")
    (root / "V" / "masa.toml").write_text(LIMITS)
    with server("masa", "masa", "serve", "--dir", root / "V", "--listen",
                f"127.0.0.1:{port}") as process:  # fmt: skip
        yield port, process.log_path


def test_masa_past_its_cap_answers_503_with_retry_after(masa: tuple[int, Path]) -> None:
    port, log = masa
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    url = f"https://127.0.0.1:{port}/.well-known/brski/requestauditlog"
    status, fields, body = over_the_cap(port, context, url, "-k")
    assert status == 503, body
    assert fields["retry-after"] == str(OVERLOAD_RETRY_AFTER)
    assert fields["connection"].lower() == "close"
    assert "over capacity" in body
    assert "answered 503 with Retry-After" in log.read_text()
    # below the cap again, the same request reaches the MASA's handler (405: it is a POST)
    assert curl(url, "-k")[0] == 405


def test_restconf_past_its_cap_answers_with_retry_after_and_an_errors_body(
    tmp_path: Path,
) -> None:
    """RESTCONF answers with the status RFC 8040 §7 gives the error-tag (resource-denied)."""
    pki = make_device_pki()
    files = pki.write(tmp_path / "pki")
    write_certs(tmp_path / "ldevid.pem", [pki.server.cert, *pki.server.chain])
    write_key(tmp_path / "ldevid.key", pki.server.key)
    write_certs(tmp_path / "domain-ca.pem", [pki.ca.cert])
    write_device_config(tmp_path, LIMITS)
    tls = ("--cacert", str(files["ca"]), "--cert", str(files["cert"]), "--key", str(files["key"]))
    with device(tmp_path, {"restconf": "127.0.0.1:0"}) as process:
        port = process.ports["restconf"]
        url = f"https://127.0.0.1:{port}/restconf/yang-library-version"
        status, fields, body = over_the_cap(port, pki.client_context(), url, *tls)
        assert status == status_and_tag(UpstreamUnavailable("over capacity"))[0], body
        assert fields["retry-after"] == str(OVERLOAD_RETRY_AFTER)
        assert (
            "ietf-restconf:errors" in body and "over capacity" in body and "resource-denied" in body
        )
        assert curl(url, *tls)[0] == 200
        assert "restconf: refusing connections" in process.log

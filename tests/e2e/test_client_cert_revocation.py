"""Revoking a client certificate of ``registrar issue-client-cert`` against real registrars on
127.0.0.1: an admin certificate works with curl on the admin API, holds its event stream and
opens a console session; ``registrar revoke --fingerprint`` (a CLI run of its own) makes the
admin API and the console refuse it, and ends the stream and the session, within
``REVOCATIONS_MAX_AGE``; on PostgreSQL, in every registrar process sharing the database."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.test_brski_flow import Lab, make_lab
from tests.support.processes import run_cli
from zerotouch_plugin.roles.client_certs import REVOCATIONS_MAX_AGE

# the revocation must arrive within REVOCATIONS_MAX_AGE; the rest is the test's own slack
DEADLINE = REVOCATIONS_MAX_AGE.total_seconds() + 5


def curl(url: str, cert: Path | None, *extra: str) -> tuple[int, str]:
    """Status and body of ``curl`` (a client certificate when ``cert``)."""
    args = ["curl", "-sS", "--noproxy", "*", "-k", "--max-time", "20", "-w", "\n%{http_code}"]
    if cert is not None:
        args += ["--cert", str(cert / "cert.pem"), "--key", str(cert / "key.pem")]
    done = subprocess.run([*args, *extra, url], capture_output=True, text=True, timeout=30)
    body, _, status = done.stdout.rpartition("\n")
    return int(status), body


def issue(lab: Lab, name: str, out: Path, *db: str) -> str:
    """The fingerprint of a new admin certificate, as ``client-certs --json`` lists it;
    ``db``: ``--db URL`` or nothing."""
    run_cli(
        "registrar", "issue-client-cert", "--dir", lab.domain, "--name", name, "--out", out,
        "--admin", *db,
    )  # fmt: skip
    listed = json.loads(
        run_cli("registrar", "client-certs", "--dir", lab.domain, "--json", *db).stdout
    )["client_certificates"]
    return str(next(c["fingerprint"] for c in listed if c["name"] == name))


def refused_within(url: str, cert: Path) -> float:
    """Seconds until ``url`` refuses ``cert``; fails past ``DEADLINE``."""
    start = time.monotonic()
    while (status := curl(url, cert)[0]) == 200:
        assert time.monotonic() - start < DEADLINE, f"{url} still answers 200"
        time.sleep(0.2)
    assert status == 403, status
    return time.monotonic() - start


def test_a_revoked_admin_certificate_is_refused_and_its_session_ends(tmp_path: Path) -> None:
    lab = make_lab(tmp_path)
    with (lab.domain / "registrar.toml").open("a") as fh:
        fh.write("\n[events]\nheartbeat = 1.0\n")
    admin, other = tmp_path / "admin", tmp_path / "other"
    fingerprint = issue(lab, "ops", admin)
    issue(lab, "ops-2", other)
    stream: subprocess.Popen[bytes] | None = None
    try:
        base = lab.start_registrar().url
        assert curl(f"{base}/admin/devices", admin)[0] == 200
        jar = tmp_path / "cookies"
        assert curl(f"{base}/console/", admin, "-c", str(jar))[0] == 200
        assert "__Host-zt-console" in jar.read_text()
        # the session alone (no certificate) signs the browser in
        assert curl(f"{base}/console/", None, "-b", str(jar))[0] == 200
        stream = subprocess.Popen(
            ["curl", "-sS", "-N", "--noproxy", "*", "-k", "--max-time", "60",
             "--cert", str(admin / "cert.pem"), "--key", str(admin / "key.pem"),
             f"{base}/admin/events"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(1.5)
        assert stream.poll() is None  # held open

        out = run_cli(
            "registrar", "revoke", "--dir", lab.domain, "--fingerprint", fingerprint,
            "--reason", "laptop lost",
        ).stdout  # fmt: skip
        assert f"revoked {fingerprint}" in out

        took = refused_within(f"{base}/admin/devices", admin)
        # the event stream ends at its next heartbeat after the revocation arrived
        stream.wait(timeout=DEADLINE - took + 2)
        assert curl(f"{base}/console/", admin)[0] == 403
        # the session it opened is gone: back to the sign-in page
        status, _ = curl(f"{base}/console/", None, "-b", str(jar))
        assert status == 303
        # another admin certificate still works
        assert curl(f"{base}/admin/devices", other)[0] == 200
        listing = run_cli("registrar", "client-certs", "--dir", lab.domain).stdout
        line = next(line for line in listing.splitlines() if line.startswith(fingerprint))
        assert "laptop lost" in line
    finally:
        if stream is not None:
            stream.kill()
            stream.wait()
        lab.close()


@pytest.mark.postgres
def test_a_revocation_reaches_every_registrar_on_one_postgresql(
    tmp_path: Path, fresh_pg_url: str
) -> None:
    lab = make_lab(tmp_path)
    admin = tmp_path / "admin"
    fingerprint = issue(lab, "ops", admin, "--db", fresh_pg_url)
    try:
        urls = [lab.start_registrar("--db", fresh_pg_url).url for _ in range(2)]
        for url in urls:
            assert curl(f"{url}/admin/devices", admin)[0] == 200
        run_cli(
            "registrar", "revoke", "--dir", lab.domain, "--db", fresh_pg_url,
            "--fingerprint", fingerprint, "--reason", "left the team",
        )  # fmt: skip
        for url in urls:
            refused_within(f"{url}/admin/devices", admin)
    finally:
        lab.close()

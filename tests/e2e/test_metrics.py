"""Prometheus metrics of a real registrar and MASA on 127.0.0.1, scraped with curl and read
with prometheus_client's own text-format parser: they change as a device enrolls, a refusal
is counted by its reason, and only an admin certificate (registrar) or the bearer token
(MASA) gets them."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_brski_flow import Lab, enroll, enroll_here, make_lab
from tests.support.admin_openapi import check_admin_answer
from tests.support.processes import run_cli

TOKEN = "metrics-token-of-the-e2e-test"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class World:
    lab: Lab
    admin: Path

    def curl(self, url: str, *args: str) -> tuple[int, str]:
        done = subprocess.run(
            ["curl", "-sS", "--noproxy", "*", "--max-time", "20", *args,
             "-w", "\n%{content_type}\n%{http_code}", url],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        rest, _, status = done.stdout.rpartition("\n")
        body, _, media = rest.rpartition("\n")
        if url.startswith(self.lab.registrar_url):
            path = url[len(self.lab.registrar_url) :]
            check_admin_answer("GET", path, int(status), media, body.encode())
        return int(status), body

    def registrar(self) -> Samples:
        status, body = self.curl(
            f"{self.lab.registrar_url}/metrics",
            "--cacert", str(self.lab.domain / "ca.pem"),
            "--cert", str(self.admin / "cert.pem"), "--key", str(self.admin / "key.pem"),
        )  # fmt: skip
        assert status == 200, body
        return parse(body)

    def masa(self, *auth: str) -> tuple[int, str]:
        assert self.lab.masa is not None
        return self.curl(
            f"{self.lab.masa.url}/metrics", "--cacert", str(self.lab.vendor / "ca.pem"), *auth
        )


def parse(text: str) -> Samples:
    """Every sample of a scrape by name and labels (the parser refuses a malformed one)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("metrics")
    lab = make_lab(root)
    (lab.vendor / "metrics.token").write_text(TOKEN + "\n")
    with (lab.vendor / "masa.toml").open("a") as fh:
        fh.write('\nmetrics_token_file = "metrics.token"\n')
    run_cli(
        "registrar", "issue-client-cert", "--dir", lab.domain, "--name", "ops",
        "--out", root / "A", "--admin",
    )  # fmt: skip
    try:
        lab.start_masa()
        lab.start_registrar()
        yield World(lab, root / "A")
    finally:
        lab.close()


def test_registrar_metrics_change_after_an_enrollment(world: World) -> None:
    before = world.registrar()
    serial, folder = world.lab.pledge()
    enroll_here(folder, world.lab.registrar_url)
    refused, stranger = world.lab.pledge(allow=False)
    assert enroll(world.lab, stranger, "--retries", "0").returncode != 0
    anonymous = world.curl(
        f"{world.lab.registrar_url}/admin/devices", "--cacert", str(world.lab.domain / "ca.pem")
    )
    assert anonymous[0] == 401
    after = world.registrar()

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("zerotouch_registrar_enrollments_total", kind="enroll", outcome="ok") == 1
    assert grew("zerotouch_registrar_voucher_requests_total", kind="voucher", outcome="ok") == 1
    refusals = grew(
        "zerotouch_registrar_voucher_requests_total", kind="voucher", outcome="policy-refused"
    )
    assert refusals == 1, sorted(k for k in after if "voucher_requests" in k[0])
    assert grew("zerotouch_registrar_devices", state="enroll-confirmed") == 1
    assert (
        grew(
            "zerotouch_registrar_http_requests_total",
            endpoint="/admin/devices",
            method="GET",
            status="401",
            reason="access-denied",
        )
        == 1
    )
    assert value(after, "zerotouch_registrar_devices", state="refused") >= 1
    voucher = "/.well-known/brski/requestvoucher"
    assert grew("zerotouch_registrar_http_request_duration_seconds_count", endpoint=voucher) >= 2
    assert (
        grew(
            "zerotouch_registrar_http_request_duration_seconds_bucket", endpoint=voucher, le="+Inf"
        )
        >= 2
    )
    assert value(after, "zerotouch_registrar_open_connections") >= 1  # this scrape's own
    assert value(after, "zerotouch_registrar_handoff_queue", state="pending") == 0
    assert value(after, "zerotouch_registrar_store_up") == 1
    assert value(after, "zerotouch_registrar_last_event_id") > value(
        before, "zerotouch_registrar_last_event_id"
    )
    assert refused not in str(after) and serial not in str(after)  # no serials in labels


def test_masa_metrics_need_the_token_and_count_errors_by_reason(world: World) -> None:
    assert world.lab.masa is not None
    _, folder = world.lab.pledge()
    enroll_here(folder, world.lab.registrar_url)
    status, body = world.masa()
    assert status == 403 and "Bearer" in body
    status, _ = world.masa("-H", "Authorization: Bearer not-the-token-at-all")
    assert status == 403
    bad = world.curl(
        f"{world.lab.masa.url}/.well-known/brski/requestvoucher",
        "--cacert", str(world.lab.vendor / "ca.pem"),
        "-H", "Content-Type: text/plain", "--data", "x",
    )  # fmt: skip
    assert bad[0] == 415
    status, body = world.masa("-H", f"Authorization: Bearer {TOKEN}")
    assert status == 200, body
    samples = parse(body)
    voucher = "/.well-known/brski/requestvoucher"
    assert (
        value(
            samples,
            "zerotouch_masa_http_requests_total",
            endpoint=voucher,
            method="POST",
            status="415",
            reason="unsupported-media-type",
        )
        == 1
    )
    issued = value(
        samples,
        "zerotouch_masa_http_requests_total",
        endpoint=voucher,
        method="POST",
        status="200",
        reason="ok",
    )
    assert issued >= 1
    assert value(samples, "zerotouch_masa_http_requests_total", endpoint="/metrics",
                 method="GET", status="403", reason="policy-refused") == 2  # fmt: skip

"""``zerotouch demo --masa-gone``: the registrar fetches vouchers ahead, the MASA is stopped
for good before any device starts, and every device enrolls with a voucher from escrow."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.e2e.test_demo import STEPS, _demo, _pids_in, _summary
from zerotouch_plugin.artifacts import cms
from zerotouch_plugin.artifacts.voucher import Voucher


def test_devices_enroll_from_escrow_after_the_masa_is_gone(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    result = _demo("--json", "--masa-gone", "--workdir", workdir, "--devices", "2")
    summary = _summary(result)
    assert result.returncode == 0, (summary, result.stderr)
    names = [step["name"] for step in summary["steps"]]
    assert sorted(names) == sorted([*STEPS, "claims", "prefetch", "masa-gone", "stop"])
    order = {name: i for i, name in enumerate(names)}
    assert order["prefetch"] < order["masa-gone"] < order["devices"]
    assert summary["vouchers_from_escrow"] == ["DEMO-0001", "DEMO-0002"]
    enrollment = next(s for s in summary["steps"] if s["name"] == "enrollment")
    assert "vouchers from escrow: DEMO-0001, DEMO-0002" in enrollment["detail"]
    stop = next(s for s in summary["steps"] if s["name"] == "stop")
    assert "masa" not in stop["detail"].split(": ", 1)[1].split(", ")  # gone before the end
    registrar_log = (workdir / "logs/registrar.log").read_text()
    assert registrar_log.count("from escrow: the MASA is unreachable") >= 2
    for device in summary["endpoints"]["devices"]:
        folder = workdir / device["folder"]
        voucher_files = [p for p in folder.iterdir() if p.name.startswith("voucher")]
        assert voucher_files, sorted(p.name for p in folder.iterdir())
        voucher = Voucher.from_json(cms.inspect(cms.decode(voucher_files[0].read_bytes())).content)
        assert voucher.nonce is None and voucher.expires_on is not None
        assert voucher.serial_number == device["serial"]
        verified = subprocess.run(
            ["openssl", "verify", "-CAfile", str(workdir / "registrar/ca.pem"),
             str(folder / "ldevid.pem")],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert verified.returncode == 0, verified.stderr
    assert json.loads((workdir / "summary.json").read_text()) == summary
    assert _pids_in(workdir) == []

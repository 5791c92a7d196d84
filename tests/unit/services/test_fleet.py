"""The virtual fleet's pieces that need no registrar: the IDevID folder, the summary and the
refusals of a fleet that cannot work (the whole run: tests/e2e/test_fleet.py)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from zerotouch_plugin.cli import main
from zerotouch_plugin.config import DeviceConfig
from zerotouch_plugin.errors import ConfigError
from zerotouch_plugin.services.fleet import FACTORY_FILES, Fleet, FleetSummary, find_idevids


def _device(root: Path, name: str, files: tuple[str, ...] = FACTORY_FILES) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    for file in files:
        (folder / file).write_text("x")
    return folder


def test_the_first_complete_folders_by_name_are_taken(tmp_path: Path) -> None:
    for name in ("B", "A", "C"):
        _device(tmp_path, name)
    _device(tmp_path, "0-incomplete", FACTORY_FILES[:2])
    (tmp_path / "stray.txt").write_text("not a device")
    assert [p.name for p in find_idevids(tmp_path, 2)] == ["A", "B"]
    with pytest.raises(ConfigError, match="holds 3 device folder"):
        find_idevids(tmp_path, 4)
    with pytest.raises(ConfigError, match="does not exist"):
        find_idevids(tmp_path / "missing", 1)


def _summary(**changes: object) -> FleetSummary:
    values: dict[str, object] = {
        "count": 3,
        "enrolled": 2,
        "configured": 2,
        "failed": {"access-denied": 1},
        "failures": [{"serial": "S3", "reason": "access-denied", "message": "not trusted"}],
        "setup_seconds": 0.5,
        "enroll_seconds": 4.0,
        "configure_seconds": 5.0,
        "enroll_latency": {"p50": 1.0, "p95": 2.0, "max": 3.0},
        "devices": {"S1": 1001, "S2": 1002, "S3": 1003},
    }
    values.update(changes)
    return FleetSummary(**values)  # type: ignore[arg-type]


def test_the_summary_counts_rates_and_names_each_failure() -> None:
    summary = _summary()
    data = summary.to_json()
    assert (data["enroll_per_second"], data["configure_per_second"]) == (0.5, 0.4)
    assert data["failed"] == {"access-denied": 1} and data["devices"]["S3"] == 1003
    text = "\n".join(summary.lines())
    assert "fleet of 3: 2 enrolled, 2 configured, 1 failed" in text
    assert "failed access-denied: 1" in text and "S3: access-denied: not trusted" in text
    assert not summary.ok
    assert _summary(enrolled=3, failed={}, failures=[]).ok
    nothing = _summary(enrolled=0, configured=0, enroll_seconds=None, configure_seconds=None)
    assert nothing.to_json()["enroll_per_second"] is None


def test_a_fleet_needs_a_netconf_tls_listener_and_a_positive_concurrency(tmp_path: Path) -> None:
    async def build(config: DeviceConfig, concurrency: int) -> Fleet:
        return Fleet([], tmp_path, config, concurrency=concurrency)

    tls = DeviceConfig(netconf_tls="127.0.0.1:0", registrars=("https://127.0.0.1:1",))
    with pytest.raises(ConfigError, match="NETCONF/TLS"):
        asyncio.run(build(DeviceConfig(registrars=("https://127.0.0.1:1",)), 1))
    with pytest.raises(ConfigError, match="concurrency"):
        asyncio.run(build(tls, 0))
    for extra, named in (
        ({"netconf_ssh": "127.0.0.1:0"}, "NETCONF/SSH"),
        ({"restconf": "127.0.0.1:0"}, "RESTCONF"),
    ):
        with pytest.raises(ConfigError, match=f"NETCONF/TLS only, not {named}"):
            asyncio.run(build(dataclasses.replace(tls, **extra), 1))
    assert asyncio.run(build(tls, 1)).devices == []


def test_the_command_refuses_a_fleet_without_registrar_or_vendor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _device(tmp_path, "S1")
    base = ["fleet", "--count", "1", "--idevids", str(tmp_path)]
    assert main(base) == 1
    assert "give --registrar URL or --discovery" in capsys.readouterr().err
    assert main([*base, "--prepare-only"]) == 1
    assert "--prepare-only needs --vendor" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--count", "0"])
    assert "is not positive" in capsys.readouterr().err

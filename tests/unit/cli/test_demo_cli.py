"""``zerotouch demo`` without processes: the step graph, argument checks, ``--stop`` safety.
The flow itself runs end to end in tests/e2e/test_demo.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zerotouch_plugin.cli import main
from zerotouch_plugin.demo.flow import STEPS
from zerotouch_plugin.demo.services import stop_kept


def test_steps_form_an_ordered_graph() -> None:
    seen: set[str] = set()
    for step in STEPS:
        assert step.name not in seen, f"step {step.name} twice"
        assert set(step.after) <= seen, f"{step.name} waits for a later or unknown step"
        seen.add(step.name)


@pytest.mark.parametrize("devices", ["0", "21"])
def test_device_count_is_bounded(devices: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--devices", devices]) == 1
    assert "--devices must be 1..20" in capsys.readouterr().err


def test_stop_needs_the_workdir(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--stop"]) == 1
    assert "--stop needs --workdir" in capsys.readouterr().err


def test_stop_ignores_a_pid_that_is_not_a_demo_service(tmp_path: Path) -> None:
    # A pid file naming a live process that does not run in the work folder (here: the test
    # itself, e.g. a reused pid) is dropped without a signal.
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "masa.pid").write_text(f"{os.getpid()}\n")
    assert stop_kept(tmp_path) == []
    assert not (tmp_path / "run" / "masa.pid").exists()


@pytest.mark.parametrize("content", ["garbage\n", "", "-1\n", "0\n"])
def test_stop_drops_a_damaged_pid_file(tmp_path: Path, content: str) -> None:
    # not an internal error (nor a signal to a process group): the file is dropped
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "masa.pid").write_text(content)
    assert main(["demo", "--stop", "--workdir", str(tmp_path)]) == 0
    assert not (tmp_path / "run" / "masa.pid").exists()


def test_stop_with_nothing_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--stop", "--workdir", str(tmp_path)]) == 0
    assert "nothing running" in capsys.readouterr().out

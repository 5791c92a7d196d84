"""``zerotouch demo`` reports a step that does not hold and exits non-zero."""

from __future__ import annotations

from pathlib import Path

import pytest

from zerotouch_plugin.cli import demo, main


def test_demo_succeeds_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("PARTIAL DEMO") == 2
    assert f"[{len(demo.STEPS)}/{len(demo.STEPS)}]" in out
    assert (tmp_path / "idevid.pem").is_file()


def test_a_failing_step_makes_the_demo_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(run: object) -> str:
        raise demo.StepFailed("the voucher was not what we signed")

    steps = (*demo.STEPS[:2], ("a step that does not hold", broken), *demo.STEPS[2:])
    monkeypatch.setattr(demo, "STEPS", steps)
    assert main(["demo", "--workdir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "FAILED: the voucher was not what we signed" in out
    assert "steps held" not in out
    assert out.rstrip().splitlines()[-1].startswith("PARTIAL DEMO")
    assert not (tmp_path / "idevid.pem").exists()  # later steps did not run

"""scripts/netopeer2-stack.sh refuses sources whose tree differs from the recorded hash and,
with --check, builds nothing. Both runs stop before any build step."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

from tests.support.processes import REPO

SCRIPT = REPO / "scripts" / "netopeer2-stack.sh"


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(tmp_path),
        "ZEROTOUCH_NETOPEER2_SRC": str(tmp_path / "src"),
        "ZEROTOUCH_NETOPEER2_CACHE": str(tmp_path / "cache"),
        "ZEROTOUCH_NETOPEER2_VENV": "-",
    }
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_check_reports_a_missing_build_without_building(tmp_path: Path) -> None:
    result = run(tmp_path, "--check")
    assert result.returncode == 3
    assert "not built" in result.stderr
    assert not (tmp_path / "cache").exists()


def test_a_source_tree_other_than_the_recorded_one_is_refused(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    with tarfile.open(tmp_path / "src" / "libyang-v3.13.6.tar.gz", "w:gz") as tar:
        data = b"int main(void) { return 0; }\n"
        member = tarfile.TarInfo("libyang-v3.13.6/main.c")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    result = run(tmp_path)
    assert result.returncode != 0
    assert "libyang-v3.13.6: extracted tree hash" in result.stderr
    assert "expected c1983a33" in result.stderr
    assert not list((tmp_path / "cache").glob("*/.complete"))

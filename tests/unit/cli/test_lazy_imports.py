"""The command overview imports no command group: ``zerotouch --help`` stays a fast command.

Checked by the modules a fresh interpreter has loaded, not by time, so a slow machine cannot
make it pass or fail.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

from zerotouch_plugin.cli import COMMAND_GROUPS, _help_from_source

HEAVY = ("cryptography", "yangson", "aiohttp", "sqlalchemy", "asyncssh", "lxml", "asn1crypto")

_PROBE = """
import contextlib, io, json, sys
from zerotouch_plugin.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main(sys.argv[1:])
    except SystemExit as exit:
        code = exit.code
print(json.dumps({"code": code, "help": out.getvalue(), "modules": sorted(sys.modules)}))
"""


def _loaded_by(*argv: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_the_overview_imports_no_group_and_no_heavy_library() -> None:
    result = _loaded_by("--help")
    assert result["code"] == 0
    modules = result["modules"]
    assert isinstance(modules, list)
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == []
    groups = sorted(m for m in modules if m in COMMAND_GROUPS.values())
    assert groups == []
    help_text = result["help"]
    assert isinstance(help_text, str)
    for name in COMMAND_GROUPS:
        assert name in help_text


def test_a_named_group_imports_only_that_group() -> None:
    result = _loaded_by("vendor", "--help")
    assert result["code"] == 0
    modules = result["modules"]
    assert isinstance(modules, list)
    groups = sorted(m for m in modules if m in COMMAND_GROUPS.values())
    assert groups == ["zerotouch_plugin.cli.vendor"]


@pytest.mark.parametrize("module_name", sorted(COMMAND_GROUPS.values()))
def test_the_help_read_from_source_is_the_modules_help(module_name: str) -> None:
    assert _help_from_source(module_name) == importlib.import_module(module_name).HELP

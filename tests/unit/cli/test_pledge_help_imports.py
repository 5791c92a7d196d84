"""``zerotouch pledge --help`` loads neither the YANG library nor the database layer nor the
pledge's HTTPS client: they load when ``pledge enroll`` runs.

Checked by the modules a fresh interpreter has loaded, not by time.
"""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import contextlib, io, json, sys
from zerotouch_plugin.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main(["pledge", *sys.argv[1:], "--help"])
    except SystemExit as exit:
        code = exit.code
print(json.dumps({"code": code, "help": out.getvalue(), "modules": sorted(sys.modules)}))
"""

NOT_FOR_HELP = ("yangson", "sqlalchemy", "aiohttp", "zerotouch_plugin.services.pledge_client")


def _help(*argv: str) -> tuple[int, str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(done.stdout)
    return result["code"], result["help"], result["modules"]


def _unwanted(modules: list[str]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in NOT_FOR_HELP))


def test_pledge_help_loads_no_yang_database_or_http_client() -> None:
    code, text, modules = _help()
    assert code == 0
    assert "enroll" in text
    assert "zerotouch_plugin.cli.pledge" in modules
    assert _unwanted(modules) == []


def test_pledge_enroll_help_lists_its_options_without_loading_them() -> None:
    code, text, modules = _help("enroll")
    assert code == 0
    for option in ("--registrar", "--discovery", "--allow-nonceless", "--max-backoff"):
        assert option in text
    assert _unwanted(modules) == []

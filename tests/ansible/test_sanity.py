"""The collection as ansible-core's own tooling sees it.

``ansible-test sanity`` runs offline only for the tests that need no virtual environment of
their own (the others download their requirements, which a test must not do): ``SANITY``
below. In their place for the module documentation (``validate-modules``), every plugin is
read with ``ansible-doc`` and each module's documented options are compared with its
argument spec.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.ansible.conftest import COLLECTION, Ansible
from tests.support.processes import REPO

# ansible-test sanity tests that run with --local and no download (ansible-core 2.19).
SANITY = (
    "action-plugin-docs", "compile", "empty-init", "ignores", "line-endings", "no-assert",
    "no-get-exception", "no-illegal-filenames", "no-smart-quotes", "replace-urlopen",
    "shebang", "symlinks", "use-argspec-type-path", "use-compat-six",
)  # fmt: skip
MODULES = sorted(p.stem for p in (COLLECTION / "plugins/modules").glob("*.py"))


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of the collection at ``ansible_collections/zerotouch/brski`` (where
    ansible-test wants it), importable."""
    root = tmp_path_factory.mktemp("sanity")
    target = root / "ansible_collections/zerotouch/brski"
    shutil.copytree(COLLECTION, target, ignore=shutil.ignore_patterns("__pycache__", "tests"))
    sys.path.insert(0, str(root))
    try:
        yield target
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if n.startswith("ansible_collections")]:
            del sys.modules[name]


def test_ansible_test_sanity_offline_subset(ansible: Ansible, tree: Path) -> None:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    tests = [arg for name in SANITY for arg in ("--test", name)]
    result = ansible.run_in(tree, "ansible-test", "sanity", "--local", "--python", python, *tests)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in SANITY:
        assert f'Running sanity test "{name}"' in result.stdout


def test_every_plugin_is_listed(ansible: Ansible) -> None:
    result = ansible.run("ansible-doc", "--list", "--json", "zerotouch.brski")
    assert result.returncode == 0, result.stderr
    assert sorted(json.loads(result.stdout)) == [f"zerotouch.brski.{m}" for m in MODULES]
    inventory = ansible.run("ansible-doc", "-t", "inventory", "--json", "zerotouch.brski.registrar")
    assert inventory.returncode == 0, inventory.stderr
    doc = json.loads(inventory.stdout)["zerotouch.brski.registrar"]["doc"]
    assert {"url", "client_cert", "client_key", "ca", "cache", "compose"} <= set(doc["options"])


class _Spec(Exception):
    """Carries the keyword arguments a module gave AnsibleModule."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        super().__init__("argument spec")
        self.kwargs = kwargs


def _argument_spec(module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    def capture(**kwargs: Any) -> None:
        raise _Spec(kwargs)

    monkeypatch.setattr(module, "AnsibleModule", capture)
    with pytest.raises(_Spec) as caught:
        module.main()
    return dict(caught.value.kwargs)


@pytest.mark.parametrize("name", MODULES)
def test_documented_options_match_the_argument_spec(
    ansible: Ansible, tree: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = ansible.run("ansible-doc", "--json", "-t", "module", f"zerotouch.brski.{name}")
    assert result.returncode == 0, result.stderr
    entry = json.loads(result.stdout)[f"zerotouch.brski.{name}"]
    assert entry["examples"].strip() and entry["return"] is not None
    documented = entry["doc"]["options"]
    module = importlib.import_module(f"ansible_collections.zerotouch.brski.plugins.modules.{name}")
    kwargs = _argument_spec(module, monkeypatch)
    spec = kwargs["argument_spec"]
    assert sorted(documented) == sorted(spec)
    for option, rules in spec.items():
        doc = documented[option]
        assert doc.get("type", "str") == rules.get("type", "str"), option
        assert doc.get("default") == rules.get("default"), option
        assert bool(doc.get("required")) == bool(rules.get("required")), option
        assert doc.get("choices") == rules.get("choices"), option
    check_mode = entry["doc"]["attributes"]["check_mode"]["support"]
    assert (check_mode == "full") == bool(kwargs.get("supports_check_mode")), name


def test_collection_type_checks(tree: Path) -> None:
    """``mypy --strict`` (the repository's settings) over the plugins, from where their
    ``ansible_collections.zerotouch.brski`` imports resolve."""
    root = tree.parents[2]
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
         "--explicit-package-bases", "--namespace-packages", "--cache-dir", str(root / ".mypy"),
         "ansible_collections/zerotouch/brski/plugins"],
        capture_output=True, text=True, cwd=root, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found in" in result.stdout

"""The package states compatible ranges (so it co-installs) and ``constraints.txt`` pins one
tested version inside each range (so ``make`` and CI are reproducible)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared.extend(extra)
    return [Requirement(text) for text in declared]


def _pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        name, _, version = text.partition("==")
        assert version, f"constraints.txt line {line!r} is not an exact pin"
        pins[canonicalize_name(name)] = Version(version)
    return pins


def test_dependencies_are_ranges_not_pins() -> None:
    for requirement in _requirements():
        operators = {spec.operator for spec in requirement.specifier}
        assert operators, f"{requirement} has no version bound"
        assert not operators & {"==", "==="}, f"{requirement} pins one version"


def test_constraints_pin_every_dependency_inside_its_range() -> None:
    pins = _pins()
    for requirement in _requirements():
        pinned = pins.get(canonicalize_name(requirement.name))
        assert pinned is not None, f"constraints.txt does not pin {requirement.name}"
        assert requirement.specifier.contains(pinned), (
            f"constraints.txt pins {requirement.name}=={pinned}, outside {requirement.specifier}"
        )

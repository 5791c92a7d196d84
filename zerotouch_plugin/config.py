"""Role configuration: one frozen dataclass per role, loaded from TOML plus CLI overrides.

Each role's dataclass validates itself in ``__post_init__`` (wrong types raise ``TypeError``,
wrong values ``ValueError``); ``load_config`` turns both into a ``ConfigError`` that names the
file and the key, so a bad configuration never starts a half-configured service.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from zerotouch_plugin.errors import ConfigError

__all__ = ["load_config"]

T = TypeVar("T")


def load_config(cls: type[T], path: Path | None, overrides: Mapping[str, Any]) -> T:
    """Build ``cls`` from the TOML file at ``path`` (if it exists), then ``overrides``.

    Overrides whose value is ``None`` are ignored, so argparse defaults of ``None`` mean
    "not given on the command line".
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    data: dict[str, Any] = {}
    source = "command line"
    if path is not None and path.exists():
        source = str(path)
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    data.update({k.replace("-", "_"): v for k, v in overrides.items() if v is not None})
    data = {k.replace("-", "_"): v for k, v in data.items()}
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown configuration keys: {', '.join(unknown)}")
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from exc

# Copyright: zerotouch contributors
# Apache License 2.0 (see the repository's LICENSE)
"""The action attributes of the collection's modules: every module runs in check mode;
those that change something also show what in diff mode."""

from __future__ import annotations


class ModuleDocFragment:
    CHECK_MODE = r"""
attributes:
  check_mode:
    description: Runs in check mode, reporting what it would change without changing it.
    support: full
  diff_mode:
    description: Returns no diff.
    support: none
"""

    CHECK_AND_DIFF = r"""
attributes:
  check_mode:
    description: Runs in check mode, reporting what it would change without changing it.
    support: full
  diff_mode:
    description: Returns the state before and after the change (or the change it would make).
    support: full
"""

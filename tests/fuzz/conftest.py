"""Hypothesis profiles for the fuzz harnesses, chosen by ``ZEROTOUCH_FUZZ_PROFILE``.

``short`` (the default) is what ``make test`` runs: a few hundred derandomized examples per
harness so the whole directory stays well under a minute and a red run reproduces; its wall
clock deadline only catches hangs (the oracle's CPU budget is the tight one, and wall time on a
loaded CI machine is noise). ``long`` is
what ``scripts/fuzz-long`` runs: random seeds, many examples (``ZEROTOUCH_FUZZ_EXAMPLES``) and no
Hypothesis deadline; the per-input time and memory budgets of ``tests.fuzz.oracle`` still hold.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

_SLOW_INPUTS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile(
    "short",
    max_examples=int(os.environ.get("ZEROTOUCH_FUZZ_EXAMPLES", "200")),
    deadline=5000,
    derandomize=True,
    database=None,
    suppress_health_check=_SLOW_INPUTS,
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("ZEROTOUCH_FUZZ_EXAMPLES", "20000")),
    deadline=None,
    derandomize=False,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=_SLOW_INPUTS,
    print_blob=True,
)
settings.load_profile(os.environ.get("ZEROTOUCH_FUZZ_PROFILE", "short"))

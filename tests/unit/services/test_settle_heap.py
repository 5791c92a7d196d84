"""What a server does to the cyclic garbage collector once started (``settle_heap``): the
objects of start-up are out of its reach, later garbage is still collected, and the youngest
generation is collected less often. Run in a child interpreter: the collector's state is the
whole process's."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from zerotouch_plugin.services import _gate

CHILD = """
import gc, json
from zerotouch_plugin.services._gate import settle_heap

before = gc.get_threshold()
built_at_start_up = [[index] for index in range(1000)]
settle_heap()
walked = {id(obj) for obj in gc.get_objects()}
cycle = []
cycle.append(cycle)
del cycle
print(json.dumps({
    "before": before,
    "after": gc.get_threshold(),
    "frozen": gc.get_freeze_count(),
    "start_up_walked": sum(id(item) in walked for item in built_at_start_up),
    "later_cycle_collected": gc.collect(),
}))
"""


@pytest.fixture(scope="module")
def settled() -> dict[str, Any]:
    """What the child interpreter saw around its ``settle_heap()``."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True, timeout=60
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_start_up_objects_are_left_out_of_collections_and_later_garbage_is_not(
    settled: dict[str, Any],
) -> None:
    assert settled["frozen"] >= 1000
    assert settled["start_up_walked"] == 0
    assert settled["later_cycle_collected"] == 1


def test_the_youngest_generation_is_collected_less_often_the_others_as_before(
    settled: dict[str, Any],
) -> None:
    before, after = settled["before"], settled["after"]
    assert after == [_gate._YOUNG_COLLECTION, *before[1:]]
    assert before[0] < _gate._YOUNG_COLLECTION

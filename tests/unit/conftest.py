"""Fixtures shared by the unit tests: the device schema is compiled once per run."""

from __future__ import annotations

import pytest

from zerotouch_plugin.device.schema import DeviceSchema, load_device_schema


@pytest.fixture(scope="session")
def schema() -> DeviceSchema:
    return load_device_schema()

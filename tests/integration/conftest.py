"""Fixtures for tests that run a farm of real processes."""
from __future__ import annotations

import pytest

from tests.integration.farmproc import Farm


@pytest.fixture
def farm(farm_env, tmp_path):
    """A farm on this test's namespace; every process it started is stopped afterwards."""
    logdir = tmp_path / "logs"
    logdir.mkdir()
    farm = Farm(farm_env, logdir)
    yield farm
    farm.close()

"""Fixtures for tests that run a farm of real processes."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, missing
from tests.integration.farmproc import Farm

# Debian's Chromium, never a browser download (`playwright install` is not used).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def farm(farm_env, tmp_path):
    """A farm on this test's namespace; every process it started is stopped afterwards."""
    logdir = tmp_path / "logs"
    logdir.mkdir()
    farm = Farm(farm_env, logdir)
    yield farm
    farm.close()


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the whole run."""
    executable = shutil.which("chromium")
    if executable is None:
        missing("chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright for Python (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where browser tests save their screenshots (test artifacts): $CORRAL_SCREENSHOTS or var/screenshots."""
    path = Path(os.environ.get("CORRAL_SCREENSHOTS") or ROOT / "var" / "screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path

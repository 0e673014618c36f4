"""Unit-test fixtures shared across files (files may still define their own of the same name)."""
from __future__ import annotations

from tests.unit.gateway_support import client, publisher  # noqa: F401 - fixtures, used by name

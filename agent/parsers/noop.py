"""The noop parser: a noop chunk prints nothing, so there is nothing to read."""
from __future__ import annotations

from agent.parsers.base import Parser


class NoopParser(Parser):
    """Ignores every line; the executor marks the frames done itself."""

    def feed(self, line: str) -> bool:
        return False

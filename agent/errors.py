"""Exceptions of the render-node agent."""
from __future__ import annotations

from common.errors import CorralError


class AgentError(CorralError):
    """Base class of the errors the agent raises on purpose."""


class ChunkRefused(AgentError):
    """A chunk cannot run here as given; the message is the ``ChunkFinished`` reason."""


class UnsupportedParams(ChunkRefused):
    """The chunk's params are missing, malformed or not understood by its executor."""


class PreflightFailed(ChunkRefused):
    """An input file is missing or the output location cannot be written."""


class AgentStartError(AgentError):
    """The agent could not connect and register in time."""

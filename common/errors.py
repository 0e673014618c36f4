"""Exceptions shared by every Corral component."""
from __future__ import annotations


class CorralError(Exception):
    """Base class of every error Corral raises on purpose."""


class ConfigError(CorralError):
    """The configuration cannot be used; the message says which setting and why."""


class MessageError(CorralError):
    """A broker message could not be decoded or failed its schema."""


class ValidationError(CorralError):
    """Input from a client is invalid; ``field`` names the offending field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotFound(CorralError):
    """A task, chunk or worker id does not exist."""

    def __init__(self, what: str, ident: object) -> None:
        super().__init__(f"{what} {ident} not found")
        self.what = what
        self.ident = ident


class BrokerUnavailable(CorralError):
    """The broker could not be reached or did not confirm a publish."""

"""Errors a user can act on.

Every failure that reaches the command line is a ReservoirError: its message
is one line that names the thing at fault and the cause, and, where there is
one, what to do about it.

Paths in messages: as the user gave them (the home as resolved once from
``--home``), unquoted; a message about a file or folder starts with its path
and a colon (``keys/site-users.json: not valid JSON``).
"""

from __future__ import annotations


class ReservoirError(Exception):
    """A failure with a one-line, user-facing explanation."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class ConfigError(ReservoirError):
    """reservoir.toml or a command-line option is invalid."""

    exit_code = 2


class NotInitialized(ConfigError):
    """The home directory has not been created with `reservoir init`."""


class IntegrityError(ReservoirError):
    """Content does not match the hash or signature it was promised with."""

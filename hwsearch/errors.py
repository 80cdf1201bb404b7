"""User-facing errors.

Every mistake a user can make (a missing file, a bad flag, an unknown name, a budget that cannot be met)
raises a subclass of :class:`UserError` whose message is one line naming the problem and the fix. The CLI
prints it as ``error: <message>`` and exits with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["UserError", "UnknownNameError", "CheckpointError", "DataError", "StudyError"]


class UserError(Exception):
    """A problem with the user's input; the message says what is wrong and how to fix it."""

    exit_code: int = 2


class UnknownNameError(UserError, KeyError):
    """A registry lookup for a name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(UserError):
    """A checkpoint file that is missing, unreadable or does not match the model."""


class DataError(UserError):
    """A dataset that is missing, empty or holds unreadable files."""


class StudyError(UserError):
    """A study spec (TOML) that is missing, malformed or points at absent files."""

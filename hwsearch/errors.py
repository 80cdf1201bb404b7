"""User-facing errors.

Every mistake a user can make (a missing file, a bad flag, an unknown name, a budget that cannot be met)
raises a subclass of :class:`UserError` whose message is one line naming the problem and the fix. The CLI
prints it as ``error: <message>`` and exits with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import re

__all__ = ["UserError", "UnknownNameError", "CheckpointError", "DataError", "StudyError", "load_error_reason"]


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


def load_error_reason(e: BaseException) -> str:
    """Why ``torch.load`` failed, in one line: its first sentence (whole), without the long weights_only advice."""
    text = " ".join(str(e).split())
    if not text:
        return type(e).__name__
    if "Weights only load failed" in text:
        m = re.search(r"(Unsupported global: GLOBAL \S+|Unsupported operand \d+|Unsupported class \S+)", text)
        return "it needs code to unpickle (" + (m.group(1).rstrip(".") if m else "not plain tensors") + ")"
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    return first.rstrip(".")

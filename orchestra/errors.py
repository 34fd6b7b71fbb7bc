"""The one exception type for "the user did something wrong".

Raised anywhere below the CLI; the single handler in :mod:`orchestra.cli` turns it into a
message on stderr and an exit code. Any other exception escaping a command is a bug.
"""

from __future__ import annotations


class FatalError(Exception):
    """A user-facing error: printed as ``orchestra: error: <message>``, exit code ``exit_code``."""

    def __init__(self, message: str, *, exit_code: int = 1, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.hint = hint

"""The one exception type for "the user did something wrong".

Raised anywhere below the CLI; the single handler in :mod:`orchestra.cli` turns it into a
message on stderr and an exit code. Any other exception escaping a command is a bug.
"""

from __future__ import annotations

from pathlib import Path


class FatalError(Exception):
    """A user-facing error: printed as ``orchestra: error: <message>``, exit code ``exit_code``."""

    def __init__(self, message: str, *, exit_code: int = 1, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.hint = hint


class DamagedTaskError(FatalError):
    """A task's files in storage are damaged: ``path`` (at ``line``, 1-based, when it is a line
    of events.jsonl) holds what orchestra cannot read as its own. Commands that scan many tasks
    report it and skip that task; a command on that task alone fails with it."""

    def __init__(self, path: Path, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(
            f"task {path.parent.name} is damaged: {where}: {message}",
            hint=f"repair or remove {path.name} ({path.parent}); the other tasks are unaffected",
        )
        self.path = path
        self.line = line
        self.problem = message

    @property
    def task_dir(self) -> Path:
        return self.path.parent

    def to_json(self) -> dict[str, object]:
        """The error entry of ``--format json`` outputs."""
        return {
            "name": self.task_dir.name,
            "directory": str(self.task_dir),
            "error": {"file": str(self.path), "line": self.line, "message": self.problem},
        }


class UnsafePath(FatalError):
    """A path orchestra was to read, write or delete is not what orchestra puts there: a
    symlink (which could lead into another user's directory), a FIFO or a device (on which a
    read or an open blocks forever), or a file that leaves the owner's directory. It is refused,
    naming the path. Under a task directory it is that task's problem only: the commands report
    it and carry on with the other tasks (exit 1 at the end)."""

    def __init__(self, path: object, problem: str, *, hint: str | None = None) -> None:
        super().__init__(
            f"{path} {problem}",
            hint=hint
            or "orchestra follows no symlink and opens no FIFO or device there; "
            "remove it (a job may have planted it)",
        )
        self.path = str(path)
        self.problem = problem

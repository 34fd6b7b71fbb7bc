"""One located problem in a spec file, and the collection of all of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

#: file: a path given does not exist; syntax: the file is not YAML (or not readable);
#: schema: JSON Schema; semantic: the rules that need more than one document or the storage.
Category = Literal["file", "syntax", "schema", "semantic"]


@dataclass(frozen=True, order=True)
class Diagnostic:
    """``file:line:col: $.json.path: message`` (line and column count from 1)."""

    file: str
    line: int
    column: int
    path: str
    message: str
    category: Category = "schema"

    def format(self) -> str:
        if self.category == "file":
            return f"{self.file}: {self.message}"
        if self.category == "syntax":
            return f"{self.file}:{self.line}:{self.column}: {self.message}"
        return f"{self.file}:{self.line}:{self.column}: {self.path}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def json_path(parts: Sequence[str | int]) -> str:
    """``["spec", "env", 0]`` -> ``$.spec.env[0]``; keys that are not identifiers are quoted."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}"
        else:
            escaped = part.replace("\\", "\\\\").replace("'", "\\'")
            out += f"['{escaped}']"
    return out

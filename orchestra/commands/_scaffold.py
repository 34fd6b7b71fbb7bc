"""Writing a new spec file the way the original tool's commands took their flags
(``dataset add``, ``task new``): the YAML lands in the right place of the repository and is
validated with the rest of it; an invalid one is removed again and nothing is left behind."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from orchestra.errors import FatalError
from orchestra.spec.checker import validate_paths
from orchestra.spec.model import split_name


def owner_and_short(name: str, what: str) -> tuple[str, str]:
    parts = split_name(name)
    if parts is None:
        raise FatalError(
            f"{what} name {name!r} must be user.<owner>.<name> (owner: lower-case letters, "
            "digits, '_', '-'; name: letters, digits, '_', '-', '.')",
            hint=f"e.g. user.alice.my_{what}",
        )
    return parts


def write_spec(
    directory: Path, relative: str, document: dict[str, Any], legacy: list[str], *, offline: bool
) -> int:
    """Write ``document`` to ``directory/relative`` (never over an existing file), validate it
    in its repository, and keep it only if valid."""
    path = directory / relative
    if path.exists():
        raise FatalError(f"{relative} exists already: edit it instead")
    created = [p for p in reversed(path.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Written by 'orchestra " + " ".join(shlex.quote(a) for a in sys.argv[1:]) + "'\n"
    header += "# Was: " + " ".join(shlex.quote(a) for a in legacy) + "\n"
    path.write_text(header + yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    result = validate_paths([relative], directory, offline=offline)
    if not result.valid:
        for diagnostic in result.diagnostics:
            print(diagnostic.format(), file=sys.stderr)
        path.unlink()
        for parent in reversed(created):
            parent.rmdir()
        raise FatalError(f"{relative} would not be valid: not written")
    print(f"wrote {relative}")
    print(f"next: git add {shlex.quote(relative)} && git commit (or 'orchestra plan' to see it)")
    return 0

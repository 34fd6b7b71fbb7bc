"""``orchestra validate [PATH...]``: schema and semantic checks of every document."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from orchestra.spec.checker import ValidationResult, validate_paths


def run(args: argparse.Namespace) -> int:
    result = validate_paths(args.paths, Path(args.directory), offline=args.offline)
    if result.files == 0 and result.valid:
        where = ", ".join(args.paths) if args.paths else args.directory
        print(f"orchestra: warning: no spec files found under {where}", file=sys.stderr)
    if args.format == "json":
        json.dump(result.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_text(result)
    return 0 if result.valid else 1


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _print_text(result: ValidationResult) -> None:
    out = sys.stdout
    syntax, errors = result.syntax_errors, result.errors
    if syntax:
        out.write("Files that could not be read as YAML:\n")
        for diagnostic in syntax:
            out.write(diagnostic.format() + "\n")
        if errors:
            out.write("\n")
    for diagnostic in errors:
        out.write(diagnostic.format() + "\n")
    checked = f"{_plural(result.documents, 'document')} in {_plural(result.files, 'file')}"
    if result.valid:
        out.write(f"ok: {checked} valid\n")
        return
    bad_files = len({d.file for d in result.diagnostics})
    out.write(
        f"invalid: {_plural(len(result.diagnostics), 'error')} in {_plural(bad_files, 'file')} "
        f"({checked} checked)\n"
    )

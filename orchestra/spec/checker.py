"""The validation pipeline: discover -> load -> JSON Schema -> semantic checks -> result."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestra.spec import semantic
from orchestra.spec.diagnostics import Diagnostic
from orchestra.spec.discover import SpecFile, discover
from orchestra.spec.loader import LoadResult, load_file
from orchestra.spec.model import SpecSet
from orchestra.spec.schema import KINDS, check_document
from orchestra.spec.validcache import ValidCache


@dataclass
class ValidationResult:
    specs: SpecSet
    diagnostics: list[Diagnostic] = field(default_factory=list)
    files: int = 0
    documents: int = 0

    @property
    def valid(self) -> bool:
        return not self.diagnostics

    @property
    def syntax_errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.category in ("file", "syntax")]

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.category not in ("file", "syntax")]

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "files": self.files,
            "documents": self.documents,
            "syntaxErrors": [d.to_json() for d in self.syntax_errors],
            "errors": [d.to_json() for d in self.errors],
        }


def validate_paths(paths: Sequence[str], cwd: Path, *, offline: bool = False) -> ValidationResult:
    """Check every document under ``paths``; report problems of the files asked for only."""
    files, problems = discover(paths, cwd)
    return validate_files(files, problems, lambda f: load_file(f.path, f.display), offline=offline)


def validate_files(
    files: Sequence[SpecFile],
    problems: list[Diagnostic],
    read: Callable[[SpecFile], LoadResult],
    *,
    offline: bool = False,
) -> ValidationResult:
    """Check every document of ``files``, each loaded by ``read`` (from disk, or from a git
    commit); report problems of the files asked for only."""
    problems = list(problems)
    placed: list[semantic.Placed] = []
    requested = {f.display for f in files if f.requested}
    broken: dict[tuple[str, str], str] = {}  # (kind, name) -> file, of schema failures
    documents = 0
    valid_cache = ValidCache()
    read_files: dict[str, tuple[SpecFile, list[str | None]]] = {}
    for spec_file in files:
        loaded = read(spec_file)
        problems += loaded.diagnostics
        read_files[spec_file.display] = (spec_file, [_name(d.data) for d in loaded.documents])
        for doc in loaded.documents:
            documents += spec_file.requested
            if doc.bad_keys:  # already reported by the loader; its data is not spec-shaped
                broken.setdefault(_kind_and_name(doc.data), spec_file.display)
                continue
            key = _cache_key(valid_cache, doc.data)
            schema_problems = [] if key and valid_cache.known_valid(key) else check_document(doc)
            if key and not schema_problems:
                valid_cache.add(key)
            problems += schema_problems
            if not schema_problems:
                placed.append(semantic.Placed(spec_file, doc))
            else:
                broken.setdefault(_kind_and_name(doc.data), spec_file.display)
    valid_cache.save()
    specs, semantic_problems = semantic.check(placed, offline=offline, broken=broken)
    problems += semantic_problems
    problems += _broken_context(specs, broken, requested)
    _note_invalid(specs, problems, read_files)
    reported = sorted(
        {d for d in problems if d.category == "file" or d.file in requested},
        key=lambda d: (d.category not in ("file", "syntax"), d),
    )
    return ValidationResult(specs, reported, len(requested), documents)


def _broken_context(
    specs: SpecSet, broken: dict[tuple[str, str], str], requested: set[str]
) -> list[Diagnostic]:
    """A Task asked for that uses a Cluster or Dataset whose document, read as context only,
    fails the schema: that document's own errors are not reported (its file was not asked
    for), so the reference is, naming the file."""
    problems = []
    for task in specs.tasks.values():
        if task.doc.file not in requested:
            continue
        refs = [("Cluster", "cluster", task.cluster, task.cluster in specs.clusters)]
        for field_name in ("data", "configs"):
            name = getattr(task, field_name)
            refs.append(("Dataset", field_name, name, name in specs.datasets))
        for kind, field_name, name, defined in refs:
            file = broken.get((kind, name))
            if defined or file is None or file in requested:
                continue
            line, column = task.doc.locate(["spec", field_name])
            problems.append(
                Diagnostic(
                    task.doc.file,
                    line,
                    column,
                    f"$.spec.{field_name}",
                    f"{kind} {name!r} is defined in {file}, which is invalid "
                    f"('orchestra validate {file}' shows why)",
                    "semantic",
                )
            )
    return problems


def _note_invalid(
    specs: SpecSet,
    problems: list[Diagnostic],
    read_files: dict[str, tuple[SpecFile, list[str | None]]],
) -> None:
    """Record in ``specs`` which files have a problem and which task names they may define,
    reported or not: a task whose spec is invalid is never judged an orphan."""
    invalid = {d.file for d in problems}
    specs.invalid_files = sorted(invalid)
    for display in specs.invalid_files:
        spec_file, names = read_files.get(display, (None, []))
        for name in names:
            if name is not None:
                specs.invalid_names.setdefault(name, display)
        syntax = any(d.file == display and d.category in ("file", "syntax") for d in problems)
        if syntax or None in names:  # a document whose name cannot be read
            owner = spec_file.owner if spec_file is not None and spec_file.under_users else None
            specs.unreadable_owners.setdefault(owner or "*", display)


def _name(data: Any) -> str | None:
    if isinstance(data, dict) and isinstance(data.get("metadata"), dict):
        name = data["metadata"].get("name")
        if isinstance(name, str):
            return name
    return None


def _kind_and_name(data: Any) -> tuple[str, str]:
    """(kind, name) of a document that failed the schema, so that references to it are not
    reported a second time as missing; ("", "") when it has none."""
    if isinstance(data, dict) and isinstance(data.get("metadata"), dict):
        name = data["metadata"].get("name")
        if isinstance(data.get("kind"), str) and isinstance(name, str):
            return data["kind"], name
    return "", ""


def _cache_key(valid_cache: ValidCache, data: Any) -> str | None:
    if not valid_cache.enabled or not isinstance(data, dict) or data.get("kind") not in KINDS:
        return None
    return valid_cache.key(data["kind"], data)

"""Which files are spec files (design.md, "Which files are specs").

A *repository root* is a directory with a ``users/`` sub-directory. In one, only
``cluster.yaml``, ``clusters/**`` and ``users/**`` are read; elsewhere every ``*.yaml``/``*.yml``
is. A file under ``users/<owner>/`` belongs to ``<owner>``. When the paths given are part of a
repository, the rest of that repository is read too, as *context*: references resolve against
it, but only the files asked for are reported on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestra.spec.diagnostics import Diagnostic

SUFFIXES = (".yaml", ".yml")
_CLUSTER_FILES = ("cluster.yaml", "cluster.yml")


@dataclass(frozen=True)
class SpecFile:
    path: Path  # absolute
    display: str  # how diagnostics name it: relative to the working directory when below it
    owner: str | None  # <owner> of users/<owner>/..., None outside users/
    under_users: bool  # inside a repository's users/ directory (owner None: misplaced)
    requested: bool  # False: read only to resolve references


def is_repo_root(directory: Path) -> bool:
    return (directory / "users").is_dir()


def display_path(path: Path, cwd: Path) -> str:
    try:
        return str(path.relative_to(cwd))
    except ValueError:
        return str(path)


def discover(paths: Sequence[str], cwd: Path) -> tuple[list[SpecFile], list[Diagnostic]]:
    """The spec files named by ``paths`` (default: ``cwd``), plus their repositories' files."""
    found: dict[Path, SpecFile] = {}
    problems: list[Diagnostic] = []
    context_roots: set[Path] = set()
    for arg in paths or ["."]:
        path = Path(os.path.normpath(cwd / arg))
        if not path.exists():
            problems.append(Diagnostic(arg, 0, 0, "$", "no such file or directory", "file"))
            continue
        limit = cwd if _is_within(path, cwd) else (path if path.is_dir() else path.parent)
        repo = _enclosing_repo(path, limit)
        if repo is not None and repo != path:
            context_roots.add(repo)
        if path.is_dir():
            files = list(_walk(path))
        elif path.is_file():
            files = [path]
        else:
            problems.append(Diagnostic(arg, 0, 0, "$", "not a regular file or directory", "file"))
            continue
        for file in files:
            found[file] = _spec_file(file, cwd, repo if repo is not None else path, True)
    for repo in sorted(context_roots):
        for file in _repo_files(repo):
            if file not in found:
                found[file] = _spec_file(file, cwd, repo, False)
    return sorted(found.values(), key=lambda f: f.display), problems


def _is_within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _enclosing_repo(path: Path, limit: Path) -> Path | None:
    """The repository root whose specs ``path`` is part of (``path`` itself included),
    searching no higher than ``limit``."""
    candidates = [path] if path.is_dir() else []
    candidates += [p for p in path.parents if _is_within(p, limit)]
    for candidate in candidates:
        if is_repo_root(candidate) and _is_spec_location(path, candidate):
            return candidate
    return None


def _is_spec_location(path: Path, repo: Path) -> bool:
    """Is ``path`` the repository, or inside the part of it that holds specs?"""
    if path == repo:
        return True
    parts = path.relative_to(repo).parts
    return parts[0] in ("users", "clusters") or (len(parts) == 1 and parts[0] in _CLUSTER_FILES)


def _walk(directory: Path) -> Iterator[Path]:
    if is_repo_root(directory):
        yield from _repo_files(directory)
        return
    entries = sorted(os.scandir(directory), key=lambda e: e.name)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(Path(entry.path))
        elif entry.name.endswith(SUFFIXES) and entry.is_file():
            yield Path(entry.path)


def _repo_files(root: Path) -> Iterator[Path]:
    for name in _CLUSTER_FILES:
        if (root / name).is_file():
            yield root / name
    for sub in ("clusters", "users"):
        if (root / sub).is_dir():
            yield from _all_yaml(root / sub)


def _all_yaml(directory: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith(SUFFIXES) and not name.startswith("."):
                yield Path(dirpath) / name


def _spec_file(file: Path, cwd: Path, base: Path, requested: bool) -> SpecFile:
    owner = None
    under_users = False
    repo = base if is_repo_root(base) else _enclosing_repo(file, base)
    if repo is not None:
        parts = file.relative_to(repo).parts
        if parts and parts[0] == "users":
            under_users = True
            owner = parts[1] if len(parts) >= 3 else None
    return SpecFile(file, display_path(file, cwd), owner, under_users, requested)

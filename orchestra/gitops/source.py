"""The specs of one commit, read from git's object database through GitPython.

Uncommitted edits never reach a cluster: the files are the blobs of the commit's tree, not
the working tree. They are checked by the same pipeline as ``orchestra validate``, named by
their path in the repository; relative paths inside them (a Cluster's ``storage``) resolve
against the repository's directory, as they would in a checkout.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestra.errors import FatalError
from orchestra.spec.checker import ValidationResult, validate_files
from orchestra.spec.diagnostics import Diagnostic
from orchestra.spec.discover import SUFFIXES, SpecFile
from orchestra.spec.loader import MAX_FILE_BYTES, LoadResult, load_bytes

_CLUSTER_FILES = ("cluster.yaml", "cluster.yml")
_SYMLINK = 0o120000


@dataclass(frozen=True)
class Commit:
    sha: str
    ref: str
    author: str  # "Name <email>"
    summary: str
    time: str  # ISO 8601, the committer's

    @property
    def short(self) -> str:
        return self.sha[:10]

    def describe(self) -> str:
        return f"{self.short} ({self.ref}) {self.summary!r} by {self.author}"


class Source:
    """A git repository orchestra reconciles from."""

    def __init__(self, directory: Path) -> None:
        import git

        try:
            self.repo = git.Repo(directory, search_parent_directories=False)
        except (git.NoSuchPathError, git.InvalidGitRepositoryError) as exc:
            raise FatalError(
                f"{directory}: not a git repository",
                hint="--repo names the clone of the specs repository (default: .)",
            ) from exc
        self.directory = Path(self.repo.working_tree_dir or self.repo.git_dir).resolve()

    def fetch(self) -> list[str]:
        """Fetch every remote; returns the problems (a watcher keeps going on what it has)."""
        import git

        problems = []
        for remote in self.repo.remotes:
            try:
                remote.fetch(prune=True)
            except git.GitCommandError as exc:
                problems.append(f"fetching {remote.name}: {' '.join(str(exc.stderr).split())}")
        return problems

    def resolve(self, ref: str) -> Commit:
        import git

        try:
            commit = self.repo.commit(ref)
        except (git.BadName, ValueError, git.GitCommandError) as exc:
            raise FatalError(
                f"{ref!r} is not a commit of {self.directory}",
                hint="--ref takes a branch, a tag, a commit or e.g. origin/main",
            ) from exc
        author = f"{commit.author.name} <{commit.author.email}>"
        summary = commit.summary if isinstance(commit.summary, str) else commit.summary.decode()
        return Commit(commit.hexsha, ref, author, summary, commit.committed_datetime.isoformat())

    def validate(self, commit: Commit, *, offline: bool = False) -> ValidationResult:
        """The commit's specs, checked like ``orchestra validate`` checks a checkout."""
        tree = self.repo.commit(commit.sha).tree
        files: list[SpecFile] = []
        blobs: dict[str, Any] = {}
        problems: list[Diagnostic] = []
        has_users = _has_tree(tree, "users")
        for path, blob in _blobs(tree):
            if not _is_spec(path, has_users):
                continue
            if blob.mode == _SYMLINK:
                problems.append(
                    Diagnostic(path, 0, 0, "$", "a symbolic link: specs must be files", "file")
                )
                continue
            parts = Path(path).parts
            under_users = has_users and parts[0] == "users"
            owner = parts[1] if under_users and len(parts) >= 3 else None
            files.append(SpecFile(self.directory / path, path, owner, under_users, True))
            blobs[path] = blob

        def read(spec_file: SpecFile) -> LoadResult:
            blob = blobs[spec_file.display]
            return load_bytes(blob.data_stream.read(MAX_FILE_BYTES + 1), spec_file.display)

        return validate_files(files, problems, read, offline=offline)


def _has_tree(tree: Any, name: str) -> bool:
    return any(item.type == "tree" and item.name == name for item in tree.trees)


def _blobs(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for item in sorted(tree, key=lambda i: i.name):
        if item.name.startswith("."):
            continue
        path = f"{prefix}{item.name}"
        if item.type == "tree":
            yield from _blobs(item, f"{path}/")
        elif item.type == "blob":
            yield path, item


def _is_spec(path: str, has_users: bool) -> bool:
    """design.md's "Which files are specs", for paths in a commit."""
    if not path.endswith(SUFFIXES):
        return False
    if not has_users:
        return True
    parts = path.split("/")
    return parts[0] in ("users", "clusters") or (len(parts) == 1 and parts[0] in _CLUSTER_FILES)

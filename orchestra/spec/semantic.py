"""The rules JSON Schema cannot express: ownership, unique names, references between
documents, dataset paths and, unless offline, the datasets on the storage."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from orchestra.fsutil import resolved_outside
from orchestra.spec import bounds
from orchestra.spec.diagnostics import Diagnostic, json_path
from orchestra.spec.discover import SpecFile
from orchestra.spec.loader import Document
from orchestra.spec.model import (
    ClusterSpec,
    DatasetSpec,
    SpecSet,
    TaskSpec,
    cluster_from,
    dataset_from,
    owner_of,
    task_from,
)
from orchestra.spec.schema import did_you_mean


@dataclass(frozen=True)
class Placed:
    """A schema-valid document and the file it came from."""

    file: SpecFile
    doc: Document


def _diag(doc: Document, path: Sequence[str | int], message: str) -> Diagnostic:
    line, column = doc.locate(path)
    return Diagnostic(doc.file, line, column, json_path(path), message, "semantic")


def check(
    placed: Iterable[Placed],
    *,
    offline: bool,
    broken: Collection[tuple[str, str]] = (),
) -> tuple[SpecSet, list[Diagnostic]]:
    """Build the :class:`SpecSet` of the valid documents and every semantic problem.

    ``broken`` holds the (kind, name) of documents that failed the schema: a reference to one
    of them is not reported again as missing.
    """
    specs = SpecSet()
    problems: list[Diagnostic] = []
    requested: set[str] = set()
    ordered = sorted(placed, key=lambda p: (p.file.display, p.doc.index))
    for item in ordered:
        if item.file.requested:
            requested.add(item.file.display)
        problems += _check_one(item, specs)
    for task in specs.tasks.values():
        problems += _check_references(task, specs, broken)
        problems += bounds.check_task(task, specs.clusters.get(task.cluster))
    if not offline:
        problems += _check_storage(specs, requested)
    return specs, problems


def _check_one(item: Placed, specs: SpecSet) -> list[Diagnostic]:
    doc, file = item.doc, item.file
    kind = doc.data["kind"]
    name = doc.data["metadata"]["name"]
    problems: list[Diagnostic] = []
    if kind == "Cluster":
        if file.under_users:
            problems.append(
                _diag(
                    doc,
                    ["kind"],
                    "a Cluster may not be defined under users/: clusters belong "
                    "to the operators (put it in cluster.yaml or clusters/)",
                )
            )
        return problems + _register(specs.clusters, cluster_from(doc, file.path.parent), name, doc)
    if file.under_users:
        if file.owner is None:
            problems.append(
                _diag(doc, [], "files under users/ must be inside users/<user>/ to have an owner")
            )
        elif owner_of(name) != file.owner:
            problems.append(
                _diag(
                    doc,
                    ["metadata", "name"],
                    f"{name!r} is not {file.owner}'s: documents under users/{file.owner}/ may "
                    f"only define names starting with 'user.{file.owner}.'",
                )
            )
    if kind == "Dataset":
        dataset = dataset_from(doc)
        problems += _check_dataset_path(dataset)
        return problems + _register(specs.datasets, dataset, name, doc)
    task = task_from(doc)
    if file.requested and name not in specs.tasks:
        specs.requested_tasks.add(name)
    return problems + _register(specs.tasks, task, name, doc)


def _register(
    table: dict[str, ClusterSpec] | dict[str, DatasetSpec] | dict[str, TaskSpec],
    spec: ClusterSpec | DatasetSpec | TaskSpec,
    name: str,
    doc: Document,
) -> list[Diagnostic]:
    first = table.get(name)
    if first is not None:
        line, column = first.doc.locate(["metadata", "name"])
        kind = doc.data["kind"]
        where = f"{first.doc.file}:{line}:{column}"
        return [
            _diag(
                doc,
                ["metadata", "name"],
                f"duplicate {kind} name {name!r}: first defined at {where}",
            )
        ]
    table[name] = spec  # type: ignore[assignment]
    return []


def _check_dataset_path(dataset: DatasetSpec) -> list[Diagnostic]:
    path = dataset.path
    where = ["spec", "path"]
    if "\x00" in path:
        return [_diag(dataset.doc, where, "a path may not contain a NUL character")]
    if path.startswith(("/", "~")) or os.path.isabs(path):
        return [
            _diag(
                dataset.doc,
                where,
                f"path {path!r} must be relative to <storage>/{dataset.owner}/files/",
            )
        ]
    if ".." in PurePosixPath(path).parts or "\\" in path:
        return [
            _diag(
                dataset.doc,
                where,
                f"path {path!r} may not leave <storage>/{dataset.owner}/files/ ('..' is refused)",
            )
        ]
    return []


def _check_references(
    task: TaskSpec, specs: SpecSet, broken: Collection[tuple[str, str]]
) -> list[Diagnostic]:
    problems = []
    if task.cluster not in specs.clusters and ("Cluster", task.cluster) not in broken:
        problems.append(
            _diag(
                task.doc,
                ["spec", "cluster"],
                f"no Cluster named {task.cluster!r}" + did_you_mean(task.cluster, specs.clusters),
            )
        )
    for field in ("data", "configs"):
        name = getattr(task, field)
        if not name.startswith("user.") or name.count(".") < 2 or owner_of(name) != task.owner:
            problems.append(
                _diag(
                    task.doc,
                    ["spec", field],
                    f"a Task may only use its owner's Datasets: {name!r} does not start with "
                    f"'user.{task.owner}.'",
                )
            )
        elif name not in specs.datasets and ("Dataset", name) not in broken:
            own = [n for n in specs.datasets if owner_of(n) == task.owner]
            problems.append(
                _diag(
                    task.doc,
                    ["spec", field],
                    f"no Dataset named {name!r}" + did_you_mean(name, own),
                )
            )
    return problems


def _check_storage(specs: SpecSet, requested: set[str]) -> list[Diagnostic]:
    """Disk checks, once per (cluster, dataset): datasets exist, stay inside files/, and
    ``configs`` is a directory. A problem is reported at the document the user asked about."""
    problems: list[Diagnostic] = []
    unreachable: set[str] = set()
    seen: set[tuple[str, str, str]] = set()

    def at(
        primary: Document,
        path: list[str | int],
        fallback: Document,
        fallback_path: list[str | int],
        message: str,
    ) -> None:
        if primary.file in requested or fallback.file not in requested:
            problems.append(_diag(primary, path, message))
        else:
            problems.append(_diag(fallback, fallback_path, message))

    for task in specs.tasks.values():
        cluster = specs.clusters.get(task.cluster)
        if cluster is None:
            continue
        if not cluster.storage.is_dir():
            if cluster.name not in unreachable:
                unreachable.add(cluster.name)
                at(
                    cluster.doc,
                    ["spec", "storage"],
                    task.doc,
                    ["spec", "cluster"],
                    f"storage {str(cluster.storage)!r} of cluster {cluster.name!r} is not "
                    "reachable (no such directory); use --offline to skip storage checks",
                )
            continue
        for field in ("data", "configs"):
            dataset = specs.datasets.get(getattr(task, field))
            if dataset is None or dataset.owner != task.owner:
                continue
            key = (cluster.name, dataset.name, field)
            if key in seen:
                continue
            seen.add(key)
            message = _dataset_on_disk(cluster, dataset, need_directory=field == "configs")
            if message is not None:
                at(dataset.doc, ["spec", "path"], task.doc, ["spec", field], message)
    return problems


def _dataset_on_disk(
    cluster: ClusterSpec, dataset: DatasetSpec, *, need_directory: bool
) -> str | None:
    if _check_dataset_path(dataset):
        return None  # already reported without the disk
    files = cluster.storage / dataset.owner / "files"
    target = files / dataset.path
    shown = f"{files}/{dataset.path}"
    if not files.is_dir():
        return f"{str(files)!r} does not exist on cluster {cluster.name!r}"
    outside = resolved_outside(files, files.parent)
    if outside is not None:
        return (
            f"{str(files)!r} resolves to {outside!r}, outside <storage>/{dataset.owner}/ "
            "(a symlink as the files directory may not lead out of it)"
        )
    outside = resolved_outside(target, files)
    if outside is not None:
        return (
            f"{shown!r} resolves to {outside!r}, outside {dataset.owner}'s files "
            "(a symlink may not leave <storage>/<owner>/files/)"
        )
    # exists/isdir/isfile follow symlinks, to the target now known to be inside
    if not os.path.exists(target):
        return f"{shown!r} does not exist on cluster {cluster.name!r}"
    if need_directory and not os.path.isdir(target):
        return f"{shown!r} is a file; configs needs a directory (one job per file in it)"
    if not need_directory and not (os.path.isfile(target) or os.path.isdir(target)):
        return f"{shown!r} is neither a regular file nor a directory"
    return None

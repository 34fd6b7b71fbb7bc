"""Typed views of schema-valid spec documents, with the defaults of design.md applied."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestra.spec.loader import Document

DEFAULT_TEST_JOBS = 10
DEFAULT_MAX_RETRIES = 2
DEFAULT_NAMESPACE = "orchestra-{user}"
DEFAULT_ARRAY_LIMIT = 50
DEFAULT_KEEP_ATTEMPTS = 3
PLACEHOLDERS = ("%DATA", "%IN", "%OUT")
#: The longest ``timeout`` (24 days): the local backend waits with poll(), whose milliseconds
#: are a C int (2**31 - 1 ms is 24.8 days); Slurm's --time and Kubernetes'
#: activeDeadlineSeconds hold more. The Task schema's ``maximum`` says the same.
MAX_TIMEOUT_SECONDS = 24 * 86400

#: A Dataset's or Task's name, ``user.<owner>.<name>``: the schemas' pattern. Match it with
#: ``fullmatch`` (``$`` would let a trailing newline through).
OBJECT_NAME = re.compile(r"user\.([a-z0-9][a-z0-9_-]*)\.([A-Za-z0-9_-][A-Za-z0-9._-]*)")


def split_name(name: str) -> tuple[str, str] | None:
    """(owner, short name) of a valid Dataset or Task name, else None."""
    match = OBJECT_NAME.fullmatch(name)
    return (match.group(1), match.group(2)) if match else None


@dataclass(frozen=True)
class KubernetesSettings:
    namespace: str
    volume_claim: str
    mount_path: str
    context: str | None
    templates: Path | None
    ttl_seconds_after_finished: int = 86400
    active_deadline_seconds: int | None = None
    qps: float = 20.0
    burst: int = 30


@dataclass(frozen=True)
class SlurmSettings:
    partition: str | None = None
    array_limit: int = DEFAULT_ARRAY_LIMIT
    account: str | None = None
    #: a command prefix running ``<image> /bin/sh -c <exec>``, e.g. ``apptainer exec``
    container_runtime: str | None = None
    max_array_size: int | None = None  # None: the cluster's MaxArraySize (scontrol)
    templates: Path | None = None


@dataclass(frozen=True, eq=False)
class ClusterSpec:
    name: str
    backend: str
    storage: Path  # absolute: relative paths are resolved against the defining file
    max_parallel: int | None
    kubernetes: KubernetesSettings | None
    slurm: SlurmSettings
    doc: Document = field(repr=False)
    keep_attempts: int = DEFAULT_KEEP_ATTEMPTS  # earlier attempts kept in jobs/<job>/attempts/


@dataclass(frozen=True, eq=False)
class DatasetSpec:
    name: str
    owner: str
    path: str
    doc: Document = field(repr=False)


@dataclass(frozen=True)
class Resources:
    cpu: float | str | None = None
    memory: str | None = None
    gpu: int = 0


@dataclass(frozen=True, eq=False)
class TaskSpec:
    name: str
    owner: str
    cluster: str
    image: str
    data: str
    configs: str
    output: str
    exec: str
    bypass: bool
    test_jobs: int
    max_retries: int
    parallelism: int | None
    resources: Resources
    env: dict[str, str]
    doc: Document = field(repr=False)
    timeout: int | None = None  # seconds an attempt may run


@dataclass
class SpecSet:
    """Every valid document of a validation run, by kind and name."""

    clusters: dict[str, ClusterSpec] = field(default_factory=dict)
    datasets: dict[str, DatasetSpec] = field(default_factory=dict)
    tasks: dict[str, TaskSpec] = field(default_factory=dict)
    #: Tasks defined in the files asked for (the others were read as context only)
    requested_tasks: set[str] = field(default_factory=set)
    #: Files of the repository with a problem (read as context when the command was not
    #: given them): nothing may be pruned while there is one (design.md, "Day 2")
    invalid_files: list[str] = field(default_factory=list)
    #: name -> file of each document of an invalid file whose ``metadata.name`` reads
    invalid_names: dict[str, str] = field(default_factory=dict)
    #: owner -> file of an invalid document whose name does not read: none of that owner's
    #: tasks can be judged an orphan; owner ``*`` (a file outside users/<owner>/): no one's
    unreadable_owners: dict[str, str] = field(default_factory=dict)

    def invalid_spec_of(self, name: str) -> str | None:
        """The invalid file that defines, or may define, the task ``name``; None: none."""
        parts = split_name(name)
        owner = parts[0] if parts is not None else "*"
        return (
            self.invalid_names.get(name)
            or self.unreadable_owners.get(owner)
            or self.unreadable_owners.get("*")
        )


_DURATION = re.compile(r"([0-9]+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _whole(value: Any) -> Any:
    """An integer field's value: JSON Schema counts ``2.0`` as an integer, so the YAML float
    ``2.0`` passes the schema where an integer is asked for; it is used as ``2``."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def duration_seconds(value: int | float | str | None) -> int | None:
    """Seconds of a schema-valid duration: ``90``, ``'90s'``, ``'1h30m'``; None stays None."""
    if value is None:
        return None
    if isinstance(value, int | float):  # a float only when whole (the schema checked)
        return int(value)
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION.findall(value))


def owner_of(name: str) -> str:
    """``user.alice.x`` -> ``alice`` (names are schema-checked to have this shape)."""
    return name.split(".", 2)[1]


def cluster_from(doc: Document, base_dir: Path) -> ClusterSpec:
    data: dict[str, Any] = doc.data
    spec = data["spec"]
    storage = Path(spec["storage"]).expanduser()
    if not storage.is_absolute():
        storage = base_dir / storage
    kube = spec.get("kubernetes")
    kubernetes = None
    if kube is not None:
        templates = kube.get("templates")
        kubernetes = KubernetesSettings(
            namespace=kube.get("namespace", DEFAULT_NAMESPACE),
            volume_claim=kube["volumeClaim"],
            mount_path=kube.get("mountPath", str(storage)),
            context=kube.get("context"),
            templates=(base_dir / templates) if templates else None,
            ttl_seconds_after_finished=_whole(kube.get("ttlSecondsAfterFinished", 86400)),
            active_deadline_seconds=_whole(kube.get("activeDeadlineSeconds")),
            qps=kube.get("qps", 20.0),
            burst=_whole(kube.get("burst", 30)),
        )
    slurm = spec.get("slurm") or {}
    slurm_templates = slurm.get("templates")
    return ClusterSpec(
        name=data["metadata"]["name"],
        backend=spec["backend"],
        storage=Path(os.path.normpath(storage)),
        max_parallel=_whole(spec.get("maxParallel")),
        kubernetes=kubernetes,
        slurm=SlurmSettings(
            partition=slurm.get("partition"),
            array_limit=_whole(slurm.get("arrayLimit", DEFAULT_ARRAY_LIMIT)),
            account=slurm.get("account"),
            container_runtime=slurm.get("containerRuntime"),
            max_array_size=_whole(slurm.get("maxArraySize")),
            templates=(base_dir / slurm_templates) if slurm_templates else None,
        ),
        doc=doc,
        keep_attempts=_whole(spec.get("keepAttempts", DEFAULT_KEEP_ATTEMPTS)),
    )


def dataset_from(doc: Document) -> DatasetSpec:
    name = doc.data["metadata"]["name"]
    return DatasetSpec(name=name, owner=owner_of(name), path=doc.data["spec"]["path"], doc=doc)


def task_from(doc: Document) -> TaskSpec:
    name = doc.data["metadata"]["name"]
    spec = doc.data["spec"]
    resources = spec.get("resources") or {}
    return TaskSpec(
        name=name,
        owner=owner_of(name),
        cluster=spec["cluster"],
        image=spec["image"],
        data=spec["data"],
        configs=spec["configs"],
        output=spec["output"],
        exec=spec["exec"],
        bypass=spec.get("bypass", False),
        test_jobs=_whole(spec.get("testJobs", DEFAULT_TEST_JOBS)),
        max_retries=_whole(spec.get("maxRetries", DEFAULT_MAX_RETRIES)),
        parallelism=_whole(spec.get("parallelism")),
        resources=Resources(
            cpu=resources.get("cpu"),
            memory=_whole(resources.get("memory")),
            gpu=_whole(resources.get("gpu", 0)),
        ),
        env=dict(spec.get("env") or {}),
        doc=doc,
        timeout=duration_seconds(spec.get("timeout")),
    )

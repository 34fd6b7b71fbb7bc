"""The desired state: each Task expanded into its jobs, with names, commands and digests."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from orchestra.errors import FatalError
from orchestra.plan.hashing import HashCache
from orchestra.spec.model import ClusterSpec, SpecSet, TaskSpec

_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
PLACEHOLDER = re.compile(r"%(DATA|IN|OUT)(?![A-Za-z0-9_])")
JOBS_DIR = "jobs"
LOG_FILE = "log"


@dataclass(frozen=True)
class DesiredJob:
    name: str
    config: str  # the config file's name inside the configs directory
    test: bool
    digest: str
    command: str  # exec with %DATA, %IN, %OUT replaced by quoted absolute paths


@dataclass
class DesiredTask:
    spec: TaskSpec
    cluster: ClusterSpec
    task_dir: Path
    data_path: Path
    configs_path: Path
    spec_digest: str
    jobs: list[DesiredJob]

    @property
    def name(self) -> str:
        return self.spec.name

    def job_dir(self, job: str) -> Path:
        return self.task_dir / JOBS_DIR / job


def task_dir(cluster: ClusterSpec, owner: str, name: str) -> Path:
    return cluster.storage / owner / name


def job_name(file_name: str) -> str:
    """The config file's stem when it is safe, otherwise the sanitised stem plus ``-`` and 8 hex
    digits of the SHA-256 of the full file name (design.md, "Job names")."""
    stem = file_name.rsplit(".", 1)[0] if "." in file_name[1:] else file_name
    if _SAFE_NAME.match(stem) and stem not in (".", ".."):
        return stem
    return _hashed(stem, file_name)


def _hashed(stem: str, file_name: str) -> str:
    cleaned = _UNSAFE_CHARS.sub("_", stem).strip("._") or "job"
    return f"{cleaned[:80]}-{hashlib.sha256(file_name.encode()).hexdigest()[:8]}"


def job_names(file_names: list[str]) -> dict[str, str]:
    """Config file name -> job name, unique within the task: files whose stems collide
    (``a.json`` and ``a.yaml``) all take the hashed form."""
    names = {f: job_name(f) for f in file_names}
    seen: dict[str, int] = {}
    for name in names.values():
        seen[name] = seen.get(name, 0) + 1
    for file_name, name in names.items():
        if seen[name] > 1:
            names[file_name] = _hashed(name, file_name)
    return names


def render_command(exec_template: str, data: str, config: str, output: str) -> str:
    values = {"DATA": shlex.quote(data), "IN": shlex.quote(config), "OUT": shlex.quote(output)}
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], exec_template)


def spec_digest(spec: TaskSpec) -> str:
    canonical = json.dumps(spec.doc.data.get("spec", {}), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{spec.name}\n{canonical}".encode()).hexdigest()


def list_configs(configs_path: Path) -> list[str]:
    """Regular files directly inside the configs directory, hidden ones ignored, sorted."""
    try:
        entries = list(os.scandir(configs_path))
    except OSError as exc:
        raise FatalError(f"cannot list configs directory {configs_path}: {exc.strerror}") from exc
    return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_file())


def expand(specs: SpecSet, names: list[str] | None = None) -> list[DesiredTask]:
    """Every Task of ``specs`` (or those named) with its jobs; reads configs and hashes files."""
    caches: dict[Path, HashCache] = {}
    tasks = []
    for spec in sorted(specs.tasks.values(), key=lambda t: t.name):
        if names is not None and spec.name not in names:
            continue
        cluster = specs.clusters[spec.cluster]
        cache = caches.get(cluster.storage)
        if cache is None:
            cache = caches[cluster.storage] = HashCache(cluster.storage)
        tasks.append(_expand_task(spec, cluster, specs, cache))
    for cache in caches.values():
        cache.save()
    return tasks


def _expand_task(
    spec: TaskSpec, cluster: ClusterSpec, specs: SpecSet, cache: HashCache
) -> DesiredTask:
    files = cluster.storage / spec.owner / "files"
    data_path = files / specs.datasets[spec.data].path
    configs_path = files / specs.datasets[spec.configs].path
    directory = task_dir(cluster, spec.owner, spec.name)
    seen_root = job_path_root(cluster)
    data_digest = cache.digest(data_path)
    env = json.dumps(spec.env, sort_keys=True)
    config_files = list_configs(configs_path)
    names = job_names(config_files)
    test_count = 0 if spec.bypass else spec.test_jobs
    jobs = []
    for index, config in enumerate(config_files):
        name = names[config]
        command = render_command(
            spec.exec,
            _as_seen(data_path, cluster, seen_root),
            _as_seen(configs_path / config, cluster, seen_root),
            _as_seen(directory / JOBS_DIR / name / spec.output, cluster, seen_root),
        )
        config_digest = cache.file_digest(configs_path / config)
        digest = hashlib.sha256(
            "\n".join((spec.image, command, env, data_digest, config_digest)).encode()
        ).hexdigest()
        jobs.append(DesiredJob(name, config, index < test_count, digest, command))
    return DesiredTask(spec, cluster, directory, data_path, configs_path, spec_digest(spec), jobs)


def job_path_root(cluster: ClusterSpec) -> str:
    """Where the storage is, as seen by a running job (the volume mount on Kubernetes)."""
    if cluster.kubernetes is not None:
        return cluster.kubernetes.mount_path
    return str(cluster.storage)


def _as_seen(path: Path, cluster: ClusterSpec, root: str) -> str:
    relative = path.relative_to(cluster.storage)
    return str(Path(root) / relative)

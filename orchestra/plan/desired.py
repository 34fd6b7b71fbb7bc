"""The desired state: each Task expanded into its jobs, with names, commands and digests."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from orchestra.errors import FatalError
from orchestra.plan.hashing import HashCache
from orchestra.spec.model import ClusterSpec, SpecSet, TaskSpec

_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
PLACEHOLDER = re.compile(r"%(DATA|IN|OUT)(?![A-Za-z0-9_])")
_needs_quotes = re.compile(r"[^\w@%+=:,./-]", re.ASCII).search  # as shlex.quote decides
JOBS_DIR = "jobs"


class DesiredJob(NamedTuple):  # a tuple: 100,000 of them are built per plan
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
    """``exec`` with %DATA, %IN and %OUT replaced by shell-quoted paths."""
    quote = shlex.quote
    return compile_template(exec_template)(quote(data), quote(config), quote(output))


def compile_template(exec_template: str) -> Callable[[str, str, str], str]:
    """A renderer of ``exec_template`` taking the three values already quoted: a format
    string built once (literal braces escaped), so rendering a job runs at C speed."""
    pieces = PLACEHOLDER.split(exec_template)  # text, name, text, name, ..., text
    slots = {"DATA": "{0}", "IN": "{1}", "OUT": "{2}"}
    template = "".join(
        slots[piece] if index % 2 else piece.replace("{", "{{").replace("}", "}}")
        for index, piece in enumerate(pieces)
    )
    render: Callable[[str, str, str], str] = template.format
    return render


def spec_digest(spec: TaskSpec) -> str:
    canonical = json.dumps(spec.doc.data.get("spec", {}), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{spec.name}\n{canonical}".encode()).hexdigest()


def list_configs(configs_path: Path, files: str | None = None) -> list[str]:
    """Regular files directly inside the configs directory, hidden ones ignored, sorted. A
    symlink among them must stay inside ``files`` (the owner's files directory): a link to
    another user's files or to /etc is refused, naming it."""
    try:
        entries = list(os.scandir(configs_path))
    except OSError as exc:
        raise FatalError(f"cannot list configs directory {configs_path}: {exc.strerror}") from exc
    names = []
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_file():
            continue
        if files is not None and entry.is_symlink():
            real = os.path.realpath(entry.path)
            root = os.path.realpath(files)
            if not real.startswith(root + os.sep):
                raise FatalError(
                    f"config {entry.path!r} is a symlink to {real!r}, outside {files!r}",
                    hint="a job may only read its owner's files: copy the file instead",
                )
        names.append(entry.name)
    return sorted(names)


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
    # Plain strings, not pathlib, in the per-job loop: a no-op plan of 100,000 jobs spends
    # most of its time here.
    storage = str(cluster.storage)
    files = f"{storage}/{spec.owner}/files"
    data_path = os.path.normpath(f"{files}/{specs.datasets[spec.data].path}")
    configs_path = os.path.normpath(f"{files}/{specs.datasets[spec.configs].path}")
    directory = f"{storage}/{spec.owner}/{spec.name}"
    seen = job_path_root(cluster).rstrip("/")

    def as_seen(path: str) -> str:  # the path as a running job sees it
        return seen + path[len(storage) :]

    data_digest = cache.digest(Path(data_path))
    env = json.dumps(spec.env, sort_keys=True)
    config_files = list_configs(Path(configs_path), files)
    names = job_names(config_files)
    test_count = 0 if spec.bypass else spec.test_jobs
    quote = shlex.quote
    quoted_data = quote(as_seen(data_path))
    seen_configs = as_seen(configs_path) + "/"
    configs_plain = not _needs_quotes(seen_configs)
    seen_jobs = as_seen(directory) + f"/{JOBS_DIR}/"
    outputs_plain = not _needs_quotes(seen_jobs) and not _needs_quotes(spec.output)
    output = "/" + spec.output
    render = compile_template(spec.exec)
    head = spec.image + "\n"
    tail = f"\n{env}\n{data_digest}\n"
    path_digest = cache.path_digest
    sha256 = hashlib.sha256
    jobs = []
    for index, config in enumerate(config_files):
        name = names[config]  # always plain: [A-Za-z0-9._-]
        if configs_plain and not _needs_quotes(config):
            quoted_config = seen_configs + config
        else:
            quoted_config = quote(seen_configs + config)
        quoted_output = seen_jobs + name + output
        if not outputs_plain:
            quoted_output = quote(quoted_output)
        command = render(quoted_data, quoted_config, quoted_output)
        config_digest = path_digest(f"{configs_path}/{config}")
        digest = sha256((head + command + tail + config_digest).encode()).hexdigest()
        jobs.append(DesiredJob(name, config, index < test_count, digest, command))
    return DesiredTask(
        spec,
        cluster,
        Path(directory),
        Path(data_path),
        Path(configs_path),
        spec_digest(spec),
        jobs,
    )


def job_path_root(cluster: ClusterSpec) -> str:
    """Where the storage is, as seen by a running job (the volume mount on Kubernetes)."""
    if cluster.kubernetes is not None:
        return cluster.kubernetes.mount_path
    return str(cluster.storage)

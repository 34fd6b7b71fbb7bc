"""The desired state: each Task expanded into its jobs, with names, commands and digests."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from itertools import repeat
from pathlib import Path
from typing import NamedTuple

from orchestra.errors import FatalError, UnsafePath
from orchestra.fsutil import resolved_outside
from orchestra.plan.hashing import HashCache
from orchestra.spec.model import ClusterSpec, SpecSet, TaskSpec
from orchestra.status.model import jobs_digest

_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")  # fullmatch: "$" would let a trailing newline in
_SAFE_LINES = re.compile(r"[A-Za-z0-9._-]+(?:\n[A-Za-z0-9._-]+)*")  # safe names, one a line
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
    """A Task with its jobs, held as columns (job names, config files, input digests,
    commands; the first ``test_count`` are the test jobs): a plan with nothing to do only
    compares names and digests, and never builds the 100,000 ``DesiredJob`` of :attr:`jobs`.
    The digests and commands are made when first asked for: a plan whose ``jobs_digest`` came
    from the cache (the task's inputs unchanged) and matches the snapshot never asks."""

    spec: TaskSpec
    cluster: ClusterSpec
    task_dir: Path
    data_path: Path
    configs_path: Path
    spec_digest: str
    job_names: list[str]
    configs: list[str]  # the config files, as status names them (config_label)
    test_count: int
    #: digest of the jobs' (name, inputs digest) pairs, as status.yaml's ``jobsDigest``
    jobs_digest: str
    make_columns: Callable[[], tuple[list[str], list[str]]]  # (digests, commands)

    @classmethod
    def of_jobs(
        cls,
        spec: TaskSpec,
        cluster: ClusterSpec,
        paths: tuple[Path, Path, Path],
        spec_digest: str,
        jobs: list[DesiredJob],
    ) -> DesiredTask:
        """From DesiredJob rows (test jobs first); ``paths``: task dir, data, configs."""
        digests, commands = [j.digest for j in jobs], [j.command for j in jobs]
        return cls(
            spec,
            cluster,
            *paths,
            spec_digest,
            [j.name for j in jobs],
            [j.config for j in jobs],
            sum(j.test for j in jobs),
            jobs_digest((j.name, j.digest) for j in jobs),
            lambda: (digests, commands),
        )

    @cached_property
    def _columns(self) -> tuple[list[str], list[str]]:
        return self.make_columns()

    @property
    def digests(self) -> list[str]:
        return self._columns[0]

    @property
    def commands(self) -> list[str]:
        return self._columns[1]

    @cached_property
    def jobs(self) -> list[DesiredJob]:
        tests = [index < self.test_count for index in range(len(self.job_names))]
        columns = zip(self.job_names, self.configs, tests, self.digests, self.commands, strict=True)
        return list(map(DesiredJob._make, columns))

    @property
    def test_jobs(self) -> int:
        return min(self.test_count, len(self.job_names))

    @property
    def name(self) -> str:
        return self.spec.name

    def job_dir(self, job: str) -> Path:
        return self.task_dir / JOBS_DIR / job


def task_dir(cluster: ClusterSpec, owner: str, name: str) -> Path:
    return cluster.storage / owner / name


def _stem(file_name: str) -> str:
    return file_name.rsplit(".", 1)[0] if "." in file_name[1:] else file_name


def _is_safe(stem: str) -> bool:
    return bool(_SAFE_NAME.fullmatch(stem)) and stem not in (".", "..")


def job_name(file_name: str) -> str:
    """The config file's stem when it is safe, otherwise the sanitised stem plus ``-`` and 8 hex
    digits of the SHA-256 of the full file name (design.md, "Job names"). Within a task,
    :func:`job_names` decides: this is the name a file gets when it collides with none."""
    stem = _stem(file_name)
    return stem if _is_safe(stem) else _hashed(stem, file_name)


def _hashed(stem: str, file_name: str) -> str:
    cleaned = _UNSAFE_CHARS.sub("_", stem).strip("._") or "job"
    # os.fsencode: a name that is not valid UTF-8 comes from os.listdir surrogate-escaped, and
    # hashes as the bytes it is on disk (the same bytes as .encode() for every UTF-8 name)
    return f"{cleaned[:80]}-{hashlib.sha256(os.fsencode(file_name)).hexdigest()[:8]}"


def job_names(file_names: list[str]) -> dict[str, str]:
    """Config file name -> job name, unique within the task by construction, for any set of
    file names. A safe stem no other file shares is its job's name (the usual case, checked
    for all at once). Every other file takes its hashed name (stems that collide, ``a.json``
    and ``a.yaml``, all do), in file name order; one already taken (a crafted or unlucky name
    equal to another's) gets ``-2``, ``-3``... until it is free."""
    stems = [_stem(f) for f in file_names]
    joined = "\n".join(stems)
    if (
        _SAFE_LINES.fullmatch(joined)
        and joined.count("\n") == len(stems) - 1  # no stem holds a newline itself
        and len(set(stems)) == len(stems)
        and "." not in stems
        and ".." not in stems
    ):  # the usual case: every stem is its job's name
        return dict(zip(file_names, stems, strict=True))
    shared = Counter(stems)
    pairs = list(zip(file_names, stems, strict=True))
    names = {f: stem for f, stem in pairs if shared[stem] == 1 and _is_safe(stem)}
    taken = set(names.values())
    for file_name, stem in sorted(pairs):
        if file_name in names:
            continue
        base = name = _hashed(stem, file_name)
        suffix = 1
        while name in taken:  # base, base-2, base-3... are distinct: this ends
            suffix += 1
            name = f"{base}-{suffix}"
        names[file_name] = name
        taken.add(name)
    return names


def config_label(file_name: str) -> str:
    """How the status names a config file: by its name, or, when the name is not valid UTF-8
    (os.listdir gives such bytes surrogate-escaped), with those bytes written ``\\xNN``, so
    that status.yaml stays valid YAML and every status line prints."""
    return os.fsencode(file_name).decode("utf-8", "backslashreplace")


def render_command(exec_template: str, data: str, config: str, output: str) -> str:
    """``exec`` with %DATA, %IN and %OUT replaced by shell-quoted paths."""
    quote = shell_quote
    return compile_template(exec_template)(quote(data), quote(config), quote(output))


_ESCAPED_BYTES = re.compile("([\udc80-\udcff]+)")  # how os.fsdecode keeps bytes not UTF-8


def shell_quote(text: str) -> str:
    """``shlex.quote(text)``, except that a path that is not valid UTF-8 (os.listdir gives its
    bytes surrogate-escaped) becomes one shell word of plain text, each such byte made by
    ``printf`` ('caf'"$(printf '\\351')"'.txt'): the command then travels as JSON (events,
    the Kubernetes API) and as a UTF-8 script, and the job gets the file's very bytes."""
    if text.isascii() or not _ESCAPED_BYTES.search(text):
        return shlex.quote(text)
    words = []
    for index, piece in enumerate(_ESCAPED_BYTES.split(text)):
        if index % 2:  # never a newline, which $(...) would strip: these bytes are >= 0x80
            octal = "".join(f"\\{byte:03o}" for byte in os.fsencode(piece))
            words.append(f"\"$(printf '{octal}')\"")
        elif piece:
            words.append(shlex.quote(piece))
    return "".join(words)


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
    if files is not None:
        for entry in entries:
            if entry.is_symlink() and not entry.name.startswith(".") and entry.is_file():
                real = resolved_outside(entry.path, files)
                if real is not None:
                    raise UnsafePath(
                        f"config {entry.path!r}",
                        f"is a symlink to {real!r}, outside {files!r}",
                        hint="a job may only read its owner's files: copy the file instead",
                    )
    return sorted([e.name for e in entries if e.is_file() and not e.name.startswith(".")])


def expand(
    specs: SpecSet, names: list[str] | None = None, refused: dict[str, str] | None = None
) -> list[DesiredTask]:
    """Every Task of ``specs`` (or those named) with its jobs; reads configs and hashes files.
    A task whose files are unsafe (:class:`UnsafePath`: a FIFO or a link out of the owner's
    files in its data) is left out and named in ``refused`` (task -> message) when given; it
    raises otherwise."""
    caches: dict[Path, HashCache] = {}
    listings: dict[str, _Listing] = {}  # a configs directory shared by tasks is read once
    safe_files: set[str] = set()  # owners whose files directory stays in their directory
    tasks = []
    for spec in sorted(specs.tasks.values(), key=lambda t: t.name):
        if names is not None and spec.name not in names:
            continue
        cluster = specs.clusters[spec.cluster]
        cache = caches.get(cluster.storage)
        if cache is None:
            cache = caches[cluster.storage] = HashCache(cluster.storage)
        try:
            owner_dir = f"{cluster.storage}/{spec.owner}"
            if owner_dir not in safe_files:  # its files directory checked once per owner
                outside = resolved_outside(f"{owner_dir}/files", owner_dir)
                if outside is not None:
                    raise UnsafePath(
                        f"{owner_dir}/files", f"resolves to {outside!r}, outside {owner_dir}/"
                    )
                safe_files.add(owner_dir)
            tasks.append(_expand_task(spec, cluster, specs, cache, listings))
        except UnsafePath as exc:
            if refused is None:
                raise
            refused[spec.name] = exc.message
    for cache in caches.values():
        cache.save()
    return tasks


class _Listing(NamedTuple):
    files: list[str]  # the config files, sorted
    job_names: list[str]
    digests: list[str]  # of their contents
    key: str  # digest of the three, for the inputs key of the tasks that use the listing
    labels: list[str]  # the config files as status names them (see config_label)


# Changes when the way job digests are computed changes: the cached jobs digests go stale.
_DIGESTS_VERSION = "1"


def _expand_task(
    spec: TaskSpec,
    cluster: ClusterSpec,
    specs: SpecSet,
    cache: HashCache,
    listings: dict[str, _Listing],
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

    data_digest = cache.digest(Path(data_path), files)
    env = json.dumps(spec.env, sort_keys=True)
    listing = listings.get(configs_path)
    if listing is None:
        config_files = list_configs(Path(configs_path), files)
        names = job_names(config_files)
        job_list = [names[config] for config in config_files]
        digests = cache.path_digests([f"{configs_path}/{config}" for config in config_files])
        key = json.dumps([config_files, job_list, digests])
        listing = listings[configs_path] = _Listing(
            config_files,
            job_list,
            digests,
            hashlib.sha256(key.encode()).hexdigest(),
            config_files
            if "".join(config_files).isascii()
            else [config_label(config) for config in config_files],
        )
    config_files, job_list, config_digests, listing_key, labels = listing
    quoted_data = shell_quote(as_seen(data_path))
    seen_configs = as_seen(configs_path) + "/"
    seen_jobs = as_seen(directory) + f"/{JOBS_DIR}/"
    # Everything the jobs' digests (and names) are computed from, below: the same key, the
    # same digests, so a cached jobs digest stands for them.
    inputs = [_DIGESTS_VERSION, spec.image, spec.exec, env, data_digest, quoted_data]
    inputs += [seen_configs, seen_jobs, spec.output, listing_key]
    inputs_key = hashlib.sha256(json.dumps(inputs).encode()).hexdigest()

    def columns() -> tuple[list[str], list[str]]:
        """Each job's inputs digest and command."""
        quote = shell_quote
        configs_plain = not _needs_quotes(seen_configs)
        outputs_plain = not _needs_quotes(seen_jobs) and not _needs_quotes(spec.output)
        output = "/" + spec.output
        render = compile_template(spec.exec)
        head = spec.image + "\n"
        tail = f"\n{env}\n{data_digest}\n"
        # Column by column, each a comprehension or a map over C functions: a plan of 100,000
        # new jobs spends most of its time here.
        if configs_plain and not _needs_quotes("".join(config_files)):
            quoted_configs = [seen_configs + config for config in config_files]
        else:
            quoted_configs = [quote(seen_configs + config) for config in config_files]
        quoted_outputs = [seen_jobs + name + output for name in job_list]
        if not outputs_plain:
            quoted_outputs = [quote(path) for path in quoted_outputs]
        commands = list(map(render, repeat(quoted_data), quoted_configs, quoted_outputs))
        sha256 = hashlib.sha256
        digests = [
            sha256((head + command + tail + config_digest).encode()).hexdigest()
            for command, config_digest in zip(commands, config_digests, strict=True)
        ]
        return digests, commands

    known = cache.known_jobs_digest(inputs_key) or None  # (an empty one is junk)
    task = DesiredTask(
        spec,
        cluster,
        Path(directory),
        Path(data_path),
        Path(configs_path),
        spec_digest(spec),
        job_list,
        labels,
        0 if spec.bypass else spec.test_jobs,
        known or "",
        columns,
    )
    if known is None:
        task.jobs_digest = jobs_digest(zip(job_list, task.digests, strict=True))
        cache.remember_jobs_digest(inputs_key, task.jobs_digest)
    return task


def job_path_root(cluster: ClusterSpec) -> str:
    """Where the storage is, as seen by a running job (the volume mount on Kubernetes)."""
    if cluster.kubernetes is not None:
        return cluster.kubernetes.mount_path
    return str(cluster.storage)

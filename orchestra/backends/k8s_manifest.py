"""Kubernetes manifests of orchestra jobs, rendered from Jinja templates.

The templates (``templates/kubernetes/job.yaml.j2``, or a Cluster's own directory) run in a
sandboxed Jinja environment with ``StrictUndefined``; every user value reaches them as a
variable and leaves through ``tojson``, never as template source, so it can neither break the
YAML nor be evaluated. This module does not import ``kubernetes``.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from json.encoder import encode_basestring_ascii as _encode_string
from pathlib import Path
from typing import Any, Protocol

from orchestra.backends.templating import sandboxed_environment
from orchestra.errors import FatalError
from orchestra.resources import data_dir
from orchestra.spec.model import ClusterSpec, TaskSpec

MANAGED_BY = "orchestra"
TEMPLATE = "job.yaml.j2"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_NOT_DNS = re.compile(r"[^a-z0-9-]+")
#: An owner that is its own part of a namespace: a DNS label without '--' (which marks the
#: hashed form of the others, see _owner_label).
_PLAIN_OWNER = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
_ASTRAL = re.compile("([\U00010000-\U0010ffff])")


class RenderedJob(Protocol):
    """What a manifest needs of a job (``orchestra.plan.desired.DesiredJob`` has it)."""

    @property
    def name(self) -> str: ...
    @property
    def digest(self) -> str: ...
    @property
    def command(self) -> str: ...


def _short_hash(*parts: str, length: int = 10) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:length]


def job_name(task: str, job: str) -> str:
    """The Job's name: a readable prefix (task's last part, job name) plus a hash of the full
    (task, job) pair; a DNS-1123 label of at most 63 characters, the same every time."""
    short_task = task.split(".", 2)[-1]
    prefix = _NOT_DNS.sub("-", f"{short_task}-{job}".lower()).strip("-")
    prefix = re.sub("-{2,}", "-", prefix)[:52].strip("-") or "job"
    return f"{prefix}-{_short_hash(task, job)}"


def label_value(value: str) -> str:
    """``value`` when it is a valid label value, else a hash of it (labels hold 63 characters)."""
    if len(value) <= 63 and _LABEL_VALUE.match(value):
        return value
    return f"h-{_short_hash(value, length=40)}"


def namespace(cluster: ClusterSpec, owner: str) -> str:
    """The namespace of ``owner``'s Jobs: the Cluster's ``namespace`` with ``{user}`` replaced
    by the owner, or, when the owner is not usable as it is, by :func:`_owner_label`. Two
    owners never get the same namespace (unless the template has no ``{user}``)."""
    assert cluster.kubernetes is not None
    template = cluster.kubernetes.namespace.lower().replace("_", "-")
    name = template.replace("{user}", owner)
    if _PLAIN_OWNER.fullmatch(owner) is None or len(name) > 63 or not _DNS_LABEL.match(name):
        uses = template.count("{user}")
        room = (63 - len(template) + uses * len("{user}")) // max(1, uses)
        name = template.replace("{user}", _owner_label(owner, room))
    if len(name) > 63 or not _DNS_LABEL.match(name):
        raise FatalError(
            f"cluster {cluster.name!r}: namespace {name!r} is not a valid Kubernetes namespace "
            "(lowercase letters, digits and '-', at most 63)"
        )
    return name


def _owner_label(owner: str, room: int) -> str:
    """An owner that is not a plain label (it holds '_' or '--', ends in '-', or is too long)
    as ``<readable part>--<hash of the owner>``: a plain owner never holds '--', so this never
    equals one, and the 80-bit hash tells two of these apart. ``a-b`` stays ``a-b``; ``a_b``
    is ``a-b--<20 hex digits>``."""
    readable = re.sub("-{2,}", "-", _NOT_DNS.sub("-", owner.lower())).strip("-") or "u"
    readable = readable[: max(1, room - 22)].rstrip("-")
    return f"{readable}--{_short_hash(owner, length=20)}"


def task_labels(task: str, owner: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "orchestra.io/user": label_value(owner),
        "orchestra.io/task": label_value(task),
    }


def yaml_string(value: str) -> str:
    """``value`` as a YAML double-quoted scalar: JSON's ASCII escapes, except that characters
    beyond U+FFFF get YAML's ``\\UXXXXXXXX`` (YAML readers refuse JSON's surrogate pairs)."""
    encoded: str = _encode_string(value)
    if "\\ud" not in encoded:
        return encoded
    pieces = _ASTRAL.split(value)
    return (
        '"'
        + "".join(
            f"\\U{ord(piece):08x}" if index % 2 else _encode_string(piece)[1:-1]
            for index, piece in enumerate(pieces)
        )
        + '"'
    )


def yaml_value(value: Any) -> str:
    """Any JSON-like value as one line of YAML flow syntax (mapping keys sorted)."""
    if isinstance(value, str):
        return yaml_string(value)
    encoded = json.dumps(value, sort_keys=True)  # the same escapes as yaml_string, in C
    if "\\ud" not in encoded:
        return encoded
    if isinstance(value, dict):
        items = sorted(value.items())
        return "{" + ", ".join(f"{yaml_string(str(k))}: {yaml_value(v)}" for k, v in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_value(item) for item in value) + "]"
    return json.dumps(value)


def _tojson(_context: Any, value: Any, indent: int | None = None) -> str:
    """The templates' ``tojson``: Jinja's own emits JSON escaped for HTML, which YAML readers
    refuse for characters beyond U+FFFF; this one emits :func:`yaml_value` (and is 4x faster),
    which any YAML reader parses back to exactly ``value``. ``indent`` is accepted and
    ignored: the output is always one line."""
    if type(value) is str:
        return yaml_string(value)
    return yaml_value(value)


@cache
def _environment(directory: Path) -> Any:
    from jinja2 import pass_eval_context

    return sandboxed_environment(directory, {"tojson": pass_eval_context(_tojson)})


class ManifestRenderer:
    """Renders the Jobs of one cluster; the template is compiled once."""

    def __init__(self, cluster: ClusterSpec) -> None:
        if cluster.kubernetes is None:
            raise FatalError(f"cluster {cluster.name!r} has no kubernetes settings")
        self.cluster = cluster
        self.settings = cluster.kubernetes
        self._task_key: tuple[str, str, str | None] | None = None
        self._task_part: dict[str, Any] = {}
        directory = self.settings.templates or data_dir("templates") / "kubernetes"
        from jinja2 import TemplateError

        try:
            self.template = _environment(Path(directory)).get_template(TEMPLATE)
        except TemplateError as exc:
            raise FatalError(
                f"cluster {cluster.name!r}: template {directory}/{TEMPLATE}: {exc}"
            ) from exc

    def render(self, spec: TaskSpec, spec_digest: str, job: RenderedJob, **kwargs: Any) -> str:
        return self.render_with_values(spec, spec_digest, job, **kwargs)[0]

    def render_with_values(
        self,
        spec: TaskSpec,
        spec_digest: str,
        job: RenderedJob,
        *,
        attempt: int = 1,
        run_id: str = "",
        commit: str | None = None,
    ) -> tuple[str, list[str]]:
        """The manifest, and the variables' strings that differ from job to job of the task
        (for :meth:`ManifestValidator.errors_of_rendered`); the first is the Job's name."""
        variables, values = self._variables(
            spec, spec_digest, job, attempt=attempt, run_id=run_id, commit=commit
        )
        text: str = self.template.render(variables)
        return text, values

    def _variables(
        self,
        spec: TaskSpec,
        spec_digest: str,
        job: RenderedJob,
        *,
        attempt: int,
        run_id: str,
        commit: str | None,
    ) -> tuple[dict[str, Any], list[str]]:
        key = (spec.name, spec_digest, commit)
        if self._task_key != key:
            self._task_key, self._task_part = key, self._task_variables(spec, spec_digest, commit)
        task = self._task_part
        job_label = label_value(job.name)
        name = job_name(spec.name, job.name)
        working_dir = f"{task['mount_path']}/{spec.name}/jobs/{job.name}"
        job_values = {
            "ORCHESTRA_ATTEMPT": str(attempt),
            "ORCHESTRA_JOB": job.name,
            "ORCHESTRA_RUN_ID": run_id,
        }
        env = dict(sorted({**task["env"], **job_values}.items()))
        variables = {
            **task,
            "name": name,
            "labels": {**task["labels"], "orchestra.io/job": job_label},
            "annotations": dict(
                sorted(
                    {
                        **task["annotations"],
                        "orchestra.io/job-name": job.name,
                        "orchestra.io/inputs-digest": job.digest,
                        "orchestra.io/attempt": job_values["ORCHESTRA_ATTEMPT"],
                        "orchestra.io/run-id": run_id,
                    }.items()
                )
            ),
            "command": job.command,
            "working_dir": working_dir,
            "env": env,
            "env_list": [{"name": key, "value": value} for key, value in env.items()],
        }
        values = [name, job_label, job.digest, job.command, working_dir, *job_values.values()]
        return variables, values

    def _task_variables(
        self, spec: TaskSpec, spec_digest: str, commit: str | None
    ) -> dict[str, Any]:
        owner = spec.owner
        root = self.settings.mount_path.rstrip("/")
        requests: dict[str, Any] = {}
        limits: dict[str, Any] = {}
        if spec.resources.cpu is not None:
            requests["cpu"] = str(spec.resources.cpu)
        if spec.resources.memory is not None:
            requests["memory"] = limits["memory"] = spec.resources.memory
        if spec.resources.gpu:
            limits["nvidia.com/gpu"] = str(spec.resources.gpu)
        return {
            "namespace": namespace(self.cluster, owner),
            "labels": dict(sorted(task_labels(spec.name, owner).items())),
            "annotations": {
                "orchestra.io/task-name": spec.name,
                "orchestra.io/spec-digest": spec_digest,
                "orchestra.io/commit": commit or "",
            },
            "ttl_seconds_after_finished": self.settings.ttl_seconds_after_finished,
            # the Task's timeout, else the Cluster's default
            "active_deadline_seconds": spec.timeout or self.settings.active_deadline_seconds,
            "image": spec.image,
            "env": {**spec.env, "ORCHESTRA_TASK": spec.name},
            "requests": requests,
            "limits": limits,
            # only the owner's directory of the shared storage is mounted
            "mount_path": f"{root}/{owner}",
            "sub_path": owner,
            "volume_claim": self.settings.volume_claim,
        }

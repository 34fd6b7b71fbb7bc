"""Kubernetes manifests of orchestra jobs, rendered from Jinja templates.

The templates (``templates/kubernetes/job.yaml.j2``, or a Cluster's own directory) run in a
sandboxed Jinja environment with ``StrictUndefined``; every user value reaches them as a
variable and leaves through ``tojson``, never as template source, so it can neither break the
YAML nor be evaluated. This module does not import ``kubernetes``.
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from orchestra.errors import FatalError
from orchestra.resources import data_dir
from orchestra.spec.model import ClusterSpec, TaskSpec

MANAGED_BY = "orchestra"
TEMPLATE = "job.yaml.j2"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_NOT_DNS = re.compile(r"[^a-z0-9-]+")


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
    assert cluster.kubernetes is not None
    name = cluster.kubernetes.namespace.replace("{user}", owner).lower().replace("_", "-")
    if len(name) > 63 or not _DNS_LABEL.match(name):
        raise FatalError(
            f"cluster {cluster.name!r}: namespace {name!r} is not a valid Kubernetes namespace "
            "(lowercase letters, digits and '-', at most 63)"
        )
    return name


def task_labels(task: str, owner: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "orchestra.io/user": label_value(owner),
        "orchestra.io/task": label_value(task),
    }


@cache
def _environment(directory: Path) -> Any:
    from jinja2 import FileSystemLoader, StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(
        loader=FileSystemLoader(str(directory)),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )


class ManifestRenderer:
    """Renders the Jobs of one cluster; the template is compiled once."""

    def __init__(self, cluster: ClusterSpec) -> None:
        if cluster.kubernetes is None:
            raise FatalError(f"cluster {cluster.name!r} has no kubernetes settings")
        self.cluster = cluster
        self.settings = cluster.kubernetes
        directory = self.settings.templates or data_dir("templates") / "kubernetes"
        from jinja2 import TemplateError

        try:
            self.template = _environment(Path(directory)).get_template(TEMPLATE)
        except TemplateError as exc:
            raise FatalError(
                f"cluster {cluster.name!r}: template {directory}/{TEMPLATE}: {exc}"
            ) from exc

    def variables(
        self,
        spec: TaskSpec,
        spec_digest: str,
        job: RenderedJob,
        *,
        attempt: int = 1,
        run_id: str = "",
        commit: str | None = None,
    ) -> dict[str, Any]:
        owner = spec.owner
        root = self.settings.mount_path.rstrip("/")
        labels = {**task_labels(spec.name, owner), "orchestra.io/job": label_value(job.name)}
        requests: dict[str, Any] = {}
        limits: dict[str, Any] = {}
        if spec.resources.cpu is not None:
            requests["cpu"] = str(spec.resources.cpu)
        if spec.resources.memory is not None:
            requests["memory"] = limits["memory"] = spec.resources.memory
        if spec.resources.gpu:
            limits["nvidia.com/gpu"] = str(spec.resources.gpu)
        env = {
            **spec.env,
            "ORCHESTRA_TASK": spec.name,
            "ORCHESTRA_JOB": job.name,
            "ORCHESTRA_ATTEMPT": str(attempt),
            "ORCHESTRA_RUN_ID": run_id,
        }
        return {
            "name": job_name(spec.name, job.name),
            "namespace": namespace(self.cluster, owner),
            "labels": labels,
            "annotations": {
                "orchestra.io/task-name": spec.name,
                "orchestra.io/job-name": job.name,
                "orchestra.io/spec-digest": spec_digest,
                "orchestra.io/inputs-digest": job.digest,
                "orchestra.io/commit": commit or "",
                "orchestra.io/attempt": str(attempt),
                "orchestra.io/run-id": run_id,
            },
            "ttl_seconds_after_finished": self.settings.ttl_seconds_after_finished,
            "active_deadline_seconds": self.settings.active_deadline_seconds,
            "image": spec.image,
            "command": job.command,
            "working_dir": f"{root}/{owner}/{spec.name}/jobs/{job.name}",
            "env": env,
            "requests": requests,
            "limits": limits,
            # only the owner's directory of the shared storage is mounted
            "mount_path": f"{root}/{owner}",
            "sub_path": owner,
            "volume_claim": self.settings.volume_claim,
        }

    def render(self, spec: TaskSpec, spec_digest: str, job: RenderedJob, **kwargs: Any) -> str:
        text: str = self.template.render(**self.variables(spec, spec_digest, job, **kwargs))
        return text

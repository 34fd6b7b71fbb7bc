"""The Kubernetes backend: one ``batch/v1`` Job per attempt, submitted with server-side apply.

The only module that imports ``kubernetes``. Configuration: the kubeconfig (``$KUBECONFIG``
or ``~/.kube/config``) and the Cluster's ``spec.kubernetes.context``, or the in-cluster
service account when orchestra runs in a pod. Status comes from one paginated list of the
task's Jobs per poll (label ``orchestra.io/task``), never a GET per job; a failed Job's pods
are listed (again one call per task) to learn the exit code and reason (OOMKilled, ...).

Every request goes through a client-side rate limit (the Cluster's ``qps``/``burst``,
default 20/30) and is retried on 429, 5xx and connection errors with backoff, honouring
``Retry-After``. Built so far: submit (server-side apply, field manager ``orchestra``; a new
attempt of a job deletes the previous Job first), poll, cancel, recover. Not yet: pruning
orphaned Jobs by label.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Collection, Sequence
from typing import Any

import urllib3
import yaml
from kubernetes import client, config

from orchestra.backends.base import JobEvent, JobRun
from orchestra.backends.k8s_manifest import ManifestRenderer, job_name, label_value, namespace
from orchestra.errors import FatalError
from orchestra.fsutil import now_iso
from orchestra.spec.model import ClusterSpec

FIELD_MANAGER = "orchestra"
PAGE = 500
POLL_INTERVAL = 2.0
_APPLY = "application/apply-patch+yaml"


MAX_TRIES = 8
_TRANSIENT = (429, 500, 502, 503, 504)


class RateLimiter:
    """Token bucket: ``qps`` requests a second on average, ``burst`` at once."""

    def __init__(self, qps: float, burst: int) -> None:
        self.qps, self.burst = qps, burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def acquire(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.qps)
        self.stamp = now
        if self.tokens < 1:
            time.sleep((1 - self.tokens) / self.qps)
            self.stamp = time.monotonic()
            self.tokens = 1.0
        self.tokens -= 1


def api_message(exc: client.ApiException) -> str:
    """The server's Status message (``field is immutable: ...``), not just ``HTTP 422``."""
    try:
        body = json.loads(exc.body or "{}")
        return f"{body.get('reason') or exc.reason}: {body.get('message') or exc.body}"
    except ValueError:
        return f"HTTP {exc.status} {exc.reason}"


class KubernetesBackend:
    poll_interval = POLL_INTERVAL

    def __init__(self, cluster: ClusterSpec) -> None:
        assert cluster.kubernetes is not None
        self.cluster = cluster
        self.renderer = ManifestRenderer(cluster)
        try:
            try:
                configuration = client.Configuration()
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    # $KUBECONFIG read now: the client reads it once, when imported
                    config_file=os.environ.get("KUBECONFIG"),
                    context=cluster.kubernetes.context,
                    client_configuration=configuration,
                )
            except config.ConfigException:
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException as exc:
            raise FatalError(
                f"cluster {cluster.name!r}: no Kubernetes configuration ({exc})",
                hint="set KUBECONFIG, or run orchestra inside the cluster",
            ) from exc
        configuration.retries = False  # orchestra retries, with backoff and Retry-After
        api = client.ApiClient(configuration)
        self.limiter = RateLimiter(cluster.kubernetes.qps, cluster.kubernetes.burst)
        self.calls = 0  # API requests made (retries included)
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self._tracked: dict[
            str, tuple[JobRun, str, str, bool]
        ] = {}  # run id -> (run, ns, name, started)
        self._events: list[JobEvent] = []
        self._last_poll = 0.0

    def capacity(self) -> int | None:
        return None  # the cluster schedules; a task's parallelism still applies

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        """One API call through the rate limiter, retried on 429, 5xx and connection errors
        (honouring ``Retry-After``, else exponential backoff from 0.1 s to 10 s)."""
        for attempt in range(MAX_TRIES):
            self.limiter.acquire()
            self.calls += 1
            try:
                return method(*args, **kwargs)
            except client.ApiException as exc:
                if exc.status not in _TRANSIENT or attempt == MAX_TRIES - 1:
                    raise
                delay = _retry_after(exc) or min(10.0, 0.1 * 2**attempt)
            except urllib3.exceptions.HTTPError as exc:
                if attempt == MAX_TRIES - 1:
                    raise FatalError(f"cluster {self.cluster.name!r} unreachable: {exc}") from exc
                delay = min(10.0, 0.1 * 2**attempt)
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _where(self, run: JobRun) -> tuple[str, str]:
        owner = run.task.split(".", 2)[1]  # task names are user.<owner>.<rest>
        return namespace(self.cluster, owner), job_name(run.task, run.job)

    def submit(self, run: JobRun) -> None:
        assert run.spec is not None, "the engine passes the Task with each attempt"
        ns, name = self._where(run)
        manifest = self.renderer.render(
            run.spec,
            run.spec_digest,
            _Job(run.job, run.digest, run.command),
            attempt=run.attempt,
            run_id=run.run_id,
            commit=run.commit,
        )
        body = yaml.load(manifest, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        run.job_dir.mkdir(parents=True, exist_ok=True)  # the pod's working directory
        try:
            self._apply(ns, name, body)
        except client.ApiException as exc:
            if exc.status != 422:
                raise FatalError(f"submitting {run.task}/{run.job}: {api_message(exc)}") from exc
            # an earlier attempt's Job: its pod template differs (and is immutable)
            self._delete(ns, name)
            self._apply(ns, name, body)
        self._tracked[run.run_id] = (run, ns, name, False)

    def _apply(self, ns: str, name: str, body: dict[str, Any]) -> None:
        self._call(
            self.batch.patch_namespaced_job,
            name,
            ns,
            body,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=_APPLY,
        )

    def _delete(self, ns: str, name: str) -> None:
        try:
            self._call(self.batch.delete_namespaced_job, name, ns, propagation_policy="Background")
        except client.ApiException as exc:
            if exc.status != 404:
                raise FatalError(f"deleting job {ns}/{name}: {api_message(exc)}") from exc

    def poll(self, timeout: float) -> list[JobEvent]:
        wait = self.poll_interval - (time.monotonic() - self._last_poll)
        if wait > 0:
            time.sleep(min(wait, timeout))
            if time.monotonic() - self._last_poll < self.poll_interval:
                return self._take()
        self._last_poll = time.monotonic()
        by_task: dict[tuple[str, str], list[str]] = {}
        for run_id, (run, ns, _name, _started) in self._tracked.items():
            by_task.setdefault((ns, run.task), []).append(run_id)
        for (ns, task), run_ids in by_task.items():
            jobs = self._list_jobs(ns, task)
            pods: dict[str, dict[str, Any]] | None = None
            for run_id in run_ids:
                run, _ns, name, started = self._tracked[run_id]
                job = jobs.get(name)
                annotations = (job or {}).get("metadata", {}).get("annotations") or {}
                if job is None or annotations.get("orchestra.io/run-id") != run_id:
                    del self._tracked[run_id]
                    self._events.append(JobEvent(run, "lost", now_iso(), reason="its Job is gone"))
                    continue
                status = job.get("status") or {}
                if status.get("succeeded"):
                    del self._tracked[run_id]
                    self._events.append(JobEvent(run, "finished", now_iso(), exit_code=0))
                elif status.get("failed"):
                    if pods is None:
                        pods = self._list_pods(ns, task)
                    code, reason = _failure(pods.get(name), status)
                    del self._tracked[run_id]
                    self._events.append(
                        JobEvent(run, "finished", now_iso(), exit_code=code, reason=reason)
                    )
                elif status.get("active") and not started:
                    self._tracked[run_id] = (run, ns, name, True)
                    self._events.append(JobEvent(run, "started", now_iso(), node=name))
        return self._take()

    def _take(self) -> list[JobEvent]:
        events, self._events = self._events, []
        return events

    def _list_jobs(self, ns: str, task: str) -> dict[str, dict[str, Any]]:
        selector = f"orchestra.io/task={label_value(task)}"
        found: dict[str, dict[str, Any]] = {}
        token = None
        while True:
            page: Any = self._call(
                self.batch.list_namespaced_job,
                ns,
                label_selector=selector,
                limit=PAGE,
                _continue=token,
            )
            for job in page.items:
                found[job.metadata.name] = self.batch.api_client.sanitize_for_serialization(job)
            token = page.metadata._continue
            if not token:
                return found

    def _list_pods(self, ns: str, task: str) -> dict[str, dict[str, Any]]:
        selector = f"orchestra.io/task={label_value(task)}"
        pods: Any = self._call(self.core.list_namespaced_pod, ns, label_selector=selector)
        found = {}
        for pod in pods.items:
            data = self.core.api_client.sanitize_for_serialization(pod)
            owner = (data.get("metadata", {}).get("labels") or {}).get("job-name")
            if owner:
                found[owner] = data
        return found

    def cancel(self, run_ids: Collection[str]) -> None:
        for run_id in run_ids:
            tracked = self._tracked.pop(run_id, None)
            if tracked is None:
                continue
            run, ns, name, _started = tracked
            self._delete(ns, name)
            self._events.append(JobEvent(run, "finished", now_iso(), reason="cancelled"))

    def recover(self, runs: Sequence[JobRun]) -> list[JobEvent]:
        events = []
        for run in runs:
            ns, name = self._where(run)
            self._tracked[run.run_id] = (run, ns, name, False)
        self._last_poll = 0.0
        events += self.poll(0.0)
        # every attempt gets an answer: those still in the cluster, not yet active or not yet
        # reported, are watched from now on, and their end comes through poll()
        answered = {e.run.run_id for e in events}
        for run in runs:
            tracked = self._tracked.get(run.run_id)
            if tracked is not None and run.run_id not in answered:
                events.append(JobEvent(run, "started", now_iso()))
                self._tracked[run.run_id] = (*tracked[:3], True)
        return events

    def managed_jobs(self, namespaces: Collection[str]) -> list[dict[str, Any]]:
        """Every Job labelled ``app.kubernetes.io/managed-by: orchestra`` in ``namespaces``."""
        found = []
        for ns in sorted(namespaces):
            token = None
            while True:
                page: Any = self._call(
                    self.batch.list_namespaced_job,
                    ns,
                    label_selector="app.kubernetes.io/managed-by=orchestra",
                    limit=PAGE,
                    _continue=token,
                )
                found += [self.batch.api_client.sanitize_for_serialization(j) for j in page.items]
                token = page.metadata._continue
                if not token:
                    break
        return found

    def delete_job(self, ns: str, name: str) -> None:
        self._delete(ns, name)

    def namespace_of(self, owner: str) -> str:
        return namespace(self.cluster, owner)

    def close(self) -> list[JobRun]:
        return []  # Jobs run on in the cluster; the next apply finds them


def _retry_after(exc: client.ApiException) -> float | None:
    value = (exc.headers or {}).get("Retry-After")
    try:
        return min(60.0, float(value)) if value else None
    except ValueError:
        return None


class _Job:
    def __init__(self, name: str, digest: str, command: str) -> None:
        self.name, self.digest, self.command = name, digest, command


def _failure(pod: dict[str, Any] | None, status: dict[str, Any]) -> tuple[int, str]:
    """Exit code and reason of a failed Job, from its pod when there is one."""
    for container in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated")
        if terminated:
            return int(terminated.get("exitCode", 1)), str(terminated.get("reason") or "Error")
        waiting = (container.get("state") or {}).get("waiting")
        if waiting:  # e.g. ImagePullBackOff
            return 1, str(waiting.get("reason"))
    conditions = status.get("conditions") or []
    reason = next((c.get("reason") for c in conditions if c.get("type") == "Failed"), None)
    return 1, str(reason or "Failed")

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
from orchestra.fsutil import make_job_dir, now_iso
from orchestra.spec.model import ClusterSpec

FIELD_MANAGER = "orchestra"
PAGE = 500
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
WAITING_CHECK = 10.0  # seconds between looks at the pods of active Jobs that are not ready
POLL_INTERVAL = 2.0
_APPLY = "application/apply-patch+yaml"


MAX_TRIES = 8
# Retried: every call orchestra makes is idempotent (server-side apply with force, list,
# delete), so a Conflict from a concurrent writer is retried like an overloaded server.
_TRANSIENT = (409, 429, 500, 502, 503, 504)
#: (connect, read) seconds before a request is given up and retried: a server that hangs
#: never hangs orchestra
REQUEST_TIMEOUT = (10.0, 60.0)


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
    waiting_check = WAITING_CHECK
    request_timeout = REQUEST_TIMEOUT

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
        self._waiting: dict[str, str | None] = {}  # run id -> why its pod waits, as reported
        self._pods_checked: dict[tuple[str, str], float] = {}  # (ns, task) -> monotonic time

    def capacity(self) -> int | None:
        return None  # the cluster schedules; a task's parallelism still applies

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        """One API call through the rate limiter, with a timeout, retried on 409, 429, 5xx,
        timeouts and connection errors (honouring ``Retry-After``, else exponential backoff
        from 0.1 s to 10 s)."""
        kwargs.setdefault("_request_timeout", self.request_timeout)
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
        make_job_dir(run.job_dir)  # the pod's working directory; never through a symlink
        try:
            self._apply(ns, name, manifest)
        except client.ApiException as exc:
            if exc.status != 422:
                raise FatalError(f"submitting {run.task}/{run.job}: {api_message(exc)}") from exc
            # an earlier attempt's Job: its pod template differs (and is immutable)
            self._delete(ns, name)
            self._apply(ns, name, manifest)
        self._tracked[run.run_id] = (run, ns, name, False)

    def _apply(self, ns: str, name: str, manifest: str) -> None:
        """Server-side apply of the rendered Job; the answer is not decoded into models."""
        response = self._call(
            self.batch.patch_namespaced_job,
            name,
            ns,
            yaml.load(manifest, Loader=_LOADER),
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=_APPLY,
            _preload_content=False,
        )
        response.drain_conn()
        response.release_conn()

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
            not_ready: list[str] = []
            for run_id in run_ids:
                run, _ns, name, started = self._tracked[run_id]
                job = jobs.get(name)
                annotations = (job or {}).get("metadata", {}).get("annotations") or {}
                if job is None or annotations.get("orchestra.io/run-id") != run_id:
                    self._untrack(run_id)
                    self._events.append(JobEvent(run, "lost", now_iso(), reason="its Job is gone"))
                    continue
                status = job.get("status") or {}
                if status.get("succeeded"):
                    self._untrack(run_id)
                    self._events.append(JobEvent(run, "finished", now_iso(), exit_code=0))
                elif status.get("failed"):
                    if pods is None:
                        pods = self._list_pods(ns, task)
                    code, reason = _failure(pods.get(name), status)
                    self._untrack(run_id)
                    self._events.append(
                        JobEvent(run, "finished", now_iso(), exit_code=code, reason=reason)
                    )
                elif status.get("active"):
                    if not started:
                        self._tracked[run_id] = (run, ns, name, True)
                        self._events.append(JobEvent(run, "started", now_iso(), node=name))
                    if not status.get("ready"):
                        not_ready.append(run_id)
                    elif self._waiting.get(run_id, "") is not None:
                        # ready: no longer held back (said once; an earlier orchestra process
                        # may have reported a reason this one never saw)
                        self._waiting[run_id] = None
                        self._events.append(JobEvent(run, "waiting", now_iso(), reason=None))
            if not_ready:
                self._report_waiting(ns, task, not_ready, pods)
        return self._take()

    def _untrack(self, run_id: str) -> None:
        del self._tracked[run_id]
        self._waiting.pop(run_id, None)

    def _report_waiting(
        self, ns: str, task: str, run_ids: list[str], pods: dict[str, dict[str, Any]] | None
    ) -> None:
        """Why the pods of active Jobs not ready yet wait (ImagePullBackOff, Unschedulable...):
        one list of the task's pods, at most every ``waiting_check`` seconds."""
        now = time.monotonic()
        if pods is None:
            if now - self._pods_checked.get((ns, task), -self.waiting_check) < self.waiting_check:
                return
            pods = self._list_pods(ns, task)
        self._pods_checked[(ns, task)] = now
        for run_id in run_ids:
            run, _ns, name, _started = self._tracked[run_id]
            reason = _waiting(pods.get(name))
            if reason != self._waiting.get(run_id, ""):
                self._waiting[run_id] = reason
                self._events.append(JobEvent(run, "waiting", now_iso(), reason=reason))

    def _take(self) -> list[JobEvent]:
        events, self._events = self._events, []
        return events

    def _list(self, method: Any, ns: str, selector: str) -> list[dict[str, Any]]:
        """Every object of one paginated list (``limit``/``continue``), as the API's JSON
        (not decoded into the client's models: 10,000 Jobs a poll must stay cheap)."""
        found: list[dict[str, Any]] = []
        token = None
        while True:
            response = self._call(
                method,
                ns,
                label_selector=selector,
                limit=PAGE,
                _continue=token,
                _preload_content=False,
            )
            try:
                page = json.loads(response.data)
            finally:
                response.release_conn()
            found += page.get("items") or []
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return found

    def _list_jobs(self, ns: str, task: str) -> dict[str, dict[str, Any]]:
        jobs = self._list(self.batch.list_namespaced_job, ns, _task_selector(task))
        return {job["metadata"]["name"]: job for job in jobs}

    def _list_pods(self, ns: str, task: str) -> dict[str, dict[str, Any]]:
        """The task's pods by the name of their Job."""
        found = {}
        for pod in self._list(self.core.list_namespaced_pod, ns, _task_selector(task)):
            owner = (pod.get("metadata", {}).get("labels") or {}).get("job-name")
            if owner:
                found[owner] = pod
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
            found += self._list(
                self.batch.list_namespaced_job, ns, "app.kubernetes.io/managed-by=orchestra"
            )
        return found

    def delete_job(self, ns: str, name: str) -> None:
        self._delete(ns, name)

    def namespace_of(self, owner: str) -> str:
        return namespace(self.cluster, owner)

    def close(self) -> list[JobEvent]:
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


def _task_selector(task: str) -> str:
    return f"orchestra.io/task={label_value(task)}"


def _waiting(pod: dict[str, Any] | None) -> str | None:
    """Why a pod has not started its container, when that is news (not the normal moments of
    ContainerCreating / PodInitializing)."""
    status = (pod or {}).get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return _reason_text(
                condition.get("reason") or "Unschedulable", condition.get("message")
            )
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason and reason not in ("ContainerCreating", "PodInitializing"):
            return _reason_text(reason, waiting.get("message"))
    return None


def _reason_text(reason: str, message: str | None) -> str:
    message = " ".join((message or "").split())
    return f"waiting: {reason}" + (f": {message[:200]}" if message else "")


def _failure(pod: dict[str, Any] | None, status: dict[str, Any]) -> tuple[int, str]:
    """Exit code and reason of a failed Job, from its pod when there is one. A pod the node
    evicted (memory or disk pressure) says so at the pod's level, with the kubelet's message."""
    pod_status = (pod or {}).get("status") or {}
    if pod_status.get("reason") == "Evicted":
        message = " ".join(str(pod_status.get("message") or "").split())
        return 137, "Evicted" + (f": {message[:200]}" if message else "")
    for container in pod_status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated")
        if terminated:
            return int(terminated.get("exitCode", 1)), str(terminated.get("reason") or "Error")
        waiting = (container.get("state") or {}).get("waiting")
        if waiting:  # e.g. ImagePullBackOff
            return 1, str(waiting.get("reason"))
    conditions = status.get("conditions") or []
    reason = next((c.get("reason") for c in conditions if c.get("type") == "Failed"), None)
    return 1, str(reason or "Failed")

"""A fake Kubernetes API server on 127.0.0.1, over real HTTP, for the real ``kubernetes``
client (and ``kubectl``): no kube-apiserver can run on these machines.

Enough of the API for orchestra: discovery; namespaces; ``batch/v1`` Jobs and ``v1`` Pods with
create, get, list (label selectors, ``limit``/``continue``), patch (server-side apply with
``application/apply-patch+yaml``, JSON merge patch, strategic merge treated as merge), delete,
and the Job ``status`` subresource; uid, resourceVersion and creationTimestamp; ``Status``
bodies for 404, 409 and 422 (including "field is immutable" when an apply changes a Job's pod
template). Tests drive jobs to an end (``start_job``, ``finish_job``; or ``auto_complete``
ends every Job the moment it is created) and inject faults (429 with Retry-After, 500,
dropped connections, latency); every request is counted.

Run as a program (``python -m tests.fakes.kube_apiserver [--auto-complete]``) it serves in a
process of its own, so that a benchmark's orchestra does not share its interpreter: it prints
its URL, answers each ``requests`` line on stdin with the request counts as JSON, and stops
at end of input.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import random
import re
import select
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

RESOURCES = {  # (group/version path, plural) -> kind
    ("api/v1", "namespaces"): "Namespace",
    ("api/v1", "pods"): "Pod",
    ("apis/batch/v1", "jobs"): "Job",
}
_PATH = re.compile(
    r"^/(?P<gv>api/v1|apis/batch/v1)"
    r"(?:/namespaces/(?P<ns>[^/]+))?"
    r"/(?P<plural>namespaces|pods|jobs)"
    r"(?:/(?P<name>[^/]+))?(?:/(?P<sub>status))?$"
)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_body(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def matches(labels: dict[str, str], selector: str) -> bool:
    """Label selector: ``a=b``, ``a!=b``, ``a``, ``!a``, ``a in (x,y)``, ``a notin (x)``."""
    for raw_term in re.findall(r"[^,(]+(?:\([^)]*\))?", selector):
        term = raw_term.strip()
        if not term:
            continue
        if m := re.match(r"^(\S+)\s+(in|notin)\s+\((.*)\)$", term):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if (op == "in") != (labels.get(key) in values):
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


@dataclass
class Faults:
    """Fault injection: each request fails with probability ``rate`` (or, with ``every`` set,
    every ``every``-th request fails, the kinds taken in turn), one of ``kinds``:

    - ``429`` Too Many Requests with ``Retry-After``; ``500`` an internal error;
    - ``409`` a Conflict ("the object has been modified");
    - ``drop`` the connection closed without an answer;
    - ``timeout`` the request is carried out but the answer is held until the client gives
      up waiting and closes the connection (so a retry repeats a write already done), at
      most ``timeout_delay`` seconds: whatever the machine's speed, the client is never told.
      ``abandoned`` counts the answers the client gave up on.
    """

    rate: float = 0.0
    kinds: tuple[str, ...] = ("429", "500", "drop")
    retry_after: int = 1
    latency: float = 0.0
    seed: int = 0
    every: int = 0
    timeout_delay: float = 60.0
    injected: Counter[str] = field(default_factory=Counter)
    abandoned: int = 0

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._count = 0
        self._lock = threading.Lock()

    def pick(self) -> str | None:
        with self._lock:
            self._count += 1
            if self.every:
                if self._count % self.every:
                    return None
                kind = self.kinds[(self._count // self.every - 1) % len(self.kinds)]
            elif self.rate and self._random.random() < self.rate:
                kind = self._random.choice(self.kinds)
            else:
                return None
            self.injected[kind] += 1
            return kind


class FakeKubeAPIServer:
    def __init__(self, *, auto_complete: bool = False, token: str | None = None) -> None:
        self.auto_complete = auto_complete
        #: when set, a request without ``Authorization: Bearer <token>`` gets 401
        self.token = token
        self.authorized = 0  # requests that carried the token
        self.lock = threading.RLock()
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (kind, ns, name)
        self._pods: dict[tuple[str, str], str] = {}  # (ns, Job) -> the name of its pod
        self.resource_version = 0
        self.requests: Counter[str] = Counter()  # "VERB kind" -> count
        self.faults = Faults()
        handler = type("Handler", (_Handler,), {"api": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def write_kubeconfig(self, path: Any, context: str = "fake") -> None:
        """A kubeconfig whose ``context`` (the current one) points at this server, with the
        server's bearer token when it has one."""
        write_kubeconfig(path, self.url, context, token=self.token)

    def __enter__(self) -> FakeKubeAPIServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # store ---------------------------------------------------------------------------------
    def _bump(self, obj: dict[str, Any]) -> None:
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)

    def create(self, kind: str, namespace: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        meta = body.setdefault("metadata", {})
        name = meta.get("name")
        if not name and meta.get("generateName"):
            name = meta["generateName"] + uuid.uuid4().hex[:5]
            meta["name"] = name
        if not name:
            return 422, status_body(
                422, "Invalid", f"{kind} is invalid: metadata.name: Required value"
            )
        key = (kind, namespace, name)
        with self.lock:
            if key in self.objects:
                return 409, status_body(
                    409, "AlreadyExists", f'{kind.lower()}s "{name}" already exists', name=name
                )
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now())
            if kind != "Namespace":
                meta["namespace"] = namespace
            body.setdefault("status", {})
            self._bump(body)
            self.objects[key] = body
            if kind == "Job" and self.auto_complete:
                self.finish_job(namespace, name)
            return 201, copy.deepcopy(body)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            obj = self.objects.get((kind, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        with self.lock:
            obj = self.objects.pop((kind, namespace, name), None)
            if obj is None:
                return False
            if kind == "Job":  # background propagation: its pods go too
                for key, pod in list(self.objects.items()):
                    labels = pod["metadata"].get("labels", {})
                    if key[0] == "Pod" and key[1] == namespace and labels.get("job-name") == name:
                        del self.objects[key]
            return True

    def list(self, kind: str, namespace: str | None, selector: str) -> list[dict[str, Any]]:
        with self.lock:
            items = [
                copy.deepcopy(obj)
                for (k, ns, _n), obj in sorted(self.objects.items())
                if k == kind
                and (namespace is None or ns == namespace)
                and matches(obj["metadata"].get("labels", {}), selector)
            ]
            return items

    # test helpers --------------------------------------------------------------------------
    def start_job(
        self, namespace: str, name: str, waiting: str | None = None, message: str = ""
    ) -> None:
        """Give a Job its pod, as the cluster would: running (ready), or stuck waiting with a
        container reason (``ImagePullBackOff``...) or ``Unschedulable``."""
        with self.lock:
            job = self.objects[("Job", namespace, name)]
            if waiting == "Unschedulable":
                state: dict[str, Any] = {}
                conditions = [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": waiting,
                        "message": message,
                    }
                ]
            elif waiting:
                state, conditions = {"waiting": {"reason": waiting, "message": message}}, []
            else:
                state, conditions = {"running": {"startedAt": _now()}}, []
            self._set_pod(job, "Pending" if waiting else "Running", state, conditions)
            job["status"] = {
                "startTime": job["metadata"]["creationTimestamp"],
                "active": 1,
                "ready": 0 if waiting else 1,
            }
            self._bump(job)

    def finish_job(
        self,
        namespace: str,
        name: str,
        exit_code: int = 0,
        reason: str | None = None,
        *,
        evicted: str | None = None,
    ) -> None:
        """End a Job as the cluster would: its pod terminated, the Job Complete or Failed
        (``evicted``: the node evicted the pod, with this message)."""
        with self.lock:
            job = self.objects[("Job", namespace, name)]
            terminated = {
                "exitCode": exit_code,
                "reason": reason or ("Completed" if exit_code == 0 else "Error"),
            }
            phase = "Succeeded" if exit_code == 0 else "Failed"
            pod = self._set_pod(job, phase, {"terminated": terminated}, [])
            if evicted is not None:
                pod["status"].update(reason="Evicted", message=evicted, containerStatuses=[])
            condition = "Complete" if exit_code == 0 else "Failed"
            job["status"] = {
                "startTime": job["metadata"]["creationTimestamp"],
                "completionTime": _now() if exit_code == 0 else None,
                "succeeded" if exit_code == 0 else "failed": 1,
                "conditions": [
                    {"type": condition, "status": "True", "reason": reason or condition}
                ],
            }
            self._bump(job)

    def _set_pod(
        self,
        job: dict[str, Any],
        phase: str,
        state: dict[str, Any],
        conditions: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """The Job's one pod (created on first use) in this phase and container state."""
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        pod = self.objects.get(("Pod", namespace, self._pods.get((namespace, name), "")))
        if pod is None:
            labels = {**job["spec"]["template"]["metadata"].get("labels", {}), "job-name": name}
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"{name}-{uuid.uuid4().hex[:5]}", "labels": labels},
                "spec": copy.deepcopy(job["spec"]["template"]["spec"]),
            }
            self.create("Pod", namespace, pod)
            self._pods[(namespace, name)] = pod["metadata"]["name"]
        pod["status"] = {
            "phase": phase,
            "conditions": conditions,
            "containerStatuses": []
            if not state
            else [
                {
                    "name": "job",
                    "image": job["spec"]["template"]["spec"]["containers"][0]["image"],
                    "imageID": "",
                    "ready": phase == "Running",
                    "restartCount": 0,
                    "state": state,
                }
            ],
        }
        self._bump(pod)
        return pod

    def jobs(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.list("Job", namespace, "")


class _Handler(BaseHTTPRequestHandler):
    api: FakeKubeAPIServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else ~40 ms delayed-ACK stalls per request

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _held_until_abandoned(self, limit: float) -> bool:
        """Wait until the client closes the connection (it timed out), at most ``limit``
        seconds; True when it did."""
        deadline = time.monotonic() + limit
        while (left := deadline - time.monotonic()) > 0:
            readable, _w, _x = select.select([self.connection], [], [], min(left, 0.5))
            if readable:
                try:
                    return not self.connection.recv(1, socket.MSG_PEEK)  # b"": closed
                except OSError:
                    return True
        return False

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, verb: str) -> None:
        raw = self._body()  # always read it, or keep-alive connections break
        api = self.api
        if api.token is not None:
            if self.headers.get("Authorization") != f"Bearer {api.token}":
                self._send(401, status_body(401, "Unauthorized", "Unauthorized"))
                return
            api.authorized += 1
        if api.faults.latency:
            time.sleep(api.faults.latency)
        fault = api.faults.pick()
        if fault == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if fault == "429":
            self._send(
                429,
                status_body(429, "TooManyRequests", "too many requests, please retry"),
                {"Retry-After": str(api.faults.retry_after)},
            )
            return
        if fault == "500":
            self._send(500, status_body(500, "InternalError", "injected internal error"))
            return
        if fault == "409":
            message = "Operation cannot be fulfilled: the object has been modified"
            self._send(409, status_body(409, "Conflict", message))
            return
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        discovery = _discovery(split.path)
        if discovery is not None and verb == "GET":
            self._send(200, discovery)
            return
        match = _PATH.match(split.path)
        if match is None:
            self._send(404, status_body(404, "NotFound", f"the server could not find {split.path}"))
            return
        kind = RESOURCES[(match["gv"], match["plural"])]
        ns = match["ns"] or ""
        name = match["name"]
        api.requests[f"{verb} {kind}{'/status' if match['sub'] else ''}"] += 1
        try:
            body = _decode(raw, self.headers.get("Content-Type", ""))
        except ValueError as exc:
            self._send(400, status_body(400, "BadRequest", f"cannot decode body: {exc}"))
            return
        request = _Request(verb, kind, ns, name, match["sub"], query, body, self.headers)
        code, result = _handle(api, request)
        if fault == "timeout":  # done, but the answer comes after the client gave up
            if self._held_until_abandoned(api.faults.timeout_delay):
                with api.lock:
                    api.faults.abandoned += 1
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send(code, result)
            return
        self._send(code, result)


@dataclass
class _Request:
    verb: str
    kind: str
    ns: str
    name: str | None
    sub: str | None
    query: dict[str, str]
    body: Any
    headers: Any


def _decode(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    if "yaml" in content_type:
        return yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return json.loads(raw)


def write_kubeconfig(path: Any, url: str, context: str = "fake", token: str | None = None) -> None:
    """A kubeconfig whose ``context`` (the current one) points at ``url``."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": context, "cluster": {"server": url}}],
                "users": [{"name": "user", "user": {"token": token} if token else {}}],
                "contexts": [{"name": context, "context": {"cluster": context, "user": "user"}}],
                "current-context": context,
            }
        )
    )


def _not_found(kind: str, name: str) -> tuple[int, dict[str, Any]]:
    return 404, status_body(404, "NotFound", f'{kind.lower()}s "{name}" not found', name=name)


def _handle(api: FakeKubeAPIServer, request: _Request) -> tuple[int, dict[str, Any]]:
    verb, kind, ns, name = request.verb, request.kind, request.ns, request.name
    sub, query, body, headers = request.sub, request.query, request.body, request.headers
    if name is None:
        if verb == "GET":
            return 200, _list(api, kind, ns or None, query)
        if verb == "POST":
            if not isinstance(body, dict):
                return 422, status_body(422, "Invalid", "body must be an object")
            return api.create(kind, ns, body)
        return 405, status_body(405, "MethodNotAllowed", f"{verb} not allowed on a collection")
    if verb == "GET":
        obj = api.get(kind, ns, name)
        return (200, obj) if obj is not None else _not_found(kind, name)
    if verb == "DELETE":
        if not api.delete(kind, ns, name):
            return _not_found(kind, name)
        return 200, {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Success",
            "details": {"name": name},
        }
    if verb in ("PATCH", "PUT"):
        content_type = headers.get("Content-Type", "")
        if "apply-patch" in content_type:
            if not query.get("fieldManager"):
                return 422, status_body(
                    422, "Invalid", "fieldManager is required for apply requests"
                )
            return _apply(api, kind, ns, name, body)
        with api.lock:
            obj = api.objects.get((kind, ns, name))
            if obj is None:
                return _not_found(kind, name)
            if sub == "status":
                patched = {
                    **obj,
                    "status": merge_patch(obj.get("status"), (body or {}).get("status")),
                }
            elif verb == "PUT":
                patched = body
            else:
                patched = merge_patch(obj, body)
            patched["metadata"] = {**obj["metadata"], **(patched.get("metadata") or {})}
            if patched != obj:
                api._bump(patched)
            api.objects[(kind, ns, name)] = patched
            return 200, copy.deepcopy(patched)
    return 405, status_body(405, "MethodNotAllowed", f"{verb} not allowed")


def _apply(
    api: FakeKubeAPIServer, kind: str, ns: str, name: str, body: Any
) -> tuple[int, dict[str, Any]]:
    if not isinstance(body, dict) or body.get("metadata", {}).get("name") != name:
        return 422, status_body(422, "Invalid", "the name in the body must match the URL")
    with api.lock:
        obj = api.objects.get((kind, ns, name))
        if obj is None:
            return api.create(kind, ns, copy.deepcopy(body))
        if kind == "Job":
            old = obj.get("spec", {}).get("template")
            new = merge_patch(old, body.get("spec", {}).get("template"))
            if old != new:
                message = (
                    f'Job.batch "{name}" is invalid: spec.template: Invalid value: '
                    "field is immutable"
                )
                return 422, status_body(422, "Invalid", message, name=name, kind="jobs")
        merged = merge_patch(obj, {k: v for k, v in body.items() if k != "status"})
        merged["metadata"] = {**obj["metadata"], **merged["metadata"]}
        for key in ("uid", "creationTimestamp", "resourceVersion", "namespace"):
            merged["metadata"][key] = obj["metadata"][key]
        if merged != obj:
            api._bump(merged)
            api.objects[(kind, ns, name)] = merged
        return 200, copy.deepcopy(api.objects[(kind, ns, name)])


def _list(
    api: FakeKubeAPIServer, kind: str, ns: str | None, query: dict[str, str]
) -> dict[str, Any]:
    items = api.list(kind, ns, query.get("labelSelector", ""))
    start = 0
    token = query.get("continue")
    if token:
        start = int(base64.b64decode(token).decode())
    limit = int(query.get("limit") or 0)
    page = items[start : start + limit] if limit else items[start:]
    metadata: dict[str, Any] = {"resourceVersion": str(api.resource_version)}
    end = start + len(page)
    if limit and end < len(items):
        metadata["continue"] = base64.b64encode(str(end).encode()).decode()
        metadata["remainingItemCount"] = len(items) - end
    group_version = "batch/v1" if kind == "Job" else "v1"
    return {"kind": f"{kind}List", "apiVersion": group_version, "metadata": metadata, "items": page}


def _discovery(path: str) -> dict[str, Any] | None:
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    if path == "/apis":
        version = {"groupVersion": "batch/v1", "version": "v1"}
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [{"name": "batch", "versions": [version], "preferredVersion": version}],
        }
    if path == "/version":
        return {"major": "1", "minor": "31", "gitVersion": "v1.31.0-fake"}
    if path in ("/api/v1", "/apis/batch/v1"):
        verbs = ["create", "delete", "get", "list", "patch", "update"]
        if path == "/api/v1":
            resources = [
                {"name": "namespaces", "namespaced": False, "kind": "Namespace", "verbs": verbs},
                {"name": "pods", "namespaced": True, "kind": "Pod", "verbs": verbs},
            ]
            group_version = "v1"
        else:
            resources = [
                {"name": "jobs", "namespaced": True, "kind": "Job", "verbs": verbs},
                {
                    "name": "jobs/status",
                    "namespaced": True,
                    "kind": "Job",
                    "verbs": ["get", "patch", "update"],
                },
            ]
            group_version = "batch/v1"
        for resource in resources:
            resource.setdefault("singularName", "")
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }
    return None


def main() -> None:
    import sys

    with FakeKubeAPIServer(auto_complete="--auto-complete" in sys.argv) as server:
        print(server.url, flush=True)
        for line in sys.stdin:
            if line.strip() == "requests":
                print(json.dumps(dict(server.requests)), flush=True)


if __name__ == "__main__":
    main()

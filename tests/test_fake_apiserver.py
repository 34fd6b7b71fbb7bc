"""The fake API server speaks enough Kubernetes for the real ``kubernetes`` client and
``kubectl``: what the Kubernetes backend will be tested against."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.fakes.kube_apiserver import FakeKubeAPIServer, matches

LPS = Path(__file__).parent.parent / "examples" / "kubernetes" / "lps"


@pytest.fixture
def server() -> Iterator[FakeKubeAPIServer]:
    with FakeKubeAPIServer() as fake:
        yield fake


@pytest.fixture
def batch(server: FakeKubeAPIServer) -> client.BatchV1Api:
    configuration = client.Configuration(host=server.url)
    configuration.retries = False
    return client.BatchV1Api(client.ApiClient(configuration))


def _job(name: str, task: str = "user.alice.t", command: str = "true") -> dict[str, Any]:
    labels = {"app.kubernetes.io/managed-by": "orchestra", "orchestra.io/task": task}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "job", "image": "i", "command": ["/bin/sh", "-c", command]}
                    ],
                },
            },
        },
    }


def _apply(batch: client.BatchV1Api, body: dict[str, Any], ns: str = "orchestra-alice") -> Any:
    return batch.patch_namespaced_job(
        body["metadata"]["name"],
        ns,
        body,
        field_manager="orchestra",
        force=True,
        _content_type="application/apply-patch+yaml",
    )


def test_create_get_list_delete_with_the_real_client(
    batch: client.BatchV1Api, server: FakeKubeAPIServer
) -> None:
    created = batch.create_namespaced_job("orchestra-alice", _job("a"))
    assert created.metadata.uid and created.metadata.resource_version
    assert batch.read_namespaced_job("a", "orchestra-alice").metadata.name == "a"
    with pytest.raises(client.ApiException) as conflict:
        batch.create_namespaced_job("orchestra-alice", _job("a"))
    assert conflict.value.status == 409
    assert json.loads(conflict.value.body)["message"] == 'jobs "a" already exists'
    batch.delete_namespaced_job("a", "orchestra-alice", propagation_policy="Background")
    with pytest.raises(client.ApiException) as missing:
        batch.read_namespaced_job("a", "orchestra-alice")
    assert missing.value.status == 404 and json.loads(missing.value.body)["reason"] == "NotFound"
    assert server.requests["POST Job"] == 2 and server.requests["DELETE Job"] == 1


def test_list_by_label_selector_with_pages(batch: client.BatchV1Api) -> None:
    for i in range(25):
        batch.create_namespaced_job(
            "ns", _job(f"j{i:02d}", task="user.alice.t" if i % 5 else "other")
        )
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = batch.list_namespaced_job(
            "ns", label_selector="orchestra.io/task=user.alice.t", limit=7, _continue=token
        )
        pages += 1
        seen += [job.metadata.name for job in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert pages == 3 and len(seen) == 20 == len(set(seen))
    assert "j00" not in seen and "j01" in seen


def test_server_side_apply_is_a_no_op_the_second_time_and_refuses_a_changed_template(
    batch: client.BatchV1Api,
) -> None:
    first = _apply(batch, _job("a"))
    second = _apply(batch, _job("a"))
    assert first.metadata.resource_version == second.metadata.resource_version
    with pytest.raises(client.ApiException) as immutable:
        _apply(batch, _job("a", command="changed"))
    assert immutable.value.status == 422
    assert "field is immutable" in json.loads(immutable.value.body)["message"]


def test_finished_jobs_have_status_and_pods(
    batch: client.BatchV1Api, server: FakeKubeAPIServer
) -> None:
    batch.create_namespaced_job("ns", _job("ok"))
    batch.create_namespaced_job("ns", _job("oom"))
    server.finish_job("ns", "ok", 0)
    server.finish_job("ns", "oom", 137, reason="OOMKilled")
    assert batch.read_namespaced_job("ok", "ns").status.succeeded == 1
    failed = batch.read_namespaced_job("oom", "ns").status
    assert failed.failed == 1 and failed.conditions[0].type == "Failed"
    pods = client.CoreV1Api(batch.api_client).list_namespaced_pod(
        "ns", label_selector="job-name=oom"
    )
    (pod,) = pods.items
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (137, "OOMKilled")


def test_injected_faults(batch: client.BatchV1Api, server: FakeKubeAPIServer) -> None:
    server.faults.rate, server.faults.kinds, server.faults.retry_after = 1.0, ("429",), 3
    with pytest.raises(client.ApiException) as throttled:
        batch.list_namespaced_job("ns")
    assert throttled.value.status == 429 and throttled.value.headers["Retry-After"] == "3"
    server.faults.kinds = ("500",)
    with pytest.raises(client.ApiException) as broken:
        batch.list_namespaced_job("ns")
    assert broken.value.status == 500
    assert server.faults.injected == {"429": 1, "500": 1}


def test_label_selectors() -> None:
    labels = {"a": "1", "b": "2"}
    assert matches(labels, "a=1,b==2") and matches(labels, "a!=3") and matches(labels, "a,!c")
    assert matches(labels, "a in (1,3)") and matches(labels, "b notin (3)")
    assert (
        not matches(labels, "a=2")
        and not matches(labels, "c")
        and not matches(labels, "a notin (1)")
    )


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed here")
def test_kubectl_talks_to_it_and_creates_a_rendered_manifest(
    server: FakeKubeAPIServer, tmp_path: Path
) -> None:
    from orchestra.backends.k8s_manifest import ManifestRenderer
    from orchestra.plan.desired import expand
    from orchestra.spec.checker import validate_paths

    specs = validate_paths([], LPS).specs
    (task,) = expand(specs, ["user.alice.my_task_tutorial"])
    manifest = ManifestRenderer(task.cluster).render(task.spec, task.spec_digest, task.jobs[0])
    (tmp_path / "job.yaml").write_text(manifest)
    base = ["kubectl", "--server", server.url]
    done = subprocess.run(
        [*base, "create", "--validate=false", "-f", str(tmp_path / "job.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    listed = subprocess.run(
        [
            *base,
            "get",
            "jobs",
            "-n",
            "orchestra-alice",
            "-l",
            "app.kubernetes.io/managed-by=orchestra",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    (item,) = json.loads(listed.stdout)["items"]
    assert item["metadata"]["name"] == yaml.safe_load(manifest)["metadata"]["name"]

"""The engine's lifecycle on the Kubernetes backend, against the fake API server over HTTP
(the real ``kubernetes`` client; a thread plays the kubelet and ends the Jobs)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from orchestra.backends import kubernetes as kube_backend
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kubelet import Kubelet
from tests.helpers import Repo


@pytest.fixture
def server() -> Iterator[FakeKubeAPIServer]:
    with FakeKubeAPIServer() as fake:
        yield fake


@pytest.fixture
def repo(tmp_path: Path, server: FakeKubeAPIServer, monkeypatch: pytest.MonkeyPatch) -> Repo:
    kubeconfig = tmp_path / "kubeconfig"
    server.write_kubeconfig(kubeconfig)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("ORCHESTRA_USER", "alice")
    monkeypatch.setattr(kube_backend.KubernetesBackend, "poll_interval", 0.05)
    repo = Repo(tmp_path / "repo")
    cluster = yaml.safe_load((repo.root / "cluster.yaml").read_text())
    cluster["spec"].update(
        backend="kubernetes",
        kubernetes={"volumeClaim": "shared", "mountPath": "/mnt/shared", "context": "fake"},
    )
    (repo.root / "cluster.yaml").write_text(yaml.safe_dump(cluster))
    return repo


def test_apply_wait_runs_every_job_once_on_the_cluster(
    repo: Repo, server: FakeKubeAPIServer
) -> None:
    repo.configs({f"c{i}.txt": "ok\n" for i in range(6)})
    task = repo.task(testJobs=2)
    with Kubelet(server):
        assert repo.orchestra("apply", "--wait") == 0
    status = repo.status(task)
    assert status["phase"] == "done" and status["counts"]["done"] == 6
    assert server.requests["PATCH Job"] == 6  # one server-side apply per job
    assert server.requests["DELETE Job"] == 0
    assert len(server.jobs("orchestra-alice")) == 6
    writes = server.requests["PATCH Job"]
    assert repo.orchestra("apply", "--wait") == 0  # nothing to do: no write at all
    assert server.requests["PATCH Job"] == writes


def test_a_failed_test_job_breaks_the_task_with_the_pods_reason(
    repo: Repo, server: FakeKubeAPIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.configs({f"c{i}.txt": "ok\n" for i in range(4)})
    task = repo.task(testJobs=2, maxRetries=1)
    with Kubelet(server) as kubelet:
        kubelet.outcome["c1"] = (137, "OOMKilled")
        assert repo.orchestra("apply", "--wait") == 3
    status = repo.status(task)
    assert status["phase"] == "broken"
    job = status["jobs"]["c1"]
    assert (job["state"], job["attempts"], job["exitCode"], job["reason"]) == (
        "failed",
        2,
        137,
        "OOMKilled",
    )
    assert server.requests["DELETE Job"] == 1  # the retry replaced the first attempt's Job
    assert "c2" not in {
        j["metadata"]["annotations"]["orchestra.io/job-name"] for j in server.jobs()
    }
    capsys.readouterr()
    repo.orchestra("status", task, "--state", "failed")
    assert "OOMKilled" in capsys.readouterr().out


def test_apply_without_wait_submits_and_a_later_apply_follows_them(
    repo: Repo, server: FakeKubeAPIServer
) -> None:
    repo.configs({f"c{i}.txt": "ok\n" for i in range(3)})
    task = repo.task(bypass=True)
    assert repo.orchestra("apply") == 0  # no kubelet: the Jobs wait in the cluster
    status = repo.status(task)
    assert status["phase"] == "running" and status["counts"]["submitted"] == 3
    with Kubelet(server):
        assert repo.orchestra("apply", "--wait") == 0
    assert repo.status(task)["phase"] == "done"
    assert server.requests["PATCH Job"] == 3  # found again, not submitted twice


def test_a_job_missing_from_the_cluster_is_lost_and_submitted_again(
    repo: Repo, server: FakeKubeAPIServer
) -> None:
    repo.configs({"c0.txt": "ok\n"})
    task = repo.task(bypass=True)
    assert repo.orchestra("apply") == 0
    (job,) = server.jobs()
    server.delete("Job", "orchestra-alice", job["metadata"]["name"])
    with Kubelet(server):
        assert repo.orchestra("apply", "--wait") == 0
    status = repo.status(task)
    assert status["jobs"]["c0"]["state"] == "done"
    assert server.requests["PATCH Job"] == 2


def test_injected_api_faults_are_survived(repo: Repo, server: FakeKubeAPIServer) -> None:
    repo.configs({f"c{i}.txt": "ok\n" for i in range(20)})
    task = repo.task(testJobs=3)
    server.faults.rate, server.faults.kinds, server.faults.retry_after = (
        0.1,
        ("429", "500", "drop"),
        0,
    )
    server.faults.seed = 7
    server.faults.__post_init__()
    with Kubelet(server):
        assert repo.orchestra("apply", "--wait") == 0
    status = repo.status(task)
    assert status["phase"] == "done"
    assert all(job["attempts"] == 1 for job in status["jobs"].values())  # none ran twice
    assert len(server.jobs("orchestra-alice")) == 20
    assert sum(server.faults.injected.values()) >= 3


def test_delete_cancels_the_jobs_in_the_cluster(repo: Repo, server: FakeKubeAPIServer) -> None:
    repo.configs({f"c{i}.txt": "ok\n" for i in range(3)})
    task = repo.task(bypass=True)
    assert repo.orchestra("apply") == 0
    assert len(server.jobs()) == 3
    assert repo.orchestra("delete", task) == 0
    assert server.jobs() == []
    status = repo.status(task)
    assert status["phase"] == "killed" and status["counts"]["pending"] == 3


def test_rate_limiter_spends_tokens_then_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(kube_backend.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(kube_backend.time, "sleep", sleep)
    limiter = kube_backend.RateLimiter(qps=10, burst=3)
    for _ in range(5):
        limiter.acquire()
    assert len(slept) == 2 and all(abs(s - 0.1) < 1e-9 for s in slept)  # burst 3, then 10/s
    clock[0] += 10  # idle: the bucket refills to the burst, no more
    for _ in range(3):
        limiter.acquire()
    assert len(slept) == 2


def test_choose_prunable_guards() -> None:
    from orchestra.engine.prune import ManagedJob, choose_prunable
    from orchestra.errors import FatalError

    jobs = [
        ManagedJob("ns", "current", "user.a.t", "r1", active=True),
        ManagedJob("ns", "old-attempt", "user.a.t", "r0", active=False),
        ManagedJob("ns", "old-but-running", "user.a.t", "r9", active=True),
        ManagedJob("ns", "orphan", "user.a.gone", "r5", active=True),
    ]
    chosen = choose_prunable(jobs, {"r1"}, {"user.a.t"})
    assert [j.name for j in chosen] == ["old-attempt", "orphan"]  # 2 of 4: allowed
    with pytest.raises(FatalError, match="more than half"):
        choose_prunable(jobs, set(), set())
    assert len(choose_prunable(jobs, set(), set(), force=True)) == 4


def test_apply_prune_deletes_only_stale_jobs(
    repo: Repo, server: FakeKubeAPIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    import copy

    repo.configs({f"c{i}.txt": "ok\n" for i in range(3)})
    repo.task(bypass=True)
    with Kubelet(server):
        assert repo.orchestra("apply", "--wait") == 0
    (model,) = [
        j for j in server.jobs() if j["metadata"]["annotations"]["orchestra.io/job-name"] == "c0"
    ]
    stale = copy.deepcopy(model)
    stale["metadata"]["name"] = "left-over"
    stale["metadata"]["annotations"]["orchestra.io/run-id"] = "an-old-attempt"
    server.create("Job", "orchestra-alice", stale)
    assert len(server.jobs()) == 4
    capsys.readouterr()
    assert repo.orchestra("apply", "--prune") == 0
    assert "pruned Job orchestra-alice/left-over" in capsys.readouterr().out
    assert "left-over" not in {j["metadata"]["name"] for j in server.jobs()}
    assert len(server.jobs()) == 3
    # four strangers against three known Jobs: more than half, refused without --force
    for i in range(4):
        stranger = copy.deepcopy(stale)
        stranger["metadata"]["name"] = f"stranger-{i}"
        server.create("Job", "orchestra-alice", stranger)
    assert repo.orchestra("apply", "--prune") == 1
    assert "more than half" in capsys.readouterr().err
    assert len(server.jobs()) == 7
    assert repo.orchestra("apply", "--prune", "--force") == 0
    assert len(server.jobs()) == 3


def test_why_a_pod_waits_shows_in_status_before_the_job_fails(
    repo: Repo,
    server: FakeKubeAPIServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(kube_backend.KubernetesBackend, "waiting_check", 0.0)
    repo.configs({f"c{i}.txt": "ok\n" for i in range(3)})
    task = repo.task(bypass=True)
    assert repo.orchestra("apply") == 0  # submitted; no kubelet yet
    names = {
        j["metadata"]["annotations"]["orchestra.io/job-name"]: j["metadata"]["name"]
        for j in server.jobs()
    }
    ns = "orchestra-alice"
    server.start_job(ns, names["c0"], "ImagePullBackOff", 'Back-off pulling image "nope:1"')
    server.start_job(ns, names["c1"], "Unschedulable", "0/3 nodes: insufficient nvidia.com/gpu")
    server.start_job(ns, names["c2"])  # running and ready
    assert repo.orchestra("apply") == 0  # follows them one pass
    jobs = repo.status(task)["jobs"]
    assert [jobs[c]["state"] for c in ("c0", "c1", "c2")] == ["running"] * 3
    assert jobs["c0"]["reason"] == 'waiting: ImagePullBackOff: Back-off pulling image "nope:1"'
    assert jobs["c1"]["reason"] == "waiting: Unschedulable: 0/3 nodes: insufficient nvidia.com/gpu"
    assert jobs["c2"].get("reason") is None
    capsys.readouterr()
    repo.orchestra("status", task)
    assert "waiting: ImagePullBackOff" in capsys.readouterr().out
    server.start_job(ns, names["c0"])  # the image came: running
    assert repo.orchestra("apply") == 0
    assert repo.status(task)["jobs"]["c0"].get("reason") is None


def test_an_evicted_pod_is_a_failure_with_the_kubelets_message_then_retried(
    repo: Repo, server: FakeKubeAPIServer
) -> None:
    repo.configs({"c0.txt": "ok\n"})
    task = repo.task(bypass=True, maxRetries=1)
    assert repo.orchestra("apply") == 0
    (job,) = server.jobs()
    message = "The node was low on resource: memory. Container job was using 9Gi."
    server.finish_job("orchestra-alice", job["metadata"]["name"], 1, evicted=message)
    assert repo.orchestra("apply") == 0  # sees the eviction, submits the retry
    record = repo.status(task)["jobs"]["c0"]
    assert record["state"] in ("submitted", "running") and record["attempts"] == 2
    events = [json.loads(line) for line in (repo.task_dir(task) / "events.jsonl").open()]
    assert {"exitCode": 137, "state": "pending", "reason": f"Evicted: {message}"}.items() <= next(
        e for e in events if e.get("exitCode") == 137
    ).items()
    with Kubelet(server):
        assert repo.orchestra("apply", "--wait") == 0
    assert repo.status(task)["jobs"]["c0"]["state"] == "done"


def test_the_tasks_timeout_is_the_jobs_deadline(repo: Repo, server: FakeKubeAPIServer) -> None:
    repo.configs({"c0.txt": "ok\n"})
    task = repo.task(bypass=True, timeout="1h30m")
    with Kubelet(server) as kubelet:
        kubelet.outcome["c0"] = (143, "DeadlineExceeded")
        assert repo.orchestra("apply", "--wait") == 3
    (job,) = server.jobs()
    assert job["spec"]["activeDeadlineSeconds"] == 5400
    record = repo.status(task)["jobs"]["c0"]
    assert (record["state"], record["reason"]) == ("failed", "DeadlineExceeded")


def test_every_kind_of_api_fault_at_one_request_in_ten_is_survived(
    repo: Repo, server: FakeKubeAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """429, 500, 409, dropped connections and answers that come after the client's timeout
    (the write done, the client not told): the task completes, each job's Job ran once.

    Nothing here depends on the machine's speed: the faults fall on every tenth request, the
    fake holds a late answer until the client has given up (whatever its timeout), and a
    request slowed by a loaded machine past the client's timeout is one more retry, never
    the last one (MAX_TRIES raised)."""
    monkeypatch.setattr(kube_backend.KubernetesBackend, "request_timeout", (10.0, 2.0))
    monkeypatch.setattr(kube_backend, "MAX_TRIES", 1000)
    repo.configs({f"c{i}.txt": "ok\n" for i in range(60)})
    task = repo.task(testJobs=3)
    kinds = ("429", "500", "409", "drop", "timeout")
    server.faults.every, server.faults.kinds, server.faults.retry_after = 10, kinds, 0
    with Kubelet(server) as kubelet:
        assert repo.orchestra("apply", "--wait") == 0
    status = repo.status(task)
    assert status["phase"] == "done"
    assert all(job["attempts"] == 1 for job in status["jobs"].values())
    assert set(kubelet.runs) == {f"c{i}" for i in range(60)}
    assert set(kubelet.runs.values()) == {1}  # no Job ran twice
    assert set(server.faults.injected) == set(kinds)
    assert sum(server.faults.injected.values()) >= 6  # one request in ten of 60 or more
    # every late answer was given up on by the client: none reached it
    assert server.faults.injected["timeout"] >= 1
    _until(lambda: server.faults.abandoned == server.faults.injected["timeout"])


def _until(condition: Callable[[], bool]) -> None:
    """Wait for ``condition`` (a fake server's thread sees the client close its connection
    a moment after the client has moved on), with a deadline generous on any machine."""
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, "condition not met within 60 s"
        time.sleep(0.01)


def test_a_server_that_never_answers_is_a_clear_error_not_a_hang(
    repo: Repo,
    server: FakeKubeAPIServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(kube_backend.KubernetesBackend, "request_timeout", (1.0, 0.2))
    monkeypatch.setattr(kube_backend, "MAX_TRIES", 3)
    repo.configs({"c0.txt": "ok\n"})
    repo.task(bypass=True)
    server.faults.every, server.faults.kinds = 1, ("timeout",)
    assert repo.orchestra("apply") == 1
    # three tries, each given up by the client (the fake holds every answer until then)
    assert server.faults.injected["timeout"] == 3
    _until(lambda: server.faults.abandoned == 3)
    err = capsys.readouterr().err
    assert "unreachable" in err

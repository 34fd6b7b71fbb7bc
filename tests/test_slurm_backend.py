"""The Slurm backend: its script (hostile values, spec fields to sbatch options) without a
cluster; arrays, retries, cancel, lost jobs and recovery against the session's real
single-node Slurm (tests/slurm_cluster.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestra.backends import slurm as slurm_backend
from orchestra.backends.base import EXIT_MARKER, JobRun
from orchestra.backends.slurm import ScriptRenderer, cpus, memory_mib, sbatch_options, time_limit
from orchestra.errors import FatalError
from orchestra.spec.loader import load_text
from orchestra.spec.model import ClusterSpec, Resources, SlurmSettings, TaskSpec
from tests.helpers import Repo
from tests.slurm_cluster import SlurmCluster

pytest_plugins = ["tests.fakes.slurm_plugin"]

HOSTILE = [
    "it's",
    '"; touch {canary}; echo "',
    "$(touch {canary})",
    "`touch {canary}`",
    "a\nb; touch {canary}\n",
    "{{ 7*7 }} {% raw %}",
    "\\'\\\"$HOME",
]


def _cluster(tmp_path: Path, **slurm: Any) -> ClusterSpec:
    doc = load_text("a: 1\n", "c.yaml").documents[0]
    return ClusterSpec("c", "slurm", tmp_path, None, None, SlurmSettings(**slurm), doc)


def _spec(**fields: Any) -> TaskSpec:
    doc = load_text("a: 1\n", "t.yaml").documents[0]
    values: dict[str, Any] = {
        "name": "user.alice.t",
        "owner": "alice",
        "cluster": "c",
        "image": "alice/img:1",
        "data": "user.alice.d",
        "configs": "user.alice.c",
        "output": "output",
        "exec": "true %DATA %IN %OUT",
        "bypass": False,
        "test_jobs": 1,
        "max_retries": 0,
        "parallelism": None,
        "resources": Resources(),
        "env": {},
        "doc": doc,
    }
    values.update(fields)
    return TaskSpec(**values)


def _run(job_dir: Path, spec: TaskSpec, command: str, run_id: str = "r1") -> JobRun:
    return JobRun(spec.name, job_dir.name, 1, run_id, command, job_dir, spec=spec)


# the script, without a cluster -------------------------------------------------------------
def test_hostile_values_cannot_break_or_inject(tmp_path: Path) -> None:
    """Quotes, $(...), backquotes, newlines and {{ in env values, the command and the job's
    path reach the job verbatim; nothing is evaluated, no template code runs."""
    canary = tmp_path / "canary"
    values = [v.replace("{canary}", str(canary)) for v in HOSTILE]
    env = {f"V{i}": value for i, value in enumerate(values)}
    spec = _spec(env=env)
    storage = tmp_path / "st'o $(touch x) `y`\n{{ z }}"
    job_dir = storage / "alice" / spec.name / "jobs" / "j"
    job_dir.mkdir(parents=True)
    dump = 'for v in V0 V1 V2 V3 V4 V5 V6; do printenv "$v"; printf "\\0"; done > env.out'
    command = dump + "; echo '$(touch " + str(canary) + ")' > cmd.out"
    runs = [_run(job_dir, spec, command)]
    script = ScriptRenderer(_cluster(tmp_path)).render(spec, runs, "k1")
    assert "{{ 7*7 }}" in script  # not evaluated
    check = subprocess.run(["/bin/sh", "-n"], input=script, text=True, check=False)
    assert check.returncode == 0
    (tmp_path / "job.sh").write_text(script)
    done = subprocess.run(
        ["/bin/sh", str(tmp_path / "job.sh")],
        env={**os.environ, "SLURM_ARRAY_TASK_ID": "0"},
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, (job_dir / "log").read_text()
    printed = (job_dir / "env.out").read_text().split("\0")[:-1]
    assert [p[:-1] for p in printed] == values  # printenv adds one newline
    assert (job_dir / "cmd.out").read_text() == f"$(touch {canary})\n"
    assert (job_dir / EXIT_MARKER).read_text() == "0 r1\n"
    assert not canary.exists() and not (tmp_path / "x").exists()


def test_an_index_without_a_job_fails_and_sbatch_lines_refuse_odd_values(tmp_path: Path) -> None:
    spec = _spec()
    job_dir = tmp_path / "j"
    job_dir.mkdir()
    script = ScriptRenderer(_cluster(tmp_path)).render(spec, [_run(job_dir, spec, "true")], "k")
    done = subprocess.run(
        ["/bin/sh", "-c", script],
        env={**os.environ, "SLURM_ARRAY_TASK_ID": "5"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1 and "no job at array index 5" in done.stderr
    odd = _cluster(tmp_path, partition="gpu\n#SBATCH --uid=0")
    with pytest.raises(FatalError, match="not a plain sbatch option"):
        ScriptRenderer(odd).render(spec, [_run(job_dir, spec, "true")], "k")


def test_spec_fields_map_to_sbatch_options(tmp_path: Path) -> None:
    assert memory_mib("2Gi") == 2048 and memory_mib("512Mi") == 512
    assert memory_mib("1G") == 954 and memory_mib("1000") == 1
    assert cpus(0.5) == 1 and cpus("500m") == 1 and cpus("2500m") == 3 and cpus(2) == 2
    assert time_limit(90) == "0-00:01:30" and time_limit(86400 + 3661) == "1-01:01:01"
    spec = _spec(resources=Resources(cpu=1.5, memory="2Gi", gpu=2), timeout=3600, parallelism=4)
    cluster = _cluster(tmp_path, partition="gpu", account="lab", array_limit=50)
    assert sbatch_options(cluster, spec, "key", 10) == [
        "--job-name=user.alice.t",
        "--comment=key",
        "--array=0-9%4",
        "--ntasks=1",
        "--cpus-per-task=2",
        "--mem=2048M",
        "--gres=gpu:2",
        "--time=0-01:00:00",
        "--partition=gpu",
        "--account=lab",
    ]
    runtime = ScriptRenderer(_cluster(tmp_path, container_runtime="apptainer exec --nv"))
    script = runtime.render(spec, [_run(tmp_path / "j", spec, "true")], "k")
    assert 'apptainer exec --nv alice/img:1 /bin/sh -c "$command"\n' in script


# against the real Slurm --------------------------------------------------------------------
@pytest.fixture
def repo(slurm_cluster: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    monkeypatch.setenv("ORCHESTRA_USER", "alice")
    monkeypatch.setattr(slurm_backend.SlurmBackend, "poll_interval", 0.1)
    monkeypatch.setattr(slurm_backend.SlurmBackend, "marker_grace", 3.0)
    repo = Repo(tmp_path / "repo")
    _set_slurm(repo)
    return repo


def _set_slurm(repo: Repo, **settings: Any) -> None:
    cluster = yaml.safe_load((repo.root / "cluster.yaml").read_text())
    cluster["spec"].update(backend="slurm", slurm=settings)
    (repo.root / "cluster.yaml").write_text(yaml.safe_dump(cluster))


def _arrays(repo: Repo, task: str) -> list[list[str]]:
    """The run ids of each array submitted, in submission order."""
    directory = repo.task_dir(task) / ".slurm"
    files = sorted(directory.glob("*.runs"), key=lambda p: p.stat().st_mtime_ns)
    return [p.read_text().split() for p in files]


def _squeue(cluster: SlurmCluster, task: str) -> list[tuple[str, str]]:
    done = subprocess.run(
        ["squeue", "-h", "-r", "-t", "all", "-n", task, "-o", "%i|%T"],
        env=cluster.env,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [line.split("|") for line in done.stdout.split()]
    return [(row[0], row[1]) for row in rows]


def _wait_for(predicate: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_arrays_are_chunked_below_max_array_size(repo: Repo) -> None:
    _set_slurm(repo, maxArraySize=2, arrayLimit=2)
    repo.configs({f"c{i}.txt": "ok\n" for i in range(5)})
    task = repo.task(bypass=True)
    assert repo.orchestra("apply", "--wait") == 0
    assert repo.status(task)["counts"]["done"] == 5
    assert [len(ids) for ids in _arrays(repo, task)] == [2, 2, 1]
    scripts = [p.read_text() for p in (repo.task_dir(task) / ".slurm").glob("*.sh")]
    assert sorted(s.count("#SBATCH --array=0-1%2\n") for s in scripts) == [0, 1, 1]


def test_a_retry_resubmits_only_the_failed_indices(repo: Repo) -> None:
    repo.configs({"c0.txt": "ok\n", "c1.txt": "bad\n", "c2.txt": "ok\n", "c3.txt": "ok\n"})
    task = repo.task(exec="grep -q bad %IN && exit 3; cat %IN > %OUT  # %DATA", bypass=True)
    repo.tasks[task]["maxRetries"] = 1
    repo.write()
    assert repo.orchestra("apply", "--wait") == 3
    status = repo.status(task)
    assert status["jobs"]["c1"]["state"] == "failed" and status["jobs"]["c1"]["attempts"] == 2
    assert status["jobs"]["c1"]["exitCode"] == 3
    first, second = _arrays(repo, task)
    assert len(first) == 4 and second == [status["jobs"]["c1"]["run"]]
    repo.configs({"c1.txt": "ok now\n"})
    assert repo.orchestra("retry", task) == 0
    assert [len(ids) for ids in _arrays(repo, task)] == [4, 1, 1]  # again only c1


def test_delete_cancels_the_array_with_scancel(repo: Repo, slurm_cluster: SlurmCluster) -> None:
    repo.configs({f"c{i}.txt": "ok\n" for i in range(3)})
    task = repo.task(exec="sleep 60; cat %IN > %OUT # %DATA", bypass=True)
    assert repo.orchestra("apply") == 0  # submits and returns
    _wait_for(lambda: any(state == "RUNNING" for _i, state in _squeue(slurm_cluster, task)))
    assert repo.orchestra("delete", task) == 0
    status = repo.status(task)
    assert status["phase"] == "killed"
    assert all(job["state"] == "pending" for job in status["jobs"].values())
    _wait_for(lambda: all(state == "CANCELLED" for _i, state in _squeue(slurm_cluster, task)), 15)


def test_a_job_cancelled_behind_orchestras_back_is_lost_and_requeued(
    repo: Repo, slurm_cluster: SlurmCluster
) -> None:
    repo.configs({"c0.txt": "ok\n"})
    # the first attempt waits to be cancelled; the second finishes at once
    task = repo.task(
        exec="if [ -e ../../began ]; then cat %IN > %OUT; else touch ../../began; sleep 60; fi"
        " # %DATA",
        bypass=True,
    )

    def cancel_the_first_attempt() -> None:
        _wait_for((repo.task_dir(task) / "began").exists)
        running = [i for i, state in _squeue(slurm_cluster, task) if state == "RUNNING"]
        subprocess.run(["scancel", *running], env=slurm_cluster.env, check=True)

    thread = threading.Thread(target=cancel_the_first_attempt)
    thread.start()
    try:
        assert repo.orchestra("apply", "--wait") == 0
    finally:
        thread.join(60)
    job = repo.status(task)["jobs"]["c0"]
    assert job["state"] == "done" and job["attempts"] == 1  # a lost attempt does not count
    lost = [e for e in repo.events(task) if e.get("job") == "c0" and e.get("state") == "pending"]
    assert any("CANCELLED" in (e.get("reason") or "") for e in lost)
    assert len(_arrays(repo, task)) == 2


def test_a_job_missing_from_slurm_and_without_marker_is_lost(
    slurm_cluster: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    backend = slurm_backend.SlurmBackend(_cluster(tmp_path))
    backend.marker_grace = 0.0
    spec = _spec()
    run = _run(tmp_path / "t" / "jobs" / "j", spec, "true", run_id="gone")
    # an array id Slurm never had (or forgot): one squeue, no row, no marker
    backend._tracked["gone"] = slurm_backend._Tracked(run, "999999", 0)
    events = backend.poll(0.0)
    assert [(e.kind, e.reason) for e in events] == [
        ("lost", "it left Slurm without an exit marker")
    ]
    assert backend.calls["squeue"] == 1


def test_recovery_after_the_orchestrator_is_killed_mid_array(
    repo: Repo, slurm_cluster: SlurmCluster
) -> None:
    repo.configs({f"c{i}.txt": "ok\n" for i in range(4)})
    task = repo.task(exec="echo ran >> runs; sleep 2; cat %IN > %OUT # %DATA", bypass=True)
    process = repo.spawn("apply", "--wait")  # SLURM_CONF: in os.environ (monkeypatched)
    try:
        _wait_for(lambda: any(state == "RUNNING" for _i, state in _squeue(slurm_cluster, task)))
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    assert repo.orchestra("apply", "--wait") == 0
    status = repo.status(task)
    assert status["phase"] == "done"
    for name, job in status["jobs"].items():
        assert job["attempts"] == 1
        assert (repo.job_dir(task, name) / "runs").read_text() == "ran\n"  # once each
    assert len(_arrays(repo, task)) == 1  # nothing submitted twice

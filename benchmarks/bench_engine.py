"""The core loop against baselines measured in the same run.

1. Dispatch: N no-op jobs (``true %DATA %IN %OUT``) on 2 slots through ``orchestra apply``
   (plan, hashing, status writing and crash-safety markers included) against ``xargs -P2``
   running the same ``sh -c`` commands bare, and against ``xargs -P2`` running them the way
   orchestra's jobs run (in the job's directory, output appended to its log, exit code to a
   marker file). Goal: at most 1.25x the bare xargs per job. Run twice: with the storage in
   memory (tmpfs, /dev/shm), which measures orchestra's own cost, and on the disk, where on
   this machine's ext4 creating a job's three inodes can cost more than the job itself (the
   kernel's inode allocator scans for recently deleted inodes after mass deletions).
2. No-op plan over T tasks x J jobs, every job already done (sidecars written with
   orchestra's own store, as an apply leaves them), against ``orchestra validate`` of the
   same specs. Goal: under 2 s for 1,000 x 100 (issue 4), under 1 s (issue 8).
3. Status snapshot of one task of 100,000 jobs: write and read, time and peak RSS, against a
   plain ``json.dumps``/``json.loads`` of the same job data as mappings. Goals: under 1 s
   each and under 300 MB (issue 4); write under 0.5 s (issue 8).

Run: make bench   (or .venv/bin/python benchmarks/bench_engine.py [--jobs N] [--tasks T]
[--part snapshot]...)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ORCHESTRA,
    machine,
    measured,
    run_timed,
    timed_noop_apply,
    write_json,
    write_repo,
)


def bench_dispatch(jobs: int, where: str | None, repeat: int = 3) -> dict[str, Any]:
    """Median of ``repeat`` interleaved runs of each (this machine's timings are noisy), with
    the repository and storage in a scratch directory under ``where``."""
    orchestra_runs, xargs_runs = [], []
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        base = Path(tmp)
        files = base / "r0" / "storage" / "bench" / "files"
        commands = base / "commands.txt"
        commands.write_text(
            "".join(
                f"true {files}/data.txt {files}/configs/c{i:06d}.txt {base}/o{i}\n"
                for i in range(jobs)
            )
        )
        # the same per-job work orchestra's jobs do: run in the job's directory, output to
        # its log, exit code to a marker (directories made beforehand, untimed)
        same_work = base / "same-work.txt"
        lines = []
        for i in range(jobs):
            job = base / "jobs" / f"c{i:06d}"
            job.mkdir(parents=True)
            lines.append(
                f'cd {job} || exit 126; trap \'printf "%s\\n" "$?" > {job}/.exit\' EXIT; '
                f"{{ true {files}/data.txt {files}/configs/c{i:06d}.txt {job}/out; }} >> log 2>&1\n"
            )
        same_work.write_text("".join(lines))
        env = {**os.environ, "ORCHESTRA_USER": "bench"}
        same_runs = []
        for index in range(repeat):
            orchestra_runs.append(timed_noop_apply(base / f"r{index}", jobs, env))
            xargs, _ = run_timed(
                ["xargs", "-a", str(commands), "-P2", "-d", "\n", "-n1", "sh", "-c"], base
            )
            xargs_runs.append(xargs)
            same, _ = run_timed(
                ["xargs", "-a", str(same_work), "-P2", "-d", "\n", "-n1", "sh", "-c"], base
            )
            same_runs.append(same)
    orchestra, xargs = statistics.median(orchestra_runs), statistics.median(xargs_runs)
    same = statistics.median(same_runs)
    return {
        "jobs": jobs,
        "repeat": repeat,
        "directory": tempfile.gettempdir() if where is None else where,
        "orchestra_ms_per_job": round(orchestra / jobs * 1000, 3),
        "xargs_ms_per_job": round(xargs / jobs * 1000, 3),
        "ratio": round(orchestra / xargs, 2),
        "xargs_same_work_ms_per_job": round(same / jobs * 1000, 3),
        "ratio_same_work": round(orchestra / same, 2),
    }


def bench_noop_plan(tasks: int, jobs: int, repeat: int = 5) -> dict[str, Any]:
    """Medians of ``repeat`` interleaved runs: the plan (its caches warm, as the apply that
    made the state leaves them), ``validate`` of the same specs, and the plan without the
    jobs-digest cache (every job rendered and hashed)."""
    from orchestra.plan.desired import expand
    from orchestra.spec.checker import validate_paths
    from orchestra.status.model import JobRecord, TaskRecord
    from orchestra.status.store import TaskStore

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_repo(root, tasks, jobs, "true %DATA %IN %OUT")
        specs = validate_paths([], root).specs
        for task in expand(specs, sorted(specs.tasks)):
            record = TaskRecord(
                task.name, phase="done", owner="bench", cluster="bench", backend="local"
            )
            record.spec_digest = task.spec_digest
            for job in task.jobs:
                record.jobs[job.name] = JobRecord(
                    job.name,
                    config=job.config,
                    digest=job.digest,
                    state="done",
                    attempts=1,
                    exit_code=0,
                )
            store = TaskStore(task.task_dir)
            store.open(record)
            store.append({"ev": "task", "phase": "done"})
            store.close()
        run_timed([ORCHESTRA, "plan"], root)  # warm the caches, as the apply before it did
        jobs_cache = root / "storage" / ".orchestra" / "jobs-cache.json"
        plan = [ORCHESTRA, "plan", "--detailed-exitcode"]
        runs: dict[str, list[float]] = {"plan": [], "validate": [], "cold": []}
        for _ in range(repeat):  # interleaved: the machine's speed drifts
            runs["plan"].append(run_timed(plan, root)[0])
            runs["validate"].append(run_timed([ORCHESTRA, "validate"], root)[0])
            jobs_cache.unlink()  # every job rendered and hashed (then cached again)
            runs["cold"].append(run_timed(plan, root)[0])
        # each command's own peak, by GNU time (ru_maxrss of children is their maximum)
        plan_rss = measured(plan, root)[1]
        jobs_cache.unlink()
        cold_rss = measured(plan, root)[1]
    median = {key: statistics.median(values) for key, values in runs.items()}
    return {
        "tasks": tasks,
        "jobs_per_task": jobs,
        "repeats": repeat,
        "plan_seconds": round(median["plan"], 3),
        "plan_range": [round(min(runs["plan"]), 3), round(max(runs["plan"]), 3)],
        "validate_seconds": round(median["validate"], 3),
        "plan_over_validate": round(median["plan"] / median["validate"], 2),
        "plan_peak_rss_mb": round(plan_rss, 1),
        "cold_jobs_cache_plan_seconds": round(median["cold"], 3),
        "cold_jobs_cache_peak_rss_mb": round(cold_rss, 1),
    }


SNAPSHOT_CHILD = """
import json, resource, sys, time
from pathlib import Path
from orchestra.status.model import JobRecord, TaskRecord
from orchestra.status.store import TaskStore, read_snapshot
mode, directory, jobs = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
if mode == "write":
    record = TaskRecord("user.bench.big", phase="running", owner="bench")
    for i in range(jobs):
        record.jobs[f"config_{i:06d}"] = JobRecord(
            f"config_{i:06d}", config=f"config_{i:06d}.json", digest="%064x" % i, state="done",
            attempts=1, exit_code=0, started="2026-11-25T07:00:00.000Z",
            finished="2026-11-25T07:00:01.000Z", run_id="%032x" % i, pid=1000 + i, node="node1")
    store = TaskStore(directory)
    store.open(record)
    start = time.perf_counter()
    store.snapshot()
    elapsed = time.perf_counter() - start
elif mode == "read":
    start = time.perf_counter()
    record, _ = read_snapshot(directory / "status.yaml")
    elapsed = time.perf_counter() - start
    assert record is not None and len(record.jobs) == jobs
elif mode == "json-write":
    data = {f"config_{i:06d}": {"config": f"config_{i:06d}.json", "digest": "%064x" % i,
            "state": "done", "attempts": 1, "exitCode": 0, "started": "2026-11-25T07:00:00.000Z",
            "finished": "2026-11-25T07:00:01.000Z", "run": "%032x" % i, "pid": 1000 + i,
            "node": "node1"} for i in range(jobs)}
    start = time.perf_counter()
    (directory / "floor.json").write_text(json.dumps(data))
    elapsed = time.perf_counter() - start
else:
    start = time.perf_counter()
    data = json.loads((directory / "floor.json").read_text())
    elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": elapsed, "rss_mb": peak}))
"""


def bench_snapshot(jobs: int, repeats: int = 5) -> dict[str, Any]:
    """Medians of ``repeats`` interleaved runs, each in a fresh process (and its range: the
    machine's speed drifts)."""
    runs: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            for mode in ("write", "read", "json-write", "json-read"):
                done = subprocess.run(
                    [sys.executable, "-c", SNAPSHOT_CHILD, mode, tmp, str(jobs)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                runs.setdefault(mode, []).append(json.loads(done.stdout))
        size = (Path(tmp) / "status.yaml").stat().st_size

    def median(mode: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[mode])

    def spread(mode: str) -> list[float]:
        seconds = [run["seconds"] for run in runs[mode]]
        return [round(min(seconds), 3), round(max(seconds), 3)]

    return {
        "jobs": jobs,
        "repeats": repeats,
        "write_seconds": round(median("write", "seconds"), 3),
        "write_range": spread("write"),
        "read_seconds": round(median("read", "seconds"), 3),
        "read_range": spread("read"),
        "write_peak_rss_mb": round(median("write", "rss_mb"), 1),
        "read_peak_rss_mb": round(median("read", "rss_mb"), 1),
        "file_mb": round(size / 2**20, 1),
        "write_over_json_dump": round(
            median("write", "seconds") / median("json-write", "seconds"), 2
        ),
        "read_over_json_load": round(median("read", "seconds") / median("json-read", "seconds"), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="no-op jobs to dispatch")
    parser.add_argument("--tasks", type=int, default=1000, help="tasks in the no-op plan")
    parser.add_argument(
        "--plan-jobs", type=int, default=100, help="jobs per task in the no-op plan"
    )
    parser.add_argument("--snapshot-jobs", type=int, default=100_000)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--part",
        action="append",
        choices=("dispatch", "plan", "snapshot"),
        help="run only this part (repeatable; default: all three)",
    )
    args = parser.parse_args()
    parts = set(args.part or ("dispatch", "plan", "snapshot"))

    figures: dict[str, Any] = {"machine": machine()}
    # Storage in memory (tmpfs) measures orchestra's own cost; on this machine's disk, creating
    # the three inodes per job (directory, log, marker) costs more than the job itself.
    places = {"memory": "/dev/shm", "disk": None} if os.path.isdir("/dev/shm") else {"disk": None}
    for place, where in places.items() if "dispatch" in parts else ():
        figures[f"dispatch_{place}"] = d = bench_dispatch(args.jobs, where)
        print(
            f"dispatch {d['jobs']} no-op jobs on 2 slots, storage on {place} ({d['directory']}): "
            f"orchestra {d['orchestra_ms_per_job']} ms/job, "
            f"xargs -P2 {d['xargs_ms_per_job']} ms/job, ratio {d['ratio']}x (goal <= 1.25x); "
            f"xargs doing the same per-job work (job dir, log, exit marker) "
            f"{d['xargs_same_work_ms_per_job']} ms/job, ratio {d['ratio_same_work']}x"
        )
    if "plan" in parts:
        figures["noop_plan"] = p = bench_noop_plan(args.tasks, args.plan_jobs)
        print(
            f"no-op plan {p['tasks']} tasks x {p['jobs_per_task']} jobs: {p['plan_seconds']} s "
            f"(validate alone {p['validate_seconds']} s, ratio {p['plan_over_validate']}x; "
            f"peak RSS {p['plan_peak_rss_mb']} MB; range {p['plan_range']}, medians of "
            f"{p['repeats']}; without the jobs-digest cache {p['cold_jobs_cache_plan_seconds']} s, "
            f"{p['cold_jobs_cache_peak_rss_mb']} MB) (goals < 2 s, < 1 s)"
        )
    if "snapshot" in parts:
        figures["snapshot"] = s = bench_snapshot(args.snapshot_jobs)
        print(
            f"status snapshot of {s['jobs']} jobs ({s['file_mb']} MB), medians of {s['repeats']}: "
            f"write {s['write_seconds']} s (range {s['write_range']}; "
            f"{s['write_over_json_dump']}x json.dumps), read {s['read_seconds']} s "
            f"(range {s['read_range']}; {s['read_over_json_load']}x json.loads), peak RSS write "
            f"{s['write_peak_rss_mb']} MB / read {s['read_peak_rss_mb']} MB "
            "(goals: write < 0.5 s, read < 1 s, < 300 MB)"
        )
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Kubernetes backend against the fake API server (tests/fakes), in one run.

1. ``orchestra apply --wait`` of a task of 10, 1,000 and N jobs (bypass, client-side rate
   limit off) against the fake running in a process of its own and ending each Job the moment
   it is created, then a second apply with nothing changed (an idle reconcile). Reports API
   requests per job launched (goal: at most 1.05: one write per job plus O(1) list calls per
   task per poll), jobs per second, and the requests of the idle pass (goal: no write, one
   list per task). Then the throughput of a smaller task with the client-side limit at its
   default (20 qps, burst 30) against the limit off.
2. Render + strict schema validation of M manifests through ``orchestra render``'s own
   function, against parsing and validating each manifest in full (the way without the
   shape shortcut). Goal: 100,000 in under 10 s.

Run: .venv/bin/python benchmarks/bench_kubernetes.py [--jobs N] [--manifests M]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ORCHESTRA, machine, run_timed, write_json, write_repo  # noqa: E402

from tests.fakes.kube_apiserver import write_kubeconfig  # noqa: E402


def bench_apply(jobs: int, limit: tuple[float, int] | None = None) -> dict[str, Any]:
    """``orchestra apply --wait`` of one ``jobs``-job task (bypass) against the fake API server
    running in a process of its own, which ends every Job the moment it is created; then a
    second apply with nothing changed (an idle reconcile). ``limit``: the client-side rate
    limit (qps, burst); None: off."""
    qps, burst = limit if limit is not None else (1e6, 10**6)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_repo(root, 1, jobs, "python3 /job.py %DATA %IN %OUT")
        cluster = yaml.safe_load((root / "cluster.yaml").read_text())
        cluster["spec"].update(
            backend="kubernetes",
            kubernetes={
                "volumeClaim": "shared",
                "mountPath": "/mnt/shared",
                "qps": qps,
                "burst": burst,
            },
        )
        (root / "cluster.yaml").write_text(yaml.safe_dump(cluster))
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.kube_apiserver", "--auto-complete"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdin is not None and server.stdout is not None
        try:
            write_kubeconfig(root / "kubeconfig", server.stdout.readline().strip())
            env = {**os.environ, "KUBECONFIG": str(root / "kubeconfig"), "ORCHESTRA_USER": "bench"}

            def requests() -> dict[str, int]:
                assert server.stdin is not None and server.stdout is not None
                server.stdin.write("requests\n")
                server.stdin.flush()
                counts: dict[str, int] = json.loads(server.stdout.readline())
                return counts

            elapsed, rss = run_timed([ORCHESTRA, "apply", "--wait"], root, env=env)
            first = requests()
            run_timed([ORCHESTRA, "apply", "--wait"], root, env=env)
            second = {k: v - first.get(k, 0) for k, v in requests().items()}
        finally:
            server.stdin.close()
            server.wait(timeout=30)
    writes = first.get("PATCH Job", 0) + first.get("POST Job", 0) + first.get("DELETE Job", 0)
    return {
        "jobs": jobs,
        "rate_limit": None if limit is None else {"qps": qps, "burst": burst},
        "requests": first,
        "writes_per_job": round(writes / jobs, 4),
        "requests_per_job": round(sum(first.values()) / jobs, 4),
        "jobs_per_second": round(jobs / elapsed, 1),
        "peak_rss_mb": round(rss / 1024, 1),
        "second_apply_requests": second,
        "second_apply_writes": second.get("PATCH Job", 0) + second.get("DELETE Job", 0),
        "idle_requests_per_task": sum(second.values()),  # one task
    }


def bench_render(count: int) -> dict[str, Any]:
    """``orchestra render --validate``'s own function on a task of ``count`` jobs (the
    tutorial's 100 jobs, repeated under new names): render + strict validation, against one
    full parse and validation per manifest in one process (what it did before the shape
    shortcut), measured on a sample and scaled."""
    from orchestra.backends.k8s_manifest import ManifestRenderer
    from orchestra.backends.k8s_validate import ManifestValidator
    from orchestra.commands.render import render_kubernetes
    from orchestra.plan.desired import DesiredTask, expand
    from orchestra.spec.checker import validate_paths

    specs = validate_paths([], ROOT / "examples" / "kubernetes" / "lps").specs
    (task,) = expand(specs, ["user.alice.my_task_tutorial"])
    jobs = [
        job._replace(name=f"{job.name}-{index}", command=f"{job.command} # {index}")
        for index in range(count // len(task.jobs) + 1)
        for job in task.jobs
    ][:count]
    big = DesiredTask.of_jobs(
        task.spec,
        task.cluster,
        (task.task_dir, task.data_path, task.configs_path),
        task.spec_digest,
        jobs,
    )
    start = time.perf_counter()
    documents, problems, _version = render_kubernetes(big, validate=True)
    both = time.perf_counter() - start
    assert len(documents) == count and not problems, problems[:3]
    start = time.perf_counter()
    render_kubernetes(big, validate=False, workers=1)
    render_one = time.perf_counter() - start
    # the floor: render, parse and validate each manifest in full, one process, on a sample
    renderer, validator = ManifestRenderer(task.cluster), ManifestValidator()
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    sample = jobs[:2000]
    validator.errors(yaml.load(renderer.render(task.spec, task.spec_digest, jobs[0]), loader))
    start = time.perf_counter()
    for job in sample:
        text = renderer.render(task.spec, task.spec_digest, job)
        assert not validator.errors(yaml.load(text, Loader=loader))
    full_each = (time.perf_counter() - start) / len(sample)
    return {
        "manifests": count,
        "workers": os.cpu_count(),
        "render_validate_seconds": round(both, 2),
        "render_validate_ms_each": round(both / count * 1000, 4),
        "render_only_one_process_seconds": round(render_one, 2),
        "full_check_each_ms": round(full_each * 1000, 3),
        "full_check_projected_seconds": round(full_each * count, 1),
        "speedup_over_full_checks": round(full_each * count / both, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--manifests", type=int, default=100_000)
    parser.add_argument(
        "--limited-jobs", type=int, default=500, help="jobs of the rate-limited throughput run"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures: dict[str, Any] = {"machine": machine()}
    sizes = sorted({10, min(1_000, args.jobs), args.jobs})
    figures["budget"] = []
    for size in sizes:
        figures["budget"].append(a := bench_apply(size))
        print(
            f"apply {a['jobs']} jobs on the fake API server (rate limit off): "
            f"{a['writes_per_job']} writes/job, {a['requests_per_job']} requests/job in all "
            f"(goal <= 1.05), {a['jobs_per_second']} jobs/s; peak RSS {a['peak_rss_mb']} MB; "
            f"second apply (idle): {a['second_apply_writes']} writes (goal 0), "
            f"{a['idle_requests_per_task']} requests for 1 task (goal: at most one list per task)"
        )
    figures["apply"] = figures["budget"][-1]
    limited = min(args.limited_jobs, args.jobs)
    figures["limited"] = b = bench_apply(limited, (20.0, 30))
    off = next(x for x in figures["budget"] if x["jobs"] == limited) if limited in sizes else None
    if off is None:
        off = bench_apply(limited)
    figures["unlimited_same_size"] = off
    print(
        f"throughput, {limited} jobs: rate limit 20 qps / burst 30: {b['jobs_per_second']} jobs/s;"
        f" off: {off['jobs_per_second']} jobs/s"
    )
    figures["render"] = r = bench_render(args.manifests)
    print(
        f"render + strict validation of {r['manifests']} manifests ({r['workers']} workers): "
        f"{r['render_validate_seconds']} s (goal < 10 s for 100,000); rendering alone in one "
        f"process {r['render_only_one_process_seconds']} s; parsing and validating each in full "
        f"would take {r['full_check_projected_seconds']} s "
        f"({r['full_check_each_ms']} ms each): {r['speedup_over_full_checks']}x"
    )
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())

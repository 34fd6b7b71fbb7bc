"""The Kubernetes backend against the fake API server (tests/fakes), in one run.

Applies an N-job task (bypass, rate limit effectively off) while a thread plays the kubelet,
then applies again with nothing changed. Reports API requests per job launched (goal: one
write per job plus O(1) list calls per task per poll), jobs per second, and the writes of the
second apply (goal: zero). Also render + strict schema validation per manifest, against
rendering alone (the floor).

Run: .venv/bin/python benchmarks/bench_kubernetes.py [--jobs N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, write_repo  # noqa: E402

from orchestra.backends import kubernetes as kube_backend  # noqa: E402
from orchestra.cli import main as orchestra  # noqa: E402
from tests.fakes.kube_apiserver import FakeKubeAPIServer  # noqa: E402


def kubelet(server: FakeKubeAPIServer, stop: threading.Event) -> None:
    while not stop.wait(0.05):
        for job in server.jobs():
            if not job.get("status"):
                server.finish_job(job["metadata"]["namespace"], job["metadata"]["name"])


def bench_apply(jobs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, FakeKubeAPIServer() as server:
        root = Path(tmp)
        write_repo(root, 1, jobs, "python3 /job.py %DATA %IN %OUT")
        cluster = yaml.safe_load((root / "cluster.yaml").read_text())
        cluster["spec"].update(
            backend="kubernetes",
            kubernetes={
                "volumeClaim": "shared",
                "mountPath": "/mnt/shared",
                "qps": 1e6,
                "burst": 10**6,
            },
        )
        (root / "cluster.yaml").write_text(yaml.safe_dump(cluster))
        kubeconfig = root / "kubeconfig"
        server.write_kubeconfig(kubeconfig)
        os.environ["KUBECONFIG"] = str(kubeconfig)
        kube_backend.KubernetesBackend.poll_interval = 0.5
        stop = threading.Event()
        thread = threading.Thread(target=kubelet, args=(server, stop), daemon=True)
        thread.start()
        devnull = open(os.devnull, "w")  # noqa: SIM115
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = devnull
        try:
            start = time.perf_counter()
            code = orchestra(["-C", str(root), "apply", "--wait"])
            elapsed = time.perf_counter() - start
            first = dict(server.requests)
            code2 = orchestra(["-C", str(root), "apply", "--wait"])
        finally:
            sys.stdout, sys.stderr = saved
            stop.set()
        assert code == 0 and code2 == 0, (code, code2)
        second = {k: v - first.get(k, 0) for k, v in server.requests.items()}
    writes = first.get("PATCH Job", 0) + first.get("POST Job", 0) + first.get("DELETE Job", 0)
    return {
        "jobs": jobs,
        "requests": first,
        "writes_per_job": round(writes / jobs, 3),
        "requests_per_job": round(sum(first.values()) / jobs, 3),
        "jobs_per_second": round(jobs / elapsed, 1),
        "second_apply_writes": second.get("PATCH Job", 0) + second.get("DELETE Job", 0),
    }


def bench_render(count: int) -> dict[str, Any]:
    from orchestra.backends.k8s_manifest import ManifestRenderer
    from orchestra.backends.k8s_validate import ManifestValidator
    from orchestra.plan.desired import expand
    from orchestra.spec.checker import validate_paths

    specs = validate_paths([], ROOT / "examples" / "kubernetes" / "lps").specs
    (task,) = expand(specs, ["user.alice.my_task_tutorial"])
    renderer = ManifestRenderer(task.cluster)
    validator = ManifestValidator()
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    jobs = task.jobs
    start = time.perf_counter()
    for index in range(count):
        renderer.render(task.spec, task.spec_digest, jobs[index % len(jobs)])
    render_only = time.perf_counter() - start
    start = time.perf_counter()
    for index in range(count):
        text = renderer.render(task.spec, task.spec_digest, jobs[index % len(jobs)])
        assert not validator.errors(yaml.load(text, Loader=loader))
    both = time.perf_counter() - start
    return {
        "manifests": count,
        "render_ms_each": round(render_only / count * 1000, 3),
        "render_validate_ms_each": round(both / count * 1000, 3),
        "ratio_to_render": round(both / render_only, 1),
        "projected_100k_seconds": round(both / count * 100_000, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--manifests", type=int, default=5000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures: dict[str, Any] = {"machine": machine()}
    figures["apply"] = a = bench_apply(args.jobs)
    print(
        f"apply {a['jobs']} jobs on the fake API server: {a['writes_per_job']} writes/job, "
        f"{a['requests_per_job']} requests/job in all, {a['jobs_per_second']} jobs/s; "
        f"second apply: {a['second_apply_writes']} writes (goal 0); requests {a['requests']}"
    )
    figures["render"] = r = bench_render(args.manifests)
    print(
        f"render + strict validation: {r['render_validate_ms_each']} ms/manifest "
        f"({r['ratio_to_render']}x rendering alone, {r['render_ms_each']} ms); "
        f"100,000 manifests would take {r['projected_100k_seconds']} s (goal < 10 s)"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

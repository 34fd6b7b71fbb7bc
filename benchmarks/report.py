"""``make bench``: run every benchmark, then write ``docs/benchmarks.md`` and
``docs/benchmarks.png`` from their figures.

Each benchmark runs as its own process and writes its figures as JSON into
``benchmarks/out/``; every figure in the report is a ratio against a baseline measured in the
same run (xargs, ``python -c pass``, json.dumps, a full schema check...), because this
machine's absolute timings are noisy. ``--quick`` runs small sizes (a smoke test of the
harness, not figures to publish); ``--report-only`` rewrites the report from the last JSON.

Run: make bench   (or .venv/bin/python benchmarks/report.py [--quick] [--report-only])
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
DOC = ROOT / "docs" / "benchmarks.md"
PLOT = ROOT / "docs" / "benchmarks.png"

# name -> (script, full-size arguments, quick arguments)
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "validate": ("bench_validate.py", [], ["--tasks", "100", "--repeat", "5"]),
    "engine": (
        "bench_engine.py",
        [],
        ["--jobs", "500", "--tasks", "20", "--plan-jobs", "20", "--snapshot-jobs", "5000"],
    ),
    "peers": ("bench_peers.py", [], ["--quick"]),
    "scale": ("bench_scale.py", [], ["--quick"]),
    "kubernetes": (
        "bench_kubernetes.py",
        [],
        ["--jobs", "200", "--manifests", "2000", "--limited-jobs", "60"],
    ),
    # a real single-node Slurm brought up for the run (about 10 minutes at 1,000 jobs)
    "slurm": ("bench_slurm.py", ["--jobs", "1000", "--overcommit", "16"], ["--quick"]),
}


def _range(figures: dict[str, Any], key: str) -> str:
    low, high = figures.get(key) or ["?", "?"]
    return f"{low}-{high} s"


def run_all(quick: bool, only: list[str]) -> dict[str, float]:
    OUT.mkdir(exist_ok=True)
    seconds = {}
    for name, (script, full, small) in BENCHMARKS.items():
        if only and name not in only:
            continue
        argv = [sys.executable, str(HERE / script), *(small if quick else full)]
        argv += ["--json", str(OUT / f"{name}.json")]
        print(f"== {name}: {' '.join(argv[1:])}", flush=True)
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=ROOT, check=False)
        seconds[name] = round(time.perf_counter() - start, 1)
        if done.returncode != 0:
            print(f"!! {name} failed ({done.returncode}); its section keeps the last figures")
    return seconds


def load() -> dict[str, Any]:
    figures = {}
    for name in BENCHMARKS:
        path = OUT / f"{name}.json"
        if path.exists():
            figures[name] = json.loads(path.read_text())
    return figures


def _version(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None and not Path(argv[0]).exists():
        return "not installed"
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else "?"


def versions() -> dict[str, str]:
    from orchestra import __version__

    bin_dir = Path(sys.executable).parent
    return {
        "orchestra": __version__,
        "python": platform.python_version(),
        "xargs": _version(["xargs", "--version"]),
        "GNU parallel": _version(["parallel", "--version"]),
        "snakemake": _version([str(bin_dir / "snakemake"), "--version"]),
        "kubernetes client": _pkg_version("kubernetes"),
        "kubernetes-validate": _pkg_version("kubernetes-validate"),
    }


def _pkg_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _goal(met: bool) -> str:
    return "met" if met else "**missed**"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def render(figures: dict[str, Any], quick: bool, seconds: dict[str, float]) -> str:
    """The page; ``seconds``: how long each benchmark of this run took (those run now)."""
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`benchmarks/report.py`), which runs every script of",
        "`benchmarks/` and rewrites this page and `docs/benchmarks.png`. Every figure is set",
        "against a baseline measured in the same run (the machines are noisy: ratios, not",
        "seconds, are what to compare). Kubernetes figures are against the fake API server of",
        "`tests/fakes/` over real HTTP, not a live cluster. Each section shows the last run of",
        "its benchmark (`make bench` runs them all in turn; `benchmarks/report.py --only NAME`",
        "runs one again). orchestra's modules are compiled to bytecode before measuring, as",
        "`pip install` leaves them (`benchmarks/_common.compile_orchestra`).",
        "",
    ]
    if quick:
        lines += ["**Quick run (small sizes): a smoke test of the harness, not figures.**", ""]
    any_machine = next((f["machine"] for f in figures.values() if "machine" in f), {})
    partial = bool(seconds) and set(seconds) != set(BENCHMARKS)
    lines += [
        f"Machine: {any_machine.get('cores', os.cpu_count())} cores, "
        f"{any_machine.get('platform', platform.platform())}; written on "
        f"{datetime.date.today().isoformat()}"
        + (
            f" after running {', '.join(seconds)} ({round(sum(seconds.values()) / 60, 1)} min);"
            " the other sections are from earlier runs (`benchmarks/out/`)"
            if partial
            else f" after {round(sum(seconds.values()) / 60, 1)} min of benchmarks"
            if seconds
            else ""
        )
        + ".",
        "",
    ]
    lines += _table(["Tool", "Version"], [[k, v] for k, v in versions().items()])
    goals: list[list[Any]] = []
    lines += _peers(figures.get("peers"), goals)
    lines += _engine(figures.get("engine"), goals)
    lines += _validate(figures.get("validate"), goals)
    lines += _scale(figures.get("scale"), goals)
    lines += _kubernetes(figures.get("kubernetes"), goals)
    lines += _slurm(figures.get("slurm"))
    summary = ["## Goals", "", *_table(["Goal", "Figure", ""], goals)]
    at = lines.index("| Tool | Version |")
    return "\n".join(lines[:at] + summary + lines[at:]).rstrip() + "\n"


def _peers(peers: dict[str, Any] | None, goals: list[list[Any]]) -> list[str]:
    if not peers:
        return ["## Side by side with xargs, GNU parallel, Snakemake", "", "(not run)", ""]
    noop = peers["noop"]
    ms, ratio = noop["ms_per_job"], noop["ratio_to_xargs"]
    rows = [
        [tool, ms.get(tool), ratio.get(tool)] for tool in ("xargs", "parallel", "snakemake")
    ] + [["**orchestra**", ms.get("orchestra"), ratio.get("orchestra")]]
    lines = [
        "## Side by side with xargs, GNU parallel, Snakemake",
        "",
        f"`benchmarks/bench_peers.py`: {noop['jobs']} no-op jobs (`true DATA IN OUT`) on 2 "
        f"slots, storage in {noop.get('where')}; Snakemake (one rule instance per job) at "
        f"{noop.get('snakemake_jobs')} jobs, as 10,000 take it over an hour here. Orchestra "
        "includes planning, hashing the inputs, writing status and the crash-safety markers.",
        "",
    ]
    lines += _table(["Tool", "ms per job", "x xargs"], rows)
    if ratio.get("orchestra") is not None:
        goals.append(
            [
                "no-op jobs: at most 1.1x xargs per job",
                f"{ratio['orchestra']}x",
                _goal(ratio["orchestra"] <= 1.1),
            ]
        )
    if noop.get("parallel_over_orchestra") is not None:
        goals.append(
            [
                "at least 4x faster than GNU parallel per job",
                f"{noop['parallel_over_orchestra']}x",
                _goal(noop["parallel_over_orchestra"] >= 4),
            ]
        )
    tutorial = peers.get("tutorial")
    if tutorial:
        lines += [
            f"The tutorial's {tutorial['jobs']} real jobs (`job_tuning.py`, a small training run "
            "each), 2 slots:",
            "",
        ]
        lines += _table(
            ["Tool", "seconds", "x xargs"],
            [
                [tool, tutorial["seconds"].get(tool), tutorial["ratio_to_xargs"].get(tool)]
                for tool in ("xargs", "parallel", "snakemake", "orchestra")
            ],
        )
    return lines


def _engine(engine: dict[str, Any] | None, goals: list[list[Any]]) -> list[str]:
    if not engine:
        return []
    lines = ["## The core loop", "", "`benchmarks/bench_engine.py`.", ""]
    rows = []
    for place in ("memory", "disk"):
        d = engine.get(f"dispatch_{place}")
        if d:
            rows.append(
                [
                    f"{d['jobs']} no-op jobs, storage on {place}",
                    d["orchestra_ms_per_job"],
                    d["xargs_ms_per_job"],
                    f"{d['ratio']}x",
                    f"{d['ratio_same_work']}x",
                ]
            )
    lines += _table(
        ["Dispatch", "orchestra ms/job", "xargs ms/job", "x xargs", "x xargs doing the same work"],
        rows,
    )
    p = engine.get("noop_plan")
    if p:
        lines += [
            f"No-op plan of {p['tasks']} tasks x {p['jobs_per_task']} jobs, median of "
            f"{p.get('repeats', 1)} runs: {p['plan_seconds']} s (range "
            f"{_range(p, 'plan_range')}), {p['plan_over_validate']}x `orchestra validate` of the "
            f"same specs ({p['validate_seconds']} s); peak RSS {p['plan_peak_rss_mb']} MB. "
            "Its caches are warm, as the apply that made the state leaves them; without the "
            "jobs-digest cache (`<storage>/.orchestra/jobs-cache.json`), when every job is "
            f"rendered and hashed: {p.get('cold_jobs_cache_plan_seconds', '?')} s, "
            f"{p.get('cold_jobs_cache_peak_rss_mb', '?')} MB.",
            "",
        ]
        if p["tasks"] * p["jobs_per_task"] >= 100_000:
            goals.append(
                [
                    "no-op plan of 1,000 tasks x 100 jobs under 1 s",
                    f"{p['plan_seconds']} s",
                    _goal(p["plan_seconds"] < 1.0),
                ]
            )
    s = engine.get("snapshot")
    if s:
        lines += [
            f"Status snapshot of one task of {s['jobs']} jobs ({s['file_mb']} MB), medians of "
            f"{s.get('repeats', 1)} runs, each in a fresh process: write {s['write_seconds']} s"
            f" (range {_range(s, 'write_range')}; {s['write_over_json_dump']}x a plain "
            f"`json.dumps` of the same data as mappings), read {s['read_seconds']} s (range "
            f"{_range(s, 'read_range')}; {s['read_over_json_load']}x `json.loads`); peak RSS "
            f"{s['write_peak_rss_mb']} / {s['read_peak_rss_mb']} MB.",
            "",
        ]
        if s["jobs"] >= 100_000:
            worst = max(s["write_seconds"], s["read_seconds"])
            goals.append(
                [
                    "100k-job status snapshot under 0.5 s (write and read)",
                    f"{worst} s",
                    _goal(worst < 0.5),
                ]
            )
    return lines


def _validate(v: dict[str, Any] | None, goals: list[list[Any]]) -> list[str]:
    if not v:
        return []
    goals.append(
        [
            "`orchestra --version` within 60 ms of `python -c pass`",
            f"+{v['version_minus_pass_ms']} ms",
            _goal(v["version_minus_pass_ms"] < 60),
        ]
    )
    new = v.get("new_validate_one_minus_pass_ms", v["validate_one_minus_pass_ms"])
    goals.append(
        [
            "`orchestra validate` of one new or edited file within 150 ms of `python -c pass`",
            f"+{new} ms (first run on the machine +{v['validate_one_minus_pass_ms']} ms, "
            f"a file known valid +{v['warm_validate_one_minus_pass_ms']} ms)",
            _goal(new < 150),
        ]
    )
    return [
        "## Validation and start-up",
        "",
        "`benchmarks/bench_validate.py`.",
        "",
        *_table(
            ["What", "Figure", "Baseline"],
            [
                [
                    f"validate {v['tasks']} task files",
                    f"{v['validate_seconds']} s (schema cache warm {v['validate_warm_seconds']} s)",
                    f"parsing alone {v['parse_only_seconds']} s: {v['validate_over_parse_only']}x",
                ],
                [
                    "`orchestra --version`",
                    f"+{v['version_minus_pass_ms']} ms",
                    f"`python -c pass` {v['python_pass_ms']} ms",
                ],
                [
                    "`orchestra validate ONE_FILE`: first run on the machine / a new or "
                    "edited file / a file known valid",
                    f"+{v['validate_one_minus_pass_ms']} / "
                    f"+{v.get('new_validate_one_minus_pass_ms')} / "
                    f"+{v['warm_validate_one_minus_pass_ms']} ms",
                    f"`python -c pass` {v['python_pass_ms']} ms",
                ],
            ],
        ),
    ]


def _scale(scale: dict[str, Any] | None, goals: list[list[Any]]) -> list[str]:
    if not scale:
        return []
    lines = [
        "## Scale curves",
        "",
        "`benchmarks/bench_scale.py`: no-op jobs on 2 slots, storage in "
        f"{scale.get('where')}; wall time and peak RSS of each command. Plotted in "
        "[benchmarks.png](benchmarks.png).",
        "",
    ]
    rows = []
    for series in ("jobs", "tasks"):
        for p in scale["series"][series]:
            rows.append(
                [
                    f"{p['tasks']} x {p['jobs_per_task']}",
                    f"{p['apply']['seconds']} s ({p['apply_ms_per_job']} ms/job), "
                    f"{p['apply']['peak_rss_mb']} MB",
                    f"{p['plan']['seconds']} s, {p['plan']['peak_rss_mb']} MB",
                    f"{p['status']['seconds']} s",
                    f"{p['status_task']['seconds']} s, {p['status_task']['peak_rss_mb']} MB",
                ]
            )
    lines += _table(["Tasks x jobs", "apply", "no-op plan", "status", "status TASK (json)"], rows)
    growth = scale.get("growth", {})
    lines += [
        "Growth of the cost per job between the two largest sizes (1.0 is linear): "
        + "; ".join(
            f"{name}: " + ", ".join(f"{k} {v}x" for k, v in ratios.items())
            for name, ratios in growth.items()
        )
        + ".",
        "",
    ]
    worst = max((v for ratios in growth.values() for v in ratios.values()), default=None)
    if worst is not None:
        goals.append(["cost grows linearly (per-job cost ratio <= 1.3)", f"worst {worst}x"])
        goals[-1].append(_goal(worst <= 1.3))
    return lines


def _kubernetes(k: dict[str, Any] | None, goals: list[list[Any]]) -> list[str]:
    if not k:
        return []
    lines = [
        "## Kubernetes request budget",
        "",
        "`benchmarks/bench_kubernetes.py`, against the fake API server in a process of its own "
        "that ends each Job as it is created.",
        "",
    ]
    rows = [
        [
            b["jobs"],
            b["writes_per_job"],
            b["requests_per_job"],
            b["jobs_per_second"],
            f"{b['second_apply_writes']} writes, {b['idle_requests_per_task']} requests",
        ]
        for b in k.get("budget", [])
    ]
    lines += _table(
        ["Jobs", "writes/job", "requests/job", "jobs/s (limit off)", "idle apply"], rows
    )
    largest = (k.get("budget") or [None])[-1]
    if largest:
        goals.append(
            [
                f"requests per job launched at most 1.05 ({largest['jobs']} jobs)",
                largest["requests_per_job"],
                _goal(largest["requests_per_job"] <= 1.05),
            ]
        )
        goals.append(
            [
                "idle reconcile: no write, at most one list per task",
                f"{largest['second_apply_writes']} writes, "
                f"{largest['idle_requests_per_task']} requests",
                _goal(
                    largest["second_apply_writes"] == 0 and largest["idle_requests_per_task"] <= 1
                ),
            ]
        )
    limited, unlimited = k.get("limited"), k.get("unlimited_same_size")
    if limited and unlimited:
        lines += [
            f"Throughput of {limited['jobs']} jobs: {limited['jobs_per_second']} jobs/s with the "
            f"client-side limit at its default (20 qps, burst 30), "
            f"{unlimited['jobs_per_second']} jobs/s with it off. An idle apply of a finished "
            "task asks the cluster nothing; one with jobs still running lists each such task "
            "once per poll.",
            "",
        ]
    r = k.get("render")
    if r:
        lines += [
            f"Render + strict OpenAPI validation of {r['manifests']} manifests: "
            f"{r['render_validate_seconds']} s on {r['workers']} workers, against "
            f"{r['full_check_projected_seconds']} s parsing and validating each in full "
            f"({r['speedup_over_full_checks']}x).",
            "",
        ]
        if r["manifests"] >= 100_000:
            goals.append(
                [
                    "render + validate 100,000 manifests under 10 s",
                    f"{r['render_validate_seconds']} s",
                    _goal(r["render_validate_seconds"] < 10),
                ]
            )
    return lines


def _slurm(slurm: dict[str, Any] | None) -> list[str]:
    if not slurm:
        return []
    rows = []
    for result in slurm.get("results", []):
        calls = result.get("calls_per_job") or {}
        rows.append(
            [
                result["backend"],
                result["jobs"],
                result["seconds"],
                result["jobs_per_second"],
                ", ".join(f"{k} {v}" for k, v in calls.items() if v) or "-",
            ]
        )
    return [
        "## Slurm",
        "",
        "`benchmarks/bench_slurm.py`: no-op jobs through Slurm job arrays on a real single-node "
        "Slurm (slurm-wlm, brought up for the run as in the tests) against the local backend "
        "on the same machine. Slurm's pace is its scheduler's: at most one job start per free "
        "CPU and second; the second Slurm run declares 16 CPUs on the node to show it.",
        "",
        *_table(["Backend", "jobs", "seconds", "jobs/s", "calls per job"], rows),
    ]


def plot(figures: dict[str, Any]) -> bool:
    scale = figures.get("scale")
    if not scale:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, NullFormatter
    except ImportError:
        print("matplotlib is not installed: no plot (make bench installs it)")
        return False
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for column, series in enumerate(("jobs", "tasks")):
        points = scale["series"][series]
        x = [p["jobs"] if series == "jobs" else p["tasks"] for p in points]
        label = "jobs (one task)" if series == "jobs" else "tasks (100 jobs each)"
        keys = ("apply", "plan", "status", "status_task")
        names = ("apply", "no-op plan", "status", "status TASK --format json")
        for key, name in zip(keys, names, strict=True):
            axes[0][column].plot(x, [p[key]["seconds"] for p in points], marker="o", label=name)
            axes[1][column].plot(x, [p[key]["peak_rss_mb"] for p in points], marker="o", label=name)
        for row, unit in ((0, "seconds"), (1, "peak RSS (MB)")):
            axes[row][column].set_xscale("log")
            axes[row][column].set_yscale("log")
            for axis in (axes[row][column].xaxis, axes[row][column].yaxis):
                axis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
                axis.set_minor_formatter(NullFormatter())
            axes[row][column].set_xlabel(label)
            axes[row][column].set_ylabel(unit)
            axes[row][column].grid(True, which="both", alpha=0.3)
            axes[row][column].legend(fontsize=8)
    fig.suptitle("orchestra: time and memory by number of jobs and of tasks (no-op jobs)")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=100)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the report")
    parser.add_argument("--only", nargs="*", default=[], choices=sorted(BENCHMARKS))
    args = parser.parse_args()
    seconds = {} if args.report_only else run_all(args.quick, args.only)
    figures = load()
    DOC.write_text(render(figures, args.quick, seconds))
    plotted = plot(figures)
    print(f"wrote {DOC.relative_to(ROOT)}" + (f" and {PLOT.relative_to(ROOT)}" if plotted else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

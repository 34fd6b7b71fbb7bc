"""Orchestra's local backend against the tools a researcher would use instead, in the same run.

1. No-op jobs: N jobs (``true %DATA %IN %OUT``) on 2 slots through
   - ``xargs -P2`` running each command with ``sh -c`` (the floor, as in bench_engine);
   - GNU ``parallel -j2`` running the same command lines, each through /bin/sh as xargs does;
   - Snakemake, one rule instance per job (a wildcard rule whose shell runs the command and
     touches its output), ``snakemake -j2 --quiet all``. Its per-job cost grows with the
     number of jobs (tens of ms per job at 1,000 jobs, over an hour for 10,000 on this
     machine), so it runs min(N, --snakemake-jobs) jobs and its ms/job is at that size. Its
     default scheduler solves an ILP (PuLP + CBC) at every step; one extra run with
     ``--scheduler greedy`` shows what a user who knows that would get;
   - ``orchestra apply`` on a generated repository (plan, hashing, status writing and
     crash-safety markers included), as bench_engine's dispatch does.
   Scratch and storage are in memory (/dev/shm) when it exists: on this machine's ext4,
   creating a job's inodes after mass deletions can cost more than the job itself. Goals:
   orchestra at most 1.1x xargs per job, and at least 4x faster per job than GNU parallel.
2. The tutorial's 100 real jobs: ``job_tuning.py`` (a logistic regression, tens of ms each) run
   by this interpreter over the tutorial's data and 10 sorts x 10 inits configs, on 2 slots, by
   each of the four tools (orchestra through a repository like the tutorial's, bypass on).
   Wall seconds and the ratio to xargs: what each tool adds to a small real task.

Every run starts from nothing (fresh directories: no outputs, no .snakemake, no task
directories) and is checked afterwards: every job ran (joblog lines, outputs or orchestra's
status), else the benchmark stops. Figures are medians of --repeat runs, interleaved between
the tools.

Run: .venv/bin/python benchmarks/bench_peers.py [--jobs N] [--snakemake-jobs M] [--repeat R]
     [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BIN, ORCHESTRA, machine, run_timed, timed_noop_apply, write_json

TOOLS = ("xargs", "parallel", "snakemake", "orchestra")
TUTORIAL = Path(__file__).resolve().parent.parent / "examples" / "tasks" / "tutorial"
SNAKEMAKE_ONCE_AFTER = 60.0  # seconds: a slower first snakemake run is not repeated
Env = dict[str, str] | None


def find_tools() -> tuple[dict[str, str | None], dict[str, str | None], dict[str, str]]:
    """Executables, versions and, for those not found, a note."""
    venv_snakemake = BIN / "snakemake"
    paths = {
        "xargs": shutil.which("xargs"),
        "parallel": shutil.which("parallel"),
        "snakemake": str(venv_snakemake) if venv_snakemake.exists() else shutil.which("snakemake"),
    }
    if paths["xargs"] is None:
        raise SystemExit("xargs not found: it is the floor every figure is relative to")
    versions: dict[str, str | None] = {}
    missing: dict[str, str] = {}
    for name, path in paths.items():
        if path is None:
            versions[name] = None
            missing[name] = f"missing: no {name} on PATH, its figures are null"
            continue
        done = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
        first = (done.stdout or done.stderr).strip().splitlines()
        versions[name] = first[0].split()[-1] if first else "unknown"
    return paths, versions, missing


def timed(argv: list[str], cwd: Path, env: Env = None) -> tuple[float, str]:
    """Wall seconds and stderr of one child process; stops the benchmark if it fails."""
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, check=False, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(
            f"{argv} failed ({done.returncode}):\n{done.stdout[-2000:]!r}\n{done.stderr[-2000:]!r}"
        )
    return elapsed, done.stderr.decode(errors="replace")


def check(tool: str, ran: int, expected: int) -> None:
    if ran != expected:
        raise SystemExit(f"{tool} ran {ran} jobs out of {expected}")


def xargs_argv(paths: dict[str, str | None], commands: Path, verbose: bool = False) -> list[str]:
    """bench_engine's floor; ``-t`` (each command echoed to stderr) lets us count them."""
    flags = ["-t"] if verbose else []
    return [str(paths["xargs"]), *flags, "-a", str(commands), "-P2", "-d", "\n", "-n1", "sh", "-c"]


def parallel_argv(paths: dict[str, str | None], commands: Path, joblog: Path | None) -> list[str]:
    """Each line of ``commands`` run as a command (as ``parallel -j2 < commands``)."""
    log = ["--joblog", str(joblog)] if joblog else []
    return [str(paths["parallel"]), "--will-cite", "-j2", *log, "-a", str(commands)]


# /bin/sh for every line, as xargs' ``sh -c`` (else parallel picks $SHELL, bash here)
PARALLEL_ENV = {**os.environ, "PARALLEL_SHELL": "/bin/sh"}


def snakemake_argv(paths: dict[str, str | None], *flags: str) -> list[str]:
    # --quiet alone still prints the banner and every scheduling step; "all" prints nothing
    return [str(paths["snakemake"]), "-j2", "--quiet", "all", *flags]


def joblog_ok(joblog: Path) -> int:
    """Lines of a parallel joblog whose Exitval (7th column) is 0, header excluded."""
    rows = joblog.read_text().splitlines()[1:]
    return sum(1 for row in rows if row.split("\t")[6] == "0")


def median_ms(runs: list[float], jobs: int) -> float:
    return round(statistics.median(runs) / jobs * 1000, 3)


def interleaved(
    runners: dict[str, Callable[[int], float]], repeat: int, once_after: float | None = None
) -> dict[str, list[float]]:
    """``repeat`` rounds of every runner, the order rotated each round (no tool always goes
    first, on a cold cache); with ``once_after``, a snakemake run slower than that is not
    repeated."""
    runs: dict[str, list[float]] = {tool: [] for tool in TOOLS}
    order = [tool for tool in TOOLS if tool in runners]
    for index in range(repeat):
        for tool in order[index % len(order) :] + order[: index % len(order)]:
            done = runs[tool]
            if tool == "snakemake" and once_after is not None and done and done[0] > once_after:
                continue
            done.append(runners[tool](index))
    return runs


def bench_noop(
    paths: dict[str, str | None], jobs: int, snakemake_jobs: int, where: str | None, repeat: int
) -> dict[str, Any]:
    snakemake_jobs = min(jobs, snakemake_jobs)
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        base = Path(tmp)
        inputs = base / "inputs"
        (inputs / "configs").mkdir(parents=True)
        (inputs / "data.txt").write_text("data\n")
        for i in range(jobs):
            (inputs / "configs" / f"c{i:06d}.txt").write_text(f"{i}\n")
        commands = base / "commands.txt"
        commands.write_text(
            "".join(
                f"true {inputs}/data.txt {inputs}/configs/c{i:06d}.txt {base}/o{i}\n"
                for i in range(jobs)
            )
        )
        ids = ", ".join(f'"{i:06d}"' for i in range(snakemake_jobs))
        snakefile = (
            f"IDS = [{ids}]\n\n"
            'wildcard_constraints:\n    i=r"\\d+"\n\n'
            'rule all:\n    input: expand("out/o{i}", i=IDS)\n\n'
            "rule job:\n"
            f'    input: data="{inputs}/data.txt", config="{inputs}/configs/c{{i}}.txt"\n'
            '    output: "out/o{i}"\n'
            '    shell: "true {input.data} {input.config} {output} && touch {output}"\n'
        )
        env = {**os.environ, "ORCHESTRA_USER": "bench"}

        def xargs(index: int) -> float:
            seconds, stderr = timed(xargs_argv(paths, commands, verbose=True), base)
            check("xargs", stderr.count("\n"), jobs)
            return seconds

        def parallel(index: int) -> float:
            joblog = base / f"joblog{index}.txt"
            seconds, _ = timed(parallel_argv(paths, commands, joblog), base, PARALLEL_ENV)
            check("parallel", joblog_ok(joblog), jobs)
            return seconds

        def orchestra(index: int) -> float:
            root = base / f"orchestra{index}"
            seconds = timed_noop_apply(root, jobs, env)
            shutil.rmtree(root)
            return seconds

        def snakemake(index: int, *flags: str) -> float:
            work = base / f"snakemake{index}"
            work.mkdir()
            (work / "Snakefile").write_text(snakefile)
            seconds, _ = timed(snakemake_argv(paths, *flags), work)
            check("snakemake", len(list((work / "out").iterdir())), snakemake_jobs)
            shutil.rmtree(work)
            return seconds

        runners: dict[str, Callable[[int], float]] = {"xargs": xargs, "orchestra": orchestra}
        if paths["parallel"]:
            runners["parallel"] = parallel
        if paths["snakemake"]:
            runners["snakemake"] = snakemake
        runs = interleaved(runners, repeat, SNAKEMAKE_ONCE_AFTER)
        # snakemake's default scheduler solves an ILP (PuLP + CBC) at every scheduling step;
        # its greedy one is what a user who knows would pick for many small jobs (one run)
        greedy = snakemake(repeat, "--scheduler", "greedy") if paths["snakemake"] else None
    ms = {
        tool: median_ms(runs[tool], snakemake_jobs if tool == "snakemake" else jobs)
        if runs[tool]
        else None
        for tool in TOOLS
    }
    xargs_ms = ms["xargs"]
    assert xargs_ms is not None
    return {
        "jobs": jobs,
        "snakemake_jobs": snakemake_jobs,
        "snakemake_runs": len(runs["snakemake"]),
        "snakemake_greedy_ms_per_job": None
        if greedy is None
        else round(greedy / snakemake_jobs * 1000, 3),
        "repeat": repeat,
        "where": tempfile.gettempdir() if where is None else where,
        "ms_per_job": ms,
        "ratio_to_xargs": {
            tool: None if value is None else round(value / xargs_ms, 2)
            for tool, value in ms.items()
        },
        "parallel_over_orchestra": None
        if ms["parallel"] is None or not ms["orchestra"]
        else round(ms["parallel"] / ms["orchestra"], 2),
    }


TUTORIAL_TASK = """apiVersion: orchestra/v1
kind: Task
metadata:
  name: user.alice.my_task_tutorial
spec:
  cluster: local
  image: alice/orchestra_tutorial:1.0
  data: user.alice.my_data_file
  configs: user.alice.my_config_files
  output: output
  exec: {exec_line}
  bypass: true
"""


def write_tutorial_repo(root: Path, data: Path, configs: Path, command: str) -> None:
    """The tutorial's repository (cluster.yaml, users/alice/) with its storage under ``root``."""
    files = root / "storage" / "alice" / "files"
    files.mkdir(parents=True)
    shutil.copy(data, files / "my_data_file.json")
    shutil.copytree(configs, files / "my_config_files")
    (root / "users" / "alice").mkdir(parents=True)
    (root / "cluster.yaml").write_text(
        "apiVersion: orchestra/v1\nkind: Cluster\nmetadata: {name: local}\n"
        "spec: {backend: local, storage: storage, maxParallel: 2}\n"
    )
    shutil.copy(TUTORIAL / "users" / "alice" / "datasets.yaml", root / "users" / "alice")
    (root / "users" / "alice" / "task.yaml").write_text(
        TUTORIAL_TASK.format(exec_line=json.dumps(command))
    )


def bench_tutorial(
    paths: dict[str, str | None], sorts: int, inits: int, where: str | None, repeat: int
) -> dict[str, Any]:
    runs: dict[str, list[float]] = {tool: [] for tool in TOOLS}
    script = TUTORIAL / "job_tuning.py"
    job = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        base = Path(tmp)
        data, configs = base / "my_data_file.json", base / "my_config_files"
        subprocess.run(
            [sys.executable, str(TUTORIAL / "create_data.py"), "-o", str(data)], check=True
        )
        subprocess.run(
            [
                *(sys.executable, str(TUTORIAL / "create_configs.py"), "-o", str(configs)),
                *("--sorts", str(sorts), "--inits", str(inits)),
            ],
            check=True,
        )
        names = sorted(path.stem for path in configs.iterdir())
        jobs = len(names)

        def lines(out: Path) -> str:
            return "".join(
                f"{job} -d {shlex.quote(str(data))} "
                f"-c {shlex.quote(str(configs / f'{name}.json'))} "
                f"-o {shlex.quote(str(out / name))}\n"
                for name in names
            )

        def outputs(tool: str, out: Path, inside: str = "") -> None:
            """Every job's output is there and not empty (orchestra's: jobs/<job>/output)."""
            made = [out / name / inside if inside else out / name for name in names]
            check(tool, sum(1 for path in made if path.is_file() and path.stat().st_size), jobs)

        def listed(
            tool: str, index: int, argv: Callable[[Path], list[str]], env: Env = None
        ) -> float:
            """xargs or parallel over a file of the jobs' command lines."""
            work = base / f"{tool}{index}"
            (work / "out").mkdir(parents=True)
            commands = work / "commands.txt"
            commands.write_text(lines(work / "out"))
            seconds, _ = timed(argv(commands), work, env)
            outputs(tool, work / "out")
            shutil.rmtree(work)
            return seconds

        snakefile = (
            f"NAMES = {names!r}\n\n"
            'rule all:\n    input: expand("out/{name}", name=NAMES)\n\n'
            "rule job:\n"
            f"    input: data={json.dumps(str(data))}, "
            f"config={json.dumps(str(configs) + '/{name}.json')}\n"
            '    output: "out/{name}"\n'
            f"    shell: {json.dumps(job + ' -d {input.data} -c {input.config} -o {output}')}\n"
        )
        env = {**os.environ, "ORCHESTRA_USER": "alice"}
        task = "user.alice.my_task_tutorial"

        def orchestra(index: int) -> float:
            root = base / f"orchestra{index}"
            write_tutorial_repo(root, data, configs, f"{job} -d %DATA -c %IN -o %OUT")
            seconds, _rss = run_timed([ORCHESTRA, "apply"], root, env=env)
            outputs("orchestra", root / "storage" / "alice" / task / "jobs", "output")
            shutil.rmtree(root)
            return seconds

        def snakemake(index: int) -> float:
            work = base / f"snakemake{index}"
            work.mkdir()
            (work / "Snakefile").write_text(snakefile)
            seconds, _ = timed(snakemake_argv(paths), work)
            outputs("snakemake", work / "out")
            shutil.rmtree(work)
            return seconds

        runners: dict[str, Callable[[int], float]] = {
            "xargs": lambda index: listed("xargs", index, lambda file: xargs_argv(paths, file)),
            "orchestra": orchestra,
        }
        if paths["parallel"]:
            runners["parallel"] = lambda index: listed(
                "parallel", index, lambda file: parallel_argv(paths, file, None), PARALLEL_ENV
            )
        if paths["snakemake"]:
            runners["snakemake"] = snakemake
        # warm the page cache with the interpreter, the job's imports and the data (untimed)
        subprocess.run(
            [
                *(sys.executable, str(script), "-d", str(data)),
                *("-c", str(configs / f"{names[0]}.json"), "-o", str(base / "warm.json")),
            ],
            capture_output=True,
            check=True,
        )
        runs = interleaved(runners, repeat)
    seconds_of = {
        tool: round(statistics.median(runs[tool]), 3) if runs[tool] else None for tool in TOOLS
    }
    xargs_seconds = seconds_of["xargs"]
    assert xargs_seconds is not None
    return {
        "jobs": jobs,
        "repeat": repeat,
        "seconds": seconds_of,
        "ratio_to_xargs": {
            tool: None if value is None else round(value / xargs_seconds, 2)
            for tool, value in seconds_of.items()
        },
    }


def show(tool: str, unit: str, values: dict[str, Any], ratio: dict[str, Any]) -> str:
    if values[tool] is None:
        return f"{tool} missing"
    return f"{tool} {values[tool]} {unit} ({ratio[tool]}x xargs)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="no-op jobs per tool")
    parser.add_argument(
        "--snakemake-jobs", type=int, default=1000, help="no-op jobs for snakemake (at most N)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run: a smoke test")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    sorts, inits = 10, 10
    if args.quick:
        args.jobs, args.snakemake_jobs, args.repeat, sorts = 200, 100, 1, 2

    paths, versions, missing = find_tools()
    for note in missing.values():
        print(note)
    where = "/dev/shm" if os.path.isdir("/dev/shm") else None
    figures: dict[str, Any] = {"machine": machine(), "versions": versions}
    if missing:
        figures["missing"] = missing

    figures["noop"] = n = bench_noop(paths, args.jobs, args.snakemake_jobs, where, args.repeat)
    ms, ratio = n["ms_per_job"], n["ratio_to_xargs"]

    print(
        f"no-op jobs on 2 slots, scratch in {n['where']}: {n['jobs']} jobs: "
        f"xargs -P2 {ms['xargs']} ms/job; {show('parallel', 'ms/job', ms, ratio)}; "
        f"{show('orchestra', 'ms/job', ms, ratio)} (goal <= 1.1x); "
        f"parallel / orchestra {n['parallel_over_orchestra']}x (goal >= 4x); "
        f"at {n['snakemake_jobs']} jobs ({n['snakemake_runs']} run(s)): "
        f"{show('snakemake', 'ms/job', ms, ratio)}, "
        f"with --scheduler greedy {n['snakemake_greedy_ms_per_job']} ms/job (1 run)"
    )
    figures["tutorial"] = t = bench_tutorial(paths, sorts, inits, where, args.repeat)
    seconds, ratio = t["seconds"], t["ratio_to_xargs"]
    print(
        f"the tutorial's {t['jobs']} jobs (job_tuning.py) on 2 slots: "
        + "; ".join(show(tool, "s", seconds, ratio) for tool in TOOLS)
    )
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``orchestra render TASK``: what the backend would submit, without submitting it."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from orchestra.commands._common import load_specs
from orchestra.errors import FatalError
from orchestra.plan.desired import DesiredTask, expand


def run(args: argparse.Namespace) -> int:
    specs = load_specs([], args.directory)
    if args.task not in specs.tasks:
        known = ", ".join(sorted(specs.tasks)[:10])
        raise FatalError(
            f"no spec for task {args.task!r}", hint=f"known tasks: {known}" if known else None
        )
    (task,) = expand(specs, [args.task])
    backend = task.cluster.backend
    if backend == "kubernetes":
        documents = _kubernetes(task, validate=args.validate)
    else:
        if args.validate:
            raise FatalError(f"--validate checks Kubernetes manifests; this task runs on {backend}")
        documents = _slurm(task) if backend == "slurm" else _local(task)
    if args.out:
        out = Path(args.directory) / args.out
        out.mkdir(parents=True, exist_ok=True)
        for name, text in documents:
            (out / name).write_text(text, encoding="utf-8")
        print(f"wrote {len(documents)} file(s) to {args.out}", file=sys.stderr)
    else:
        separator = "---\n" if backend == "kubernetes" else ""
        sys.stdout.write(separator.join(text for _name, text in documents))
    return 0


# Rendering many manifests is spread over the CPUs (forked workers inherit the compiled
# template and the built validator); below this many jobs one process is faster.
PARALLEL_FROM = 2000
_SHARED: dict[str, Any] = {}  # the renderer, validator and task, for the workers


def _render_chunk(bounds: tuple[int, int]) -> tuple[list[tuple[str, str]], list[str], int]:
    """Manifests of jobs[start:end], their schema errors, and how many needed a full check."""
    renderer, validator, task = _SHARED["renderer"], _SHARED["validator"], _SHARED["task"]
    before = validator.full_checks if validator is not None else 0
    documents, problems = [], []
    for job in task.jobs[bounds[0] : bounds[1]]:
        text, values = renderer.render_with_values(task.spec, task.spec_digest, job)
        if validator is not None:
            for error in validator.errors_of_rendered(text, values):
                problems.append(f"{job.name}: {error}")
        documents.append((f"{values[0]}.yaml", text))  # the Job's name
    full = validator.full_checks - before if validator is not None else 0
    return documents, problems, full


def render_kubernetes(
    task: DesiredTask, *, validate: bool, workers: int | None = None
) -> tuple[list[tuple[str, str]], list[str], str | None]:
    """(file name, manifest) per job in job order, schema errors, the schema's version."""
    from orchestra.backends.k8s_manifest import ManifestRenderer

    renderer = ManifestRenderer(task.cluster)
    validator = None
    if validate:
        from orchestra.backends.k8s_validate import ManifestValidator

        validator = ManifestValidator()
    _SHARED.update(renderer=renderer, validator=validator, task=task)
    try:
        count = len(task.jobs)
        workers = workers or (os.cpu_count() or 1)
        if count < PARALLEL_FROM or workers < 2:
            documents, problems, _full = _render_chunk((0, count))
        else:
            _render_chunk((0, 1))  # build the validator and judge the first shape, then fork
            size = max(500, -(-count // (workers * 4)))
            bounds = [(start, min(count, start + size)) for start in range(0, count, size)]
            documents, problems = [], []
            context = multiprocessing.get_context("fork")
            with context.Pool(workers) as pool:
                for chunk_documents, chunk_problems, _full in pool.imap(_render_chunk, bounds):
                    documents += chunk_documents
                    problems += chunk_problems
    finally:
        _SHARED.clear()
    return documents, problems, validator.version if validator is not None else None


def _kubernetes(task: DesiredTask, *, validate: bool) -> list[tuple[str, str]]:
    documents, problems, version = render_kubernetes(task, validate=validate)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        raise FatalError(
            f"{len(problems)} schema error(s) in the rendered manifests (Kubernetes {version})"
        )
    if version is not None:
        print(
            f"{len(documents)} manifest(s) valid against the Kubernetes {version} schema (strict)",
            file=sys.stderr,
        )
    return documents


def _slurm(task: DesiredTask) -> list[tuple[str, str]]:
    """The sbatch script of the task's jobs as one array (apply submits a round at a time:
    the test jobs, then the rest, each round one array of the same form)."""
    from orchestra.backends.base import JobRun
    from orchestra.backends.slurm import ScriptRenderer

    runs = [
        JobRun(
            task=task.name,
            job=job.name,
            attempt=1,
            run_id=f"render-{index}",
            command=job.command,
            job_dir=task.job_dir(job.name),
            image=task.spec.image,
            env=task.spec.env,
            spec=task.spec,
            spec_digest=task.spec_digest,
            digest=job.digest,
        )
        for index, job in enumerate(task.jobs)
    ]
    script = ScriptRenderer(task.cluster).render(task.spec, runs, key="render")
    return [(f"{task.name}.sbatch", script)]


def _local(task: DesiredTask) -> list[tuple[str, str]]:
    """The script each job's /bin/sh runs (the exit-marker trap added by the backend aside)."""
    documents = []
    for job in task.jobs:
        directory = shlex.quote(str(task.job_dir(job.name)))
        documents.append(
            (f"{job.name}.sh", f"#!/bin/sh\ncd {directory} || exit 126\n{job.command}\n")
        )
    return documents

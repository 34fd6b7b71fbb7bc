"""``orchestra render TASK``: what the backend would submit, without submitting it."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import yaml

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
    elif backend == "local":
        if args.validate:
            raise FatalError("--validate checks Kubernetes manifests; this task runs locally")
        documents = _local(task)
    else:
        raise FatalError(f"rendering for the {backend} backend is not built yet")
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


def _kubernetes(task: DesiredTask, *, validate: bool) -> list[tuple[str, str]]:
    from orchestra.backends.k8s_manifest import ManifestRenderer, job_name

    renderer = ManifestRenderer(task.cluster)
    validator = None
    if validate:
        from orchestra.backends.k8s_validate import ManifestValidator

        validator = ManifestValidator()
    documents = []
    problems = []
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for job in task.jobs:
        text = renderer.render(task.spec, task.spec_digest, job)
        if validator is not None:
            for error in validator.errors(yaml.load(text, Loader=loader)):
                problems.append(f"{job.name}: {error}")
        documents.append((f"{job_name(task.name, job.name)}.yaml", text))
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        raise FatalError(
            f"{len(problems)} schema error(s) in the rendered manifests "
            f"(Kubernetes {validator.version if validator else '?'})"
        )
    if validator is not None:
        print(
            f"{len(documents)} manifest(s) valid against the Kubernetes {validator.version} schema "
            "(strict)",
            file=sys.stderr,
        )
    return documents


def _local(task: DesiredTask) -> list[tuple[str, str]]:
    """The script each job's /bin/sh runs (the exit-marker trap added by the backend aside)."""
    documents = []
    for job in task.jobs:
        directory = shlex.quote(str(task.job_dir(job.name)))
        documents.append(
            (f"{job.name}.sh", f"#!/bin/sh\ncd {directory} || exit 126\n{job.command}\n")
        )
    return documents

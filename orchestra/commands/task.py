"""``orchestra task new``: the original ``orchestra_create.py``, as a spec file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from orchestra.commands._scaffold import owner_and_short, write_spec


def run(args: argparse.Namespace) -> int:
    owner, short = owner_and_short(args.task, "task")
    spec: dict[str, Any] = {
        "cluster": args.cluster,
        "image": args.image,
        "data": args.data,
        "configs": args.configs,
        "output": args.output,
        "exec": args.exec,
    }
    if args.bypass:
        spec["bypass"] = True
    for key in ("testJobs", "maxRetries", "parallelism"):
        value = getattr(args, key)
        if value is not None:
            spec[key] = value
    document = {
        "apiVersion": "orchestra/v1",
        "kind": "Task",
        "metadata": {"name": args.task},
        "spec": spec,
    }
    legacy = ["orchestra_create.py", "-c", args.configs, "-d", args.data, "-o", args.output]
    legacy += ["-t", args.task, "--containerImage", args.image, "--exec", args.exec]
    legacy += ["--cluster", args.cluster] + (["--bypass"] if args.bypass else [])
    relative = f"users/{owner}/tasks/{short}.yaml"
    return write_spec(Path(args.directory), relative, document, legacy, offline=args.offline)

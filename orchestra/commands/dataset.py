"""``orchestra dataset add``: the original ``orchestra_registry.py``, as a spec file."""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestra.commands._common import load_clusters
from orchestra.commands._scaffold import owner_and_short, write_spec
from orchestra.errors import FatalError


def run(args: argparse.Namespace) -> int:
    owner, short = owner_and_short(args.dataset, "dataset")
    if not args.offline:
        _check_path(args, owner)
    spec: dict[str, str] = {"path": args.path.rstrip("/") or args.path}
    if args.description:
        spec["description"] = args.description
    document = {
        "apiVersion": "orchestra/v1",
        "kind": "Dataset",
        "metadata": {"name": args.dataset},
        "spec": spec,
    }
    legacy = ["orchestra_registry.py", "-d", args.dataset, "-p", args.path]
    if args.cluster:
        legacy += ["--cluster", args.cluster]
    relative = f"users/{owner}/datasets/{short}.yaml"
    return write_spec(Path(args.directory), relative, document, legacy, offline=args.offline)


def _check_path(args: argparse.Namespace, owner: str) -> None:
    """The file or directory must be there: in the storage of ``--cluster``, else of at
    least one Cluster of the repository (a Dataset resolves in the storage of each Task's
    cluster)."""
    clusters = load_clusters(args.directory).clusters
    if args.cluster:
        if args.cluster not in clusters:
            known = ", ".join(sorted(clusters))
            raise FatalError(f"no Cluster named {args.cluster!r}", hint=f"known: {known}")
        clusters = {args.cluster: clusters[args.cluster]}
    where = {name: c.storage / owner / "files" / args.path for name, c in clusters.items()}
    if not any(path.exists() for path in where.values()):
        tried = "; ".join(f"{name}: {path}" for name, path in sorted(where.items()))
        raise FatalError(
            f"{args.path!r} is not in {owner}'s files ({tried})",
            hint="copy it there first (or --offline to write the spec anyway)",
        )

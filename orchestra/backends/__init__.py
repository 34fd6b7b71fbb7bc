"""Backends run jobs: a Protocol and a registry. Each backend module is imported only when a
cluster uses it (``kubernetes`` is heavy)."""

from __future__ import annotations

import importlib

from orchestra.backends.base import Backend
from orchestra.errors import FatalError
from orchestra.spec.model import ClusterSpec

_REGISTRY = {
    "local": "orchestra.backends.local:LocalBackend",
    "kubernetes": "orchestra.backends.kubernetes:KubernetesBackend",
    "slurm": "orchestra.backends.slurm:SlurmBackend",
}


def create_backend(cluster: ClusterSpec) -> Backend:
    target = _REGISTRY.get(cluster.backend)
    if target is None:
        raise FatalError(
            f"cluster {cluster.name!r}: the {cluster.backend} backend is not built yet "
            f"(available: {', '.join(sorted(_REGISTRY))})"
        )
    module_name, _, class_name = target.partition(":")
    backend_class = getattr(importlib.import_module(module_name), class_name)
    backend: Backend = backend_class(cluster)
    return backend

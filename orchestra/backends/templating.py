"""The one way backends render templates: a sandboxed Jinja environment with
``StrictUndefined`` over a template directory, where user values enter only through the
filters a backend gives it (YAML-safe JSON for Kubernetes, shell quoting for Slurm)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def sandboxed_environment(
    directory: Path, filters: Mapping[str, Callable[..., Any]], *, trim: bool = False
) -> Any:
    """``trim``: drop the newline after a block tag and the indentation before it."""
    from jinja2 import FileSystemLoader, StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    environment = SandboxedEnvironment(
        loader=FileSystemLoader(str(directory)),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=trim,
        lstrip_blocks=trim,
    )
    environment.filters.update(filters)
    return environment

"""Bounds of a Task's values that JSON Schema cannot express: a timeout written as a duration,
an output's length in bytes, and the image reference a Kubernetes cluster accepts."""

from __future__ import annotations

import re

from orchestra.spec.diagnostics import Diagnostic, json_path
from orchestra.spec.model import MAX_TIMEOUT_SECONDS, ClusterSpec, TaskSpec

#: A file name holds at most this many bytes (NAME_MAX of Linux and of every common file
#: system); the schema's maxLength counts characters.
NAME_MAX = 255

# The reference grammar of the OCI distribution spec (github.com/distribution/reference):
# [host[:port]/]path[:tag][@digest], the path in lower case.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_HOST_PART}(?:\.{_HOST_PART})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
OCI_REFERENCE = re.compile(
    rf"(?P<name>(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*)(?::{_TAG})?(?:@{_DIGEST})?",
    re.ASCII,
)
_TIMEOUT_RANGE = (
    f"a timeout is more than 0 and at most 24 days ({MAX_TIMEOUT_SECONDS} seconds, the longest "
    "every backend can keep)"
)
#: The longest repository name a registry accepts (NameTotalLengthMax).
MAX_IMAGE_NAME = 255


def check_task(task: TaskSpec, cluster: ClusterSpec | None) -> list[Diagnostic]:
    """Every bound ``task`` breaks; ``cluster`` is its Cluster when one is defined."""
    problems = []
    raw_timeout = task.doc.data["spec"].get("timeout")
    # a number is bounded by the schema; a duration only here, once added up
    timeout = task.timeout
    bounded = timeout is not None and 0 < timeout <= MAX_TIMEOUT_SECONDS
    if isinstance(raw_timeout, str) and not bounded:
        problems.append(
            _diag(task, "timeout", f"{_TIMEOUT_RANGE}; got {raw_timeout!r} ({timeout} seconds)")
        )
    size = len(task.output.encode("utf-8", "surrogatepass"))
    if size > NAME_MAX:
        problems.append(
            _diag(
                task,
                "output",
                f"output is {size} bytes in UTF-8; a file name holds at most {NAME_MAX}",
            )
        )
    if cluster is not None and cluster.backend == "kubernetes":
        problems += _check_oci_image(task)
    return problems


def _check_oci_image(task: TaskSpec) -> list[Diagnostic]:
    image = task.image
    match = OCI_REFERENCE.fullmatch(image)
    if match is not None and len(match.group("name")) <= MAX_IMAGE_NAME:
        return []
    return [
        _diag(
            task,
            "image",
            f"{image!r} is not an image reference Kubernetes can pull: "
            "[registry[:port]/]name[:tag][@digest], the name in lower-case letters, digits "
            "and '.', '_', '-' between them (at most 255 characters), e.g. "
            "'registry.example.org/alice/tutorial:1.0'",
        )
    ]


def _diag(task: TaskSpec, field: str, message: str) -> Diagnostic:
    path: list[str | int] = ["spec", field]
    line, column = task.doc.locate(path)
    return Diagnostic(task.doc.file, line, column, json_path(path), message, "semantic")

"""Validation bounds of issue 14 (items 6, 9, 13, 14, 15): what validate refuses, with its
file, line, column and field, before anything is written; and the Kubernetes namespace of an
owner, which no other owner can share.

The exact messages of each case are in tests/data/invalid/ (output-orchestra-files,
output-not-a-file-name, image-invisible, image-not-oci-on-kubernetes, keys-not-strings,
env-and-exec-nul, timeout-bounds), checked by tests/test_validate_cases.py.
"""

from __future__ import annotations

import json
import os
import re
import select
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestra.backends.k8s_manifest import namespace
from orchestra.backends.slurm import time_limit
from orchestra.cli import main
from orchestra.resources import schema_path
from orchestra.spec.checker import validate_paths
from orchestra.spec.loader import load_text
from orchestra.spec.model import MAX_TIMEOUT_SECONDS, OBJECT_NAME, ClusterSpec, cluster_from
from tests.conftest import Run
from tests.helpers import Repo

LOCATED = r"users/alice/specs\.yaml:\d+:\d+: \$\.spec\.{field}(\.\w+)?: "

# (what the spec sets, the field the error names, a word of the message)
BAD_VALUES: dict[str, tuple[dict[str, Any], str, str]] = {
    "output-is-the-exit-marker": ({"output": ".orchestra-exit"}, "output", "orchestra's own"),
    "output-is-the-log": ({"output": "log"}, "output", "orchestra's own"),
    "output-is-a-beginning-of-attempts": ({"output": "att"}, "output", "beginning"),
    "output-with-a-newline": ({"output": "out\nput"}, "output", "plain file name"),
    "output-with-a-zero-width-space": ({"output": "out\u200b"}, "output", "U+200B"),
    "output-over-255-bytes": ({"output": "é" * 128}, "output", "256 bytes"),
    "env-key-is-a-number": ({"env": {1: "x"}}, "env", "keys must be strings"),
    "env-key-is-null": ({"env": {None: "x"}}, "env", "keys must be strings"),
    "env-key-is-bytes": ({"env": {b"PATH": "x"}}, "env", "keys must be strings"),
    "env-key-is-a-boolean": ({"env": {True: "x"}}, "env", "keys must be strings"),
    "env-value-with-nul": ({"env": {"A": "a\0b"}}, "env", "NUL"),
    "exec-with-nul": ({"exec": "cat %IN > %OUT\0 # %DATA"}, "exec", "NUL"),
    "timeout-zero-seconds": ({"timeout": "0s"}, "timeout", "more than 0"),
    "timeout-25-days": ({"timeout": "25d"}, "timeout", "at most 24 days"),
    "timeout-25-days-in-seconds": ({"timeout": 25 * 86400}, "timeout", "at most 24 days"),
    "image-with-a-zero-width-space": ({"image": "alice/img\u200b:1"}, "image", "U+200B"),
    "image-with-a-no-break-space": ({"image": "alice/img:\u00a01"}, "image", "U+00A0"),
}


def _tree(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize("case", sorted(BAD_VALUES), ids=str)
@pytest.mark.parametrize("command", ["validate", "plan", "apply"])
def test_a_bad_value_is_a_located_error_exit_1_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, command: str
) -> None:
    spec, field, word = BAD_VALUES[case]
    repo = Repo(tmp_path)
    repo.configs({"c0.txt": "0\n", "c1.txt": "1\n"})
    task = repo.task(**spec)
    before = _tree(repo.storage)
    assert repo.orchestra(command) == 1
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "internal error" not in text and "Traceback" not in text
    (line,) = [line for line in text.splitlines() if re.match(LOCATED.format(field=field), line)]
    assert word in line
    assert not repo.task_dir(task).exists()
    assert _tree(repo.storage) == before


def test_the_longest_timeout_and_plain_outputs_run(tmp_path: Path) -> None:
    repo = Repo(tmp_path)
    repo.configs({"c0.txt": "0\n"})
    # an output that begins like orchestra's names without being a beginning of one
    task = repo.task(
        timeout="24d", output="logits.npy", exec="cat %IN > %OUT; cat %IN > %OUT.s1 # %DATA"
    )
    assert repo.orchestra("apply", "--wait") == 0
    status = repo.status(task)
    assert status["phase"] == "done" and status["counts"]["done"] == 1
    assert (repo.job_dir(task, "c0") / "logits.npy").read_text() == "0\n"


def test_the_timeout_bound_fits_every_backend() -> None:
    schema = json.loads(schema_path("Task").read_text())
    timeout = schema["properties"]["spec"]["properties"]["timeout"]
    assert timeout["maximum"] == MAX_TIMEOUT_SECONDS == 24 * 86400
    assert timeout["minimum"] == 1
    # the local backend waits with poll(), in milliseconds held in a C int
    reader, writer = os.pipe()
    try:
        os.write(writer, b"x")  # readable: poll() returns at once, whatever its timeout
        poller = select.poll()
        poller.register(reader, select.POLLIN)
        assert poller.poll(MAX_TIMEOUT_SECONDS * 1000)
        with pytest.raises(OverflowError):  # what 25 days did to every local job
            poller.poll(25 * 86400 * 1000)
    finally:
        os.close(reader)
        os.close(writer)
    assert time_limit(MAX_TIMEOUT_SECONDS) == "24-00:00:00"  # Slurm's --time


@pytest.mark.parametrize("timeout", ["24d", "23d23h59m60s", 2073600, "1s", 1])
def test_timeouts_up_to_24_days_validate(tmp_path: Path, timeout: str | int) -> None:
    repo = Repo(tmp_path)
    repo.task(timeout=timeout)
    result = validate_paths([], repo.root)
    assert [d.format() for d in result.diagnostics] == []


# -- keys that are not strings, anywhere ---------------------------------------------------

_TASK = {
    "apiVersion": "orchestra/v1",
    "kind": "Task",
    "metadata": {"name": "user.alice.t", "labels": {"a": "b"}},
    "spec": {
        "cluster": "here",
        "image": "i",
        "data": "user.alice.d",
        "configs": "user.alice.c",
        "output": "out",
        "exec": "x %DATA %IN %OUT",
        "resources": {"cpu": 1},
        "env": {"A": "1"},
    },
}
_MAPPINGS = [[], ["metadata"], ["metadata", "labels"], ["spec"], ["spec", "resources"]]
_MAPPINGS.append(["spec", "env"])


@settings(max_examples=60, deadline=None)
@given(
    where=st.sampled_from(_MAPPINGS),
    key=st.one_of(
        st.integers(-(10**6), 10**6),
        st.none(),
        st.booleans(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.binary(max_size=8),
    ),
)
def test_a_key_that_is_not_a_string_is_located_wherever_it_is(
    where: list[str], key: object
) -> None:
    document: Any = json.loads(json.dumps(_TASK))
    mapping = document
    for part in where:
        mapping = mapping[part]
    mapping[key] = "x"
    text = yaml.safe_dump(document, sort_keys=False)
    loaded = load_text(text, "t.yaml")
    (diagnostic,) = loaded.diagnostics
    assert diagnostic.path == "$" + "".join(f".{part}" for part in where)
    assert diagnostic.message.startswith("keys must be strings; got ")
    assert loaded.documents[0].bad_keys
    line = text.splitlines()[diagnostic.line - 1]
    assert line[diagnostic.column - 1 :].startswith(("!!binary", yaml.safe_dump(key).split()[0]))


def test_keys_of_yaml_1_1_booleans_say_how_to_quote_them(tmp_path: Path, run: Run) -> None:
    (tmp_path / "ci.yaml").write_text("on: push\nkind: Task\n")
    result = run("-C", str(tmp_path), "validate", "--offline", "ci.yaml")
    assert result.code == 1
    assert (
        "ci.yaml:1:1: $: keys must be strings; got the boolean on (YAML reads yes, no, on and "
        "off as booleans; quote it: 'on')"
    ) in result.out.splitlines()


def test_render_of_a_task_with_a_binary_env_key_is_an_error_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = Repo(tmp_path)
    repo.configs({"c0.txt": "0\n"})
    task = repo.task(env={b"\xff": "x"})
    assert repo.orchestra("render", task) == 1
    captured = capsys.readouterr()
    assert "internal error" not in captured.out + captured.err
    assert "keys must be strings; got binary data (!!binary)" in captured.out + captured.err


# -- Kubernetes namespaces -----------------------------------------------------------------

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _cluster(template: str = "orchestra-{user}") -> ClusterSpec:
    text = yaml.safe_dump(
        {
            "apiVersion": "orchestra/v1",
            "kind": "Cluster",
            "metadata": {"name": "k"},
            "spec": {
                "backend": "kubernetes",
                "storage": "/s",
                "kubernetes": {"volumeClaim": "v", "namespace": template},
            },
        }
    )
    return cluster_from(load_text(text, "c.yaml").documents[0], Path("/"))


def test_owners_a_b_and_a_dash_b_get_different_namespaces() -> None:
    cluster = _cluster()
    assert namespace(cluster, "alice") == "orchestra-alice"  # plain owners keep theirs
    assert namespace(cluster, "a-b") == "orchestra-a-b"
    hashed = namespace(cluster, "a_b")
    assert hashed != "orchestra-a-b" and hashed.startswith("orchestra-a-b--")
    # a namespace never changes from one version to the next (docs/kubernetes.md shows it)
    assert hashed == "orchestra-a-b--648fa9b31bc7ff7eb914"
    # a hostile owner named after a_b's namespace gets a namespace of its own, too
    crafted = hashed.removeprefix("orchestra-")
    assert OBJECT_NAME.fullmatch(f"user.{crafted}.t")
    names = {namespace(cluster, owner) for owner in ("a_b", "a-b", "a--b", "a-b-", crafted)}
    assert len(names) == 5


@settings(max_examples=300, deadline=None)
@given(
    owners=st.lists(st.from_regex(r"[a-z0-9][a-z0-9_-]{0,80}", fullmatch=True), min_size=2),
    template=st.sampled_from(["orchestra-{user}", "{user}", "jobs-{user}-x", "{user}-{user}"]),
)
def test_namespaces_are_valid_labels_and_never_shared(owners: list[str], template: str) -> None:
    cluster = _cluster(template)
    rendered = {owner: namespace(cluster, owner) for owner in set(owners)}
    assert len(set(rendered.values())) == len(rendered)
    for owner, name in rendered.items():
        assert len(name) <= 63 and DNS_LABEL.fullmatch(name), (owner, name)
        plain = template.replace("{user}", owner)
        if re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", owner) and len(plain) <= 63:
            assert name == plain


@settings(max_examples=200, deadline=None)
@given(owners=st.lists(st.text(max_size=80), min_size=2, unique=True))
def test_any_owner_read_from_a_sidecar_gets_a_valid_namespace_of_its_own(
    owners: list[str],
) -> None:
    # prune takes owners from the storage's sidecars too, which a job can have damaged
    cluster = _cluster()
    rendered = [namespace(cluster, owner) for owner in owners]
    assert len(set(rendered)) == len(owners)
    assert all(len(name) <= 63 and DNS_LABEL.fullmatch(name) for name in rendered)


def _owner_repo(root: Path, owners: tuple[str, ...]) -> None:
    cluster = {
        "apiVersion": "orchestra/v1",
        "kind": "Cluster",
        "metadata": {"name": "k"},
        "spec": {
            "backend": "kubernetes",
            "storage": "storage",
            "kubernetes": {"volumeClaim": "v", "mountPath": "/mnt/v", "context": "fake"},
        },
    }
    root.mkdir()
    (root / "cluster.yaml").write_text(yaml.safe_dump(cluster))
    for owner in owners:
        (root / "storage" / owner / "files" / "configs").mkdir(parents=True)
        (root / "storage" / owner / "files" / "configs" / "c0.txt").write_text("0\n")
        (root / "users" / owner).mkdir(parents=True)
        dataset = {
            "apiVersion": "orchestra/v1",
            "kind": "Dataset",
            "metadata": {"name": f"user.{owner}.configs"},
            "spec": {"path": "configs"},
        }
        task = {
            "apiVersion": "orchestra/v1",
            "kind": "Task",
            "metadata": {"name": f"user.{owner}.t"},
            "spec": {
                "cluster": "k",
                "image": "alice/img:1",
                "data": f"user.{owner}.configs",
                "configs": f"user.{owner}.configs",
                "output": "out",
                "exec": "cat %IN > %OUT # %DATA",
                "bypass": True,
            },
        }
        (root / "users" / owner / "specs.yaml").write_text(yaml.safe_dump_all([dataset, task]))


def _owner_of_job(job: dict[str, Any]) -> str:
    return str(job["metadata"]["labels"]["orchestra.io/user"])


def test_owners_a_b_and_a_dash_b_run_in_namespaces_of_their_own_and_prune_keeps_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestra.backends import kubernetes as kube_backend
    from tests.fakes.kube_apiserver import FakeKubeAPIServer
    from tests.fakes.kubelet import Kubelet

    monkeypatch.setattr(kube_backend.KubernetesBackend, "poll_interval", 0.05)
    root = tmp_path / "repo"
    owners = ("a_b", "a-b")
    _owner_repo(root, owners)
    with FakeKubeAPIServer() as server:
        kubeconfig = tmp_path / "kubeconfig"
        server.write_kubeconfig(kubeconfig)
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        with Kubelet(server):
            assert main(["-C", str(root), "apply", "--wait"]) == 0
        spaces = {
            owner: {j["metadata"]["namespace"] for j in server.jobs() if _owner_of_job(j) == owner}
            for owner in owners
        }
        assert spaces["a-b"] == {"orchestra-a-b"}
        (hashed,) = spaces["a_b"]
        assert hashed.startswith("orchestra-a-b--")
        assert [_owner_of_job(j) for j in server.jobs("orchestra-a-b")] == ["a-b"]
        capsys.readouterr()
        # prune lists the namespaces the Jobs went to: each owner's Job is known, none goes
        assert main(["-C", str(root), "apply", "--prune"]) == 0
        assert "pruned" not in capsys.readouterr().out
        assert len(server.jobs()) == 2

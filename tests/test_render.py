"""Kubernetes manifests: rendered from the sandboxed template, valid against the real OpenAPI
schema (kubernetes-validate, strict), and safe against hostile values."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestra.backends.k8s_manifest import ManifestRenderer, job_name, label_value
from orchestra.backends.k8s_validate import ManifestValidator
from orchestra.errors import FatalError
from orchestra.plan.desired import expand
from orchestra.spec.checker import validate_paths
from tests.conftest import EXAMPLES, Run
from tests.helpers import Repo

DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LPS = EXAMPLES / "kubernetes" / "lps"


@pytest.fixture(scope="module")
def validator() -> ManifestValidator:
    return ManifestValidator()  # built once: ~0.3 ms a manifest afterwards


def _kube_repo(tmp_path: Path, **kube: Any) -> Repo:
    repo = Repo(tmp_path)
    cluster = yaml.safe_load((repo.root / "cluster.yaml").read_text())
    cluster["spec"].update(
        backend="kubernetes",
        kubernetes={"volumeClaim": "shared", "mountPath": "/mnt/shared", **kube},
    )
    (repo.root / "cluster.yaml").write_text(yaml.safe_dump(cluster))
    return repo


def _manifests(root: Path, task: str) -> list[dict[str, Any]]:
    specs = validate_paths([], root).specs
    (desired,) = expand(specs, [task])
    renderer = ManifestRenderer(desired.cluster)
    return [
        yaml.safe_load(renderer.render(desired.spec, desired.spec_digest, job))
        for job in desired.jobs
    ]


def test_example_manifests_are_valid_and_safe(validator: ManifestValidator) -> None:
    manifests = _manifests(LPS, "user.alice.my_task_tutorial")
    assert len(manifests) == 100
    names = set()
    for manifest in manifests:
        assert validator.errors(manifest) == []
        spec = manifest["spec"]
        pod = spec["template"]["spec"]
        (container,) = pod["containers"]
        assert spec["backoffLimit"] == 0 and pod["restartPolicy"] == "Never"
        assert container["securityContext"] == {
            "privileged": False,
            "allowPrivilegeEscalation": False,
        }
        assert container["command"][:2] == ["/bin/sh", "-c"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert container["volumeMounts"] == [
            {"name": "storage", "mountPath": "/mnt/cluster-volume/alice", "subPath": "alice"}
        ]
        metadata = manifest["metadata"]
        assert metadata["namespace"] == "orchestra-alice"
        assert metadata["labels"]["app.kubernetes.io/managed-by"] == "orchestra"
        assert metadata["labels"]["orchestra.io/task"] == "user.alice.my_task_tutorial"
        assert DNS_1123.match(metadata["name"]) and len(metadata["name"]) <= 63
        names.add(metadata["name"])
    assert len(names) == 100


def test_hostile_values_cannot_break_or_inject(
    tmp_path: Path, validator: ManifestValidator
) -> None:
    repo = _kube_repo(tmp_path)
    hostile = "x: y\n# not a comment\n{{ 7*7 }} {% raw %}'\"\\\t"
    repo.configs({"it's: {{ 7*7 }} #1.json": "ok\n"})
    task = repo.task(
        "t_hostile",
        exec=f"echo {hostile!r} %DATA %IN %OUT",
        env={"HOSTILE": hostile},
        image="img:1",
    )
    specs = validate_paths([], repo.root).specs
    (desired,) = expand(specs, [task])
    renderer = ManifestRenderer(desired.cluster)
    (job,) = desired.jobs
    text = renderer.render(desired.spec, desired.spec_digest, job)
    manifest = yaml.safe_load(text)
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    assert container["command"][2] == job.command  # exactly, not evaluated
    assert {e["name"]: e["value"] for e in container["env"]}["HOSTILE"] == hostile
    assert manifest["metadata"]["annotations"]["orchestra.io/task-name"] == task
    assert "{{ 7*7 }}" in text.replace("\\", "")  # the braces travel as data
    assert validator.errors(manifest) == []


def test_job_names_are_dns_labels_deterministic_and_unique() -> None:
    long_task = "user.alice." + "x" * 200
    names = {job_name(long_task, f"job_{i}") for i in range(1000)}
    assert len(names) == 1000
    for name in names:
        assert DNS_1123.match(name) and len(name) <= 63
    assert job_name("user.a.T_1", "Config.One") == job_name("user.a.T_1", "Config.One")
    assert job_name("user.a.t", "c").startswith("t-c-")
    assert DNS_1123.match(job_name("user.a.___", "___"))


def test_long_label_values_are_hashed() -> None:
    assert label_value("user.alice.short") == "user.alice.short"
    hashed = label_value("user.alice." + "y" * 80)
    assert hashed.startswith("h-") and len(hashed) <= 63
    assert label_value("bad value!") != "bad value!"


def test_a_cluster_may_bring_its_own_templates(tmp_path: Path) -> None:
    templates = tmp_path / "my-templates"
    templates.mkdir()
    (templates / "job.yaml.j2").write_text(
        "name: {{ name | tojson }}\nnot_a_variable: {{ nope }}\n"
    )
    repo = _kube_repo(tmp_path / "repo", templates=str(templates))
    repo.configs({"c0.txt": "ok\n"})
    task = repo.task()
    specs = validate_paths([], repo.root).specs
    (desired,) = expand(specs, [task])
    from jinja2 import UndefinedError

    with pytest.raises(UndefinedError, match="nope"):  # StrictUndefined
        ManifestRenderer(desired.cluster).render(desired.spec, desired.spec_digest, desired.jobs[0])


def test_render_command_writes_and_validates(tmp_path: Path, run: Run) -> None:
    out = tmp_path / "out"
    result = run(
        "-C", str(LPS), "render", "user.alice.my_task_tutorial", "-o", str(out), "--validate"
    )
    assert result.code == 0, result.err
    assert "100 manifest(s) valid against the Kubernetes" in result.err
    assert len(list(out.glob("*.yaml"))) == 100


def test_render_validate_reports_schema_errors(tmp_path: Path, run: Run) -> None:
    templates = tmp_path / "bad"
    templates.mkdir()
    good = (Path(__file__).parent.parent / "templates" / "kubernetes" / "job.yaml.j2").read_text()
    (templates / "job.yaml.j2").write_text(
        good.replace("  backoffLimit: 0", "  backoffLimit: 0\n  retries: 3")
    )
    repo = _kube_repo(tmp_path / "repo", templates=str(templates))
    repo.configs({"c0.txt": "ok\n"})
    task = repo.task()
    result = run("-C", str(repo.root), "render", task, "--validate")
    assert result.code == 1
    assert (
        "c0: spec: Additional properties are not allowed ('retries' was unexpected)" in result.err
    )


def test_render_of_a_local_task_shows_the_scripts(tmp_path: Path, run: Run) -> None:
    repo = Repo(tmp_path)
    repo.configs({"c0.txt": "ok\n"})
    task = repo.task()
    result = run("-C", str(repo.root), "render", task)
    assert result.code == 0
    assert result.out.startswith("#!/bin/sh\ncd ")
    assert "cat " in result.out and "/configs/c0.txt" in result.out


def test_render_of_a_slurm_task_shows_its_sbatch_script(tmp_path: Path, run: Run) -> None:
    repo = Repo(tmp_path)
    cluster = yaml.safe_load((repo.root / "cluster.yaml").read_text())
    cluster["spec"].update(backend="slurm", slurm={"partition": "gpu", "arrayLimit": 4})
    (repo.root / "cluster.yaml").write_text(yaml.safe_dump(cluster))
    repo.configs({"c0.txt": "ok\n", "c1.txt": "ok\n", "c2.txt": "ok\n"})
    task = repo.task(timeout="2h", resources={"cpu": 2, "memory": "1Gi", "gpu": 1})
    result = run("-C", str(repo.root), "render", task, "-o", "out")
    assert result.code == 0, result.err
    script = (repo.root / "out" / f"{task}.sbatch").read_text()
    for option in (
        "--array=0-2%4",
        "--cpus-per-task=2",
        "--mem=1024M",
        "--gres=gpu:1",
        "--time=0-02:00:00",
        "--partition=gpu",
    ):
        assert f"#SBATCH {option}\n" in script, option
    assert script.count("/configs/c") == 3  # one index per job
    assert not repo.task_dir(task).exists()  # rendering submits and writes nothing
    assert run("-C", str(repo.root), "render", task, "--validate").code == 1


def test_shipped_kubernetes_examples_are_valid(validator: ManifestValidator) -> None:
    rbac = list(yaml.safe_load_all((EXAMPLES / "kubernetes" / "rbac.yaml").read_text()))
    assert {d["kind"] for d in rbac} == {"Role", "RoleBinding", "Namespace"}
    reconciler = list(yaml.safe_load_all((EXAMPLES / "kubernetes" / "reconciler.yaml").read_text()))
    assert {d["kind"] for d in reconciler} == {
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "RoleBinding",
        "Deployment",
    }
    for document in rbac + reconciler:
        assert validator.errors(document) == [], document["kind"]
    (deployment,) = [d for d in reconciler if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"][:1] == ["reconcile"] and "--watch" in container["args"]


# The shape shortcut of errors_of_rendered: it must give, for every manifest, exactly the
# verdict a full parse and validation gives.
def _rendered(
    tmp_path: Path, template: str, configs: list[str]
) -> tuple[ManifestValidator, list[tuple[str, list[str]]]]:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "job.yaml.j2").write_text(template)
    repo = _kube_repo(tmp_path / "repo", templates=str(templates))
    repo.configs(dict.fromkeys(configs, "ok\n"))
    task = repo.task(exec="echo 'a: b' \"#c\" {{x}} %DATA %IN %OUT")
    (desired,) = expand(validate_paths([], repo.root).specs, [task])
    renderer = ManifestRenderer(desired.cluster)
    manifests = [
        renderer.render_with_values(desired.spec, desired.spec_digest, job) for job in desired.jobs
    ]
    return ManifestValidator(), manifests  # a validator with its own shape cache


def _shape_verdicts(
    tmp_path: Path, template: str, configs: list[str]
) -> tuple[list[list[str]], list[list[str]], ManifestValidator]:
    validator, manifests = _rendered(tmp_path, template, configs)
    fast = [validator.errors_of_rendered(text, values) for text, values in manifests]
    full = [validator.errors(yaml.safe_load(text)) for text, _values in manifests]
    return fast, full, validator


SHIPPED = (Path(__file__).parent.parent / "templates" / "kubernetes" / "job.yaml.j2").read_text()


def test_manifests_of_one_shape_are_checked_once(tmp_path: Path) -> None:
    configs = [f"c{i}.txt" for i in range(30)] + ["it's: {{ 7*7 }} #1.json", 'q"\\uote.txt']
    fast, full, validator = _shape_verdicts(tmp_path, SHIPPED, configs)
    assert fast == full == [[] for _ in configs]
    assert validator.full_checks == 1  # one parse and validation for all 32


def test_a_value_in_an_enum_field_is_checked_per_manifest(tmp_path: Path) -> None:
    """The job name lands in ``kind`` (an enum of the schema): the shape's probe sees that the
    value matters, so the second manifest ("Jobx") is checked in full, not taken on trust."""
    template = SHIPPED.replace(
        "kind: Job", 'kind: {{ annotations["orchestra.io/job-name"] | tojson }}'
    )
    validator, manifests = _rendered(tmp_path, template, ["Job.txt", "Jobx.txt"])
    (text, values), (text_x, values_x) = manifests
    assert validator.errors_of_rendered(text, values) == []
    with pytest.raises(FatalError, match="no Kubernetes schema for batch/v1 Jobx"):
        validator.errors_of_rendered(text_x, values_x)


def test_a_value_outside_tojson_is_checked_per_manifest(tmp_path: Path) -> None:
    """A template that writes a value raw, inside a plain scalar: the cut is not a whole
    double-quoted scalar, so no manifest of that shape is taken on trust."""
    template = SHIPPED.replace(
        "workingDir: {{ working_dir | tojson }}", "workingDir: /x/{{ name }}/{{ name | tojson }}"
    )
    fast, full, validator = _shape_verdicts(tmp_path, template, ["a.txt", "b.txt", "c.txt"])
    assert fast == full
    assert validator.full_checks == 6  # each its own shape (the raw name stays), each in full


def test_the_shortcut_is_off_for_schemas_constraining_strings() -> None:
    from orchestra.backends.k8s_validate import _constrains_strings

    assert not _constrains_strings({"properties": {"pattern": {"type": "string"}}})
    assert not _constrains_strings({"type": "string", "enum": ["a"], "format": "date-time"})
    assert _constrains_strings({"properties": {"x": {"type": "string", "pattern": "^a$"}}})
    assert _constrains_strings({"items": [{"maxLength": 3}]})


class _Job(NamedTuple):
    name: str
    digest: str
    command: str


@settings(max_examples=200, deadline=None)
@given(names=st.lists(st.text(min_size=1), min_size=1, max_size=4), command=st.text())
def test_the_shape_shortcut_agrees_with_a_full_check(
    names: list[str], command: str, validator: ManifestValidator
) -> None:
    """Any name or command (quotes, colons, '#', newlines, braces, unicode): the verdict by
    shape equals the verdict of parsing and validating that manifest."""
    specs = validate_paths([], LPS).specs
    (desired,) = expand(specs, ["user.alice.my_task_tutorial"])
    renderer = ManifestRenderer(desired.cluster)
    for name in names:
        job = _Job(name, "d" * 64, command)
        text, values = renderer.render_with_values(desired.spec, desired.spec_digest, job)
        manifest = yaml.load(text, Loader=yaml.CSafeLoader)
        assert validator.errors_of_rendered(text, values) == validator.errors(manifest)
        (container,) = manifest["spec"]["template"]["spec"]["containers"]
        assert container["command"][2] == command
        assert manifest["metadata"]["annotations"]["orchestra.io/job-name"] == name

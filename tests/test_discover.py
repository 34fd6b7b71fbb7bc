"""Which files are specs, who owns them, and how context from a repository is used."""

from __future__ import annotations

from pathlib import Path

from orchestra.spec.checker import validate_paths
from orchestra.spec.discover import discover
from tests.conftest import DATA

REPO = DATA / "valid" / "repository"


def test_repository_root_reads_cluster_clusters_and_users_only() -> None:
    files, problems = discover(["."], REPO)
    assert problems == []
    assert [f.display for f in files] == [
        "clusters/lps.yaml",
        "users/alice/nested/all.yml",
        "users/bob/datasets.yaml",
    ]
    assert [f.owner for f in files] == [None, "alice", "bob"]


def test_plain_directory_reads_every_yaml_and_yml_but_hidden(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yml").write_text("")
    (tmp_path / "sub" / "c.json").write_text("")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "d.yaml").write_text("")
    files, _ = discover([], tmp_path)
    assert [f.display for f in files] == ["a.yaml", "sub/b.yml"]
    assert all(f.owner is None and f.requested for f in files)


def test_a_file_inside_a_repository_brings_its_repository_as_context() -> None:
    files, _ = discover(["users/alice/nested/all.yml"], REPO)
    requested = [f.display for f in files if f.requested]
    context = [f.display for f in files if not f.requested]
    assert requested == ["users/alice/nested/all.yml"]
    assert context == ["clusters/lps.yaml", "users/bob/datasets.yaml"]
    result = validate_paths(["users/alice/nested/all.yml"], REPO)
    assert result.valid
    assert result.files == 1


def test_context_errors_are_not_reported_but_references_resolve(tmp_path: Path) -> None:
    (tmp_path / "users" / "alice").mkdir(parents=True)
    (tmp_path / "cluster.yaml").write_text(
        "apiVersion: orchestra/v1\nkind: Cluster\nmetadata: {name: c}\n"
        "spec: {backend: local, storage: /x, bogus: 1}\n"
    )
    (tmp_path / "users" / "alice" / "d.yaml").write_text(
        "apiVersion: orchestra/v1\nkind: Dataset\nmetadata: {name: user.alice.d}\nspec: {path: d}\n"
    )
    result = validate_paths(["users/alice/d.yaml"], tmp_path)
    assert result.valid  # cluster.yaml is broken, but it was not asked about
    result = validate_paths([], tmp_path)
    assert [d.format() for d in result.diagnostics] == [
        "cluster.yaml:4:37: $.spec.bogus: unknown field 'bogus' (known fields: backend, "
        "storage, maxParallel, keepAttempts, kubernetes, slurm)"
    ]


def test_storage_problem_of_a_context_cluster_is_reported_at_the_task(tmp_path: Path) -> None:
    (tmp_path / "users" / "alice").mkdir(parents=True)
    (tmp_path / "cluster.yaml").write_text(
        "apiVersion: orchestra/v1\nkind: Cluster\nmetadata: {name: c}\n"
        "spec: {backend: local, storage: /nonexistent/storage}\n"
    )
    (tmp_path / "users" / "alice" / "t.yaml").write_text(
        "apiVersion: orchestra/v1\nkind: Task\nmetadata: {name: user.alice.t}\n"
        "spec:\n  cluster: c\n  image: i\n  data: user.alice.d\n  configs: user.alice.d\n"
        "  output: o\n  exec: '%DATA %IN %OUT'\n---\n"
        "apiVersion: orchestra/v1\nkind: Dataset\nmetadata: {name: user.alice.d}\nspec: {path: d}\n"
    )
    result = validate_paths(["users/alice/t.yaml"], tmp_path)
    assert [d.format() for d in result.diagnostics] == [
        "users/alice/t.yaml:5:12: $.spec.cluster: storage '/nonexistent/storage' of cluster 'c' "
        "is not reachable (no such directory); use --offline to skip storage checks"
    ]
    assert validate_paths(["users/alice/t.yaml"], tmp_path, offline=True).valid


def test_path_outside_the_working_directory_is_shown_absolute(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("kind: Nope\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = validate_paths([str(tmp_path / "x.yaml")], elsewhere)
    assert result.diagnostics[0].file == str(tmp_path / "x.yaml")


def test_symlinked_directories_are_not_followed(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a.yaml").write_text("")
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "link").symlink_to(tmp_path / "real")
    files, _ = discover(["specs"], tmp_path)
    assert files == []


def test_other_yaml_inside_a_repository_is_read_alone(tmp_path: Path) -> None:
    (tmp_path / "users" / "alice").mkdir(parents=True)
    (tmp_path / "cluster.yaml").write_text("kind: Broken\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "example.yaml").write_text(
        "apiVersion: orchestra/v1\nkind: Dataset\nmetadata: {name: user.bob.d}\nspec: {path: d}\n"
    )
    files, _ = discover(["docs/example.yaml"], tmp_path)
    assert [(f.display, f.requested, f.owner) for f in files] == [("docs/example.yaml", True, None)]

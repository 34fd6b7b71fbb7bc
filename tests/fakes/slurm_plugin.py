"""The session's private Slurm cluster as a pytest fixture. Load it as a plugin from a test
module (``pytest_plugins = ["tests.fakes.slurm_plugin"]``): one cluster for the whole session
whichever modules use it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.slurm_cluster import SlurmCluster, unavailable_reason


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """One private cluster for the whole test session; skipped, with the reason, when Slurm
    cannot be installed or run here."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()

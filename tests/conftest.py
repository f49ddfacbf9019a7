"""Shared pytest configuration: the neural-tangents marker skips cleanly where it does not import,
and a session-wide embedded dask cluster for the tests that need one."""
from __future__ import annotations

import pytest


def _nt_import_error() -> str | None:
    try:
        import neural_tangents  # noqa: F401
    except Exception as exc:  # ImportError on jax >= 0.6 (jax.core.Jaxpr removed), or no tensorflow
        return f"{type(exc).__name__}: {exc}"
    return None


def pytest_collection_modifyitems(config, items):
    nt_items = [item for item in items if "nt" in item.keywords]
    if not nt_items:
        return
    err = _nt_import_error()
    if err is None:
        return
    skip = pytest.mark.skip(
        reason=f"neural-tangents does not import here ({err[:160]}); it needs jax<=0.5.3, tf2jax==0.3.6 "
        f"and tensorflow: pip install -e '.[nt]'"
    )
    for item in nt_items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def dask_client():
    """One embedded LocalCluster (2 worker processes) for the whole session."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()

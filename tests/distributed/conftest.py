"""A 2-worker Dask LocalCluster (processes, one thread each) shared by the scale-out tests."""

import pytest


@pytest.fixture(scope="session")
def dask_test_client():
    from landseg.distributed.cluster import dask_client

    with dask_client(workers=2) as client:
        yield client

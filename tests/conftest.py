"""Fixtures shared by every test: the local control plane, SecantusDB, a namespace and a database per test.

The cluster and the Mongo server start once per session, lazily: a run of unit tests starts neither. A test that
uses any of them is marked `integration` automatically, so `make test-unit` deselects it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from pymongo.database import Database

from syncjob import names
from syncjob.model import SyncJobSpec
from testbed.cluster import LocalCluster
from testbed.mongo import MongoServer
from testbed.procs import wait_until

INTEGRATION_FIXTURES = {"cluster", "k8s", "namespace", "mongo_server", "mongo_db", "mongo_client", "syncjob_crd"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    c = LocalCluster()
    try:
        c.start()
        yield c
    finally:
        if os.environ.get("KEEP_TESTBED"):
            c.stop()
            print(f"\nKept the test bed's files in {c.workdir}")
        else:
            c.cleanup()


@pytest.fixture(scope="session")
def k8s(cluster: LocalCluster) -> client.ApiClient:
    """An admin API client for the local cluster."""
    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


@pytest.fixture
def namespace(k8s: client.ApiClient) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(k8s)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="session")
def mongo_server() -> Iterator[MongoServer]:
    server = MongoServer()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def mongo_client(mongo_server: MongoServer) -> Iterator[Any]:
    c = mongo_server.client()
    yield c
    c.close()


@pytest.fixture
def mongo_db(mongo_client: Any) -> Iterator[Database[Any]]:
    """A fresh, empty database for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield mongo_client[name]
    mongo_client.drop_database(name)


CRD_FILE = Path(__file__).resolve().parents[1] / "crds" / "syncjobs.sync.tradingagents.io.yaml"


@pytest.fixture(scope="session")
def syncjob_crd(cluster: LocalCluster) -> str:
    """The SyncJob CRD, installed from crds/ and Established."""
    cluster.kubectl("apply", "--server-side", "-f", str(CRD_FILE))
    # kubectl wait fails at once ("status.conditions accessor error") when it reads the CRD before the API server
    # has written any condition: poll until it succeeds.
    wait_until(lambda: cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                                       f"crd/{names.CRD_NAME}") is not None, 60, "the CRD to be Established")
    return names.CRD_NAME


def make_syncjob(name: str, **spec: Any) -> dict[str, Any]:
    """A SyncJob manifest with sensible defaults for tests; the spec is validated by the shared model."""
    body = {"task": "quotes", "schedule": "*/5 9-15 * * 1-5", "sources": ["file"], **spec}
    validated = SyncJobSpec.model_validate(body).model_dump(mode="json", by_alias=True, exclude_none=True)
    return {"apiVersion": names.API_VERSION, "kind": names.KIND, "metadata": {"name": name}, "spec": validated}

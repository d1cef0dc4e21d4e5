"""An authenticating SecantusDB for the security tests, with the roles and users of `syncjob.mongo_users`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database

from syncjob import mongo, mongo_users
from syncjob.mongo_users import ROLES
from testbed.mongo import MongoServer


@pytest.fixture(scope="session")
def auth_server() -> Iterator[MongoServer]:
    with MongoServer(auth=True) as s:  # started, and removed with its files at the end
        yield s


@pytest.fixture(scope="session")
def root(auth_server: MongoServer) -> Iterator[MongoClient[Any]]:
    c: MongoClient[Any] = MongoClient(auth_server.uri, serverSelectionTimeoutMS=5000, tz_aware=True)
    with c:
        yield c


PASSWORDS = {c: f"{c}-{uuid.uuid4().hex}" for c in ROLES}


@pytest.fixture
def dbname(root: MongoClient[Any]) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    mongo_users.apply(root[name], PASSWORDS)
    yield name
    root.drop_database(name)


def uri(server: MongoServer, dbname: str, component: str) -> str:
    return server.uri_as(ROLES[component].user, PASSWORDS[component], dbname)


def connect(server: MongoServer, dbname: str, component: str) -> Database[Any]:
    return mongo.connect(uri(server, dbname, component), app=f"test-{component}", timeout_ms=5000)


def assert_allowed_by_mongodb(component: str, commands: list[dict[str, Any]], dbname: str) -> None:
    """Every command on the application database is one the role allows by MongoDB's rule; none elsewhere."""
    role = ROLES[component]
    assert commands, "nothing was recorded"
    for entry in commands:
        cmd = entry["command"]
        name = next(iter(cmd))
        if name in mongo_users.NO_PRIVILEGE:
            continue
        assert entry["db"] == dbname, entry
        assert mongo_users.allows_command(role, cmd), f"{component} issued {cmd}: not in role {role.role}"


@pytest.fixture
def server(auth_server: MongoServer) -> MongoServer:
    return auth_server

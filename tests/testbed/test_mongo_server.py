"""The MongoDB-protocol server of the test bed behaves like MongoDB where this project relies on it."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from syncjob import mongo


def test_unique_index_rejects_a_duplicate_key(mongo_db: Database[Any]) -> None:
    mongo.ensure_indexes(mongo_db, mongo.DATA_COLLECTIONS)
    daily = mongo_db[mongo.STOCK_DAILY_QUOTES]
    row = {"symbol": "600000.SH", "trade_date": "2024-05-28", "data_source": "file", "period": "daily"}
    daily.insert_one(dict(row, close=8.46))
    with pytest.raises(DuplicateKeyError):
        daily.insert_one(dict(row, close=9.0))
    assert daily.count_documents({}) == 1


def test_scheduler_indexes_include_ttl_for_retention(mongo_db: Database[Any]) -> None:
    mongo.ensure_indexes(mongo_db, mongo.SCHEDULER_COLLECTIONS, retention_days=7)
    info = mongo_db[mongo.EXECUTIONS].index_information()
    ttl = [i for i in info.values() if "expireAfterSeconds" in i]
    assert [i["expireAfterSeconds"] for i in ttl] == [7 * 86400]
    mongo.ensure_indexes(mongo_db, mongo.SCHEDULER_COLLECTIONS, retention_days=7)  # idempotent
    assert mongo_db[mongo.EXECUTIONS].index_information() == info


def test_changing_retention_updates_the_ttl_of_existing_indexes(mongo_db: Database[Any]) -> None:
    mongo.ensure_indexes(mongo_db, mongo.SCHEDULER_COLLECTIONS, retention_days=180)
    mongo.ensure_indexes(mongo_db, mongo.SCHEDULER_COLLECTIONS, retention_days=30)
    for collection in (mongo.EXECUTIONS, mongo.HISTORY):
        ttl = [i["expireAfterSeconds"] for i in mongo_db[collection].index_information().values()
               if "expireAfterSeconds" in i]
        assert ttl == [30 * 86400]


@pytest.mark.integration
def test_an_authenticating_server_keeps_auth_and_users_across_a_restart() -> None:
    from pymongo import MongoClient
    from pymongo.errors import OperationFailure

    from testbed.mongo import MongoServer

    with MongoServer(auth=True) as server:
        root: MongoClient[Any] = server.client()
        with root:
            root["app"].command("createUser", "u", pwd="p", roles=[{"role": "readWrite", "db": "app"}])
        server.stop()
        server.start()  # the storage's root user is reused, --auth stays on
        anonymous: MongoClient[Any] = MongoClient(f"mongodb://{server.host}/?directConnection=true",
                                                  serverSelectionTimeoutMS=3000)
        with anonymous, pytest.raises(OperationFailure) as refused:
            anonymous["app"]["c"].find_one()
        assert refused.value.code == 13
        user: MongoClient[Any] = MongoClient(server.uri_as("u", "p", "app"), serverSelectionTimeoutMS=3000)
        with user:
            user["app"]["c"].insert_one({"x": 1})
        with server.client() as again:
            assert again["app"]["c"].count_documents({}) == 1

"""The components' MongoDB roles (syncjob.mongo_users), judged by MongoDB's documented privilege semantics.

No server: these hold on a real MongoDB, where a privilege on `{db, collection}` grants its actions on that one
collection. SecantusDB does not check the collection (tests/security/test_mongo_auth.py says where it differs).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from syncjob import mongo, mongo_users
from syncjob.mongo_users import ROLES

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "manifests" / "mongodb" / "syncjob-users.js"

# (component, action, collection) that must be refused.
COLLECTION_DENIALS = [
    ("sync", "insert", mongo.HISTORY), ("sync", "update", mongo.HISTORY),
    ("sync", "insert", mongo.METADATA), ("sync", "update", mongo.METADATA),
    ("sync", "insert", mongo.EXECUTION_TOMBSTONES),
    ("api", "insert", mongo.EXECUTIONS),
    ("api", "insert", mongo.STOCK_DAILY_QUOTES), ("api", "update", mongo.MARKET_QUOTES),
    ("api", "insert", mongo.DATA_SOURCE_STATUS),
    ("operator", "insert", mongo.STOCK_DAILY_QUOTES), ("operator", "update", mongo.STOCK_BASIC_INFO),
    ("operator", "insert", mongo.METADATA), ("operator", "insert", mongo.EXECUTION_TOMBSTONES),
]
DESTRUCTIVE = {"dropCollection", "dropDatabase", "dropIndex", "renameCollectionSameDB", "createUser", "dropUser",
               "createRole", "dropRole", "grantRole", "revokeRole", "changeOwnPassword", "bypassDocumentValidation",
               "changeStream", "anyAction"}


def test_the_manifests_script_is_rendered_from_the_roles() -> None:
    assert SCRIPT.read_text() == mongo_users.render_js(), "run `make mongo-users`"


def test_the_docs_table_is_rendered_from_the_roles() -> None:
    text = (ROOT / "docs" / "security.md").read_text()
    table = text.split("<!-- roles -->\n")[1].split("<!-- /roles -->")[0]
    assert table == mongo_users.render_table(), "paste `python -m syncjob.mongo_users table` into docs/security.md"


@pytest.mark.parametrize(("component", "action", "collection"), COLLECTION_DENIALS, ids=str)
def test_collection_denials_by_mongodb_semantics(component: str, action: str, collection: str) -> None:
    assert not mongo_users.allows(ROLES[component], action, collection)


def test_sync_pods_write_their_records_and_market_data_and_nothing_else() -> None:
    sync = ROLES["sync"]
    writable = {c for c, actions in sync.collections.items() if {"insert", "update"} & set(actions)}
    data = {s.name for s in mongo.DATA_COLLECTIONS} | {mongo_users.SOURCE_QUOTAS}
    assert writable == {mongo.EXECUTIONS, mongo.RUN_SLOTS} | data
    assert mongo.HISTORY not in sync.collections and mongo.METADATA not in sync.collections
    assert sync.collections[mongo.EXECUTION_TOMBSTONES] == ("find", "killCursors")
    assert not any("remove" in actions or "collMod" in actions for actions in sync.collections.values())
    assert not sync.database_actions


def test_api_and_operator_have_no_market_data() -> None:
    data = {s.name for s in mongo.DATA_COLLECTIONS} | {mongo_users.SOURCE_QUOTAS}
    for component in ("api", "operator"):
        assert not data & set(ROLES[component].collections), component
    assert set(ROLES["api"].collections) == set(ROLES["operator"].collections) == {
        s.name for s in mongo.SCHEDULER_COLLECTIONS}
    assert not {"find", "insert", "update"} & set(ROLES["operator"].collections[mongo.METADATA])


def test_no_role_can_drop_rename_or_manage_users() -> None:
    for role in ROLES.values():
        for collection, actions in role.collections.items():
            assert not DESTRUCTIVE & set(actions), (role.role, collection)
        assert set(role.database_actions) <= {"listCollections"}, role.role


def test_every_component_can_create_the_indexes_it_ensures() -> None:
    """What `mongo.ensure_indexes` issues: createIndexes everywhere, listIndexes and collMod for TTL ones."""
    checks = [("sync", mongo.DATA_COLLECTIONS), ("operator", mongo.SCHEDULER_COLLECTIONS),
              ("api", mongo.SCHEDULER_COLLECTIONS)]
    for component, specs in checks:
        role = ROLES[component]
        for spec in specs:
            assert mongo_users.allows_command(role, {"createIndexes": spec.name}), (component, spec.name)
            if spec.ttl_field:
                assert mongo_users.allows_command(role, {"listIndexes": spec.name})
                assert mongo_users.allows_command(role, {"collMod": spec.name})
                assert mongo_users.allows_command(role, {"listCollections": 1})


def test_an_upsert_needs_insert_too() -> None:
    update = {"update": mongo.HISTORY, "updates": [{"upsert": True}]}
    assert mongo_users.required_actions(update) == (mongo.HISTORY, ("update", "insert"))
    assert not mongo_users.allows_command(ROLES["api"], {"update": mongo.EXECUTIONS, "updates": [{"upsert": True}]})
    assert mongo_users.allows_command(ROLES["api"], {"update": mongo.EXECUTIONS, "updates": [{"upsert": False}]})
    with pytest.raises(ValueError, match="no privilege rule"):
        mongo_users.required_actions({"renameCollection": "a.b"})
    with pytest.raises(ValueError, match="other collections"):
        mongo_users.required_actions({"aggregate": mongo.EXECUTIONS, "stages": ["$match", "$lookup"]})
    assert mongo_users.required_actions({"aggregate": mongo.EXECUTIONS, "stages": ["$match", "$group"]}) == (
        mongo.EXECUTIONS, ("find",))


def test_privileges_name_one_collection_each_in_the_given_database() -> None:
    for role in ROLES.values():
        privileges = role.privileges("db1")
        assert all(p["resource"]["db"] == "db1" for p in privileges)
        named = [p["resource"]["collection"] for p in privileges if p["resource"]["collection"]]
        assert sorted(named) == sorted(role.collections)
        assert [p for p in privileges if p["resource"]["collection"] == ""] == (
            [{"resource": {"db": "db1", "collection": ""}, "actions": ["listCollections"]}]
            if role.database_actions else [])


def test_uri_quotes_the_password() -> None:
    assert mongo_users.uri("h:1", "sync", "p@ss/word", "tradingagents") == (
        "mongodb://syncjob-sync:p%40ss%2Fword@h:1/tradingagents")


COMPONENT_CODE = {"operator": ROOT / "operator" / "syncjob_operator", "api": ROOT / "api" / "syncjob_api",
                  "sync": ROOT / "sync_image"}


@pytest.mark.parametrize("component", list(COMPONENT_CODE))
def test_every_collection_a_component_names_is_in_its_role(component: str) -> None:
    """A component that starts using another collection (by `mongo.NAME` or by name) needs it in its role."""
    import re

    by_constant = {name: getattr(mongo, name) for name in dir(mongo)
                   if name.isupper() and isinstance(getattr(mongo, name), str) and getattr(mongo, name) != "" and
                   name not in {"DEFAULT_DATABASE"}}
    groups = {"SCHEDULER_COLLECTIONS": [s.name for s in mongo.SCHEDULER_COLLECTIONS],
              "DATA_COLLECTIONS": [s.name for s in mongo.DATA_COLLECTIONS]}
    known = set(by_constant.values()) | {mongo_users.SOURCE_QUOTAS}
    named: set[str] = set()
    for path in COMPONENT_CODE[component].rglob("*.py"):
        text = path.read_text()
        for constant in re.findall(r"\bmongo\.([A-Z_]+)\b", text):
            named.update(groups.get(constant, [by_constant[constant]] if constant in by_constant else []))
        named.update(c for c in known if f'"{c}"' in text)
    assert named, component
    assert named <= set(ROLES[component].collections), named - set(ROLES[component].collections)

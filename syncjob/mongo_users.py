"""Least-privilege MongoDB users: one custom role and one user per component, defined once (docs/security.md).

The operator, the API and the sync pods each connect as their own user, with a role that lists, per collection,
the actions that component's code issues and nothing more. This module is the one definition:

- `ROLES` is the table (collection -> actions, per component);
- `apply()` creates or updates the roles and users on any MongoDB-protocol server (the test bed's SecantusDB, your
  MongoDB), idempotently: `python -m syncjob.mongo_users apply --uri ROOT_URI` with the passwords in the
  environment;
- `render_js()` renders the same table into the mongosh script `manifests/mongodb/syncjob-users.js`, which the
  bundled MongoDB runs at its first start (`python -m syncjob.mongo_users js`; a test fails if the file differs);
- `allows()` answers, by MongoDB's documented privilege semantics (a resource `{db, collection}` names exactly one
  collection), whether a role permits an action on a collection. The tests use it where SecantusDB is coarser than
  MongoDB (it matches a privilege's database and ignores its collection).

Roles and users live in the application database (the URI's path), so a component's URI needs no `authSource`.
MongoDB's privileges are per collection, never per document: a sync pod may update any execution record, not only
its own run's. What it cannot do is write `scheduler_history` or `scheduler_metadata`, delete anything, drop or
alter a collection, touch another database, or manage users and roles.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pymongo import MongoClient
from pymongo.database import Database

from syncjob import mongo

# The shared per-source rate-limit counters of the sync pods (being added next to the market-data collections).
SOURCE_QUOTAS = mongo.SOURCE_QUOTAS

READ = ("find", "killCursors")
WRITE = ("insert", "update")  # an upsert needs both
# What `mongo.ensure_indexes` issues: createIndexes (which creates a missing collection) and, for a collection with a
# TTL index, listIndexes and collMod (a changed retention). listCollections is a database action (`DATABASE_ACTIONS`).
INDEXES = ("createCollection", "createIndex")
RETENTION = ("listIndexes", "collMod")

SCHEDULER = {spec.name: spec for spec in mongo.SCHEDULER_COLLECTIONS}
MARKET_DATA = (*(spec.name for spec in mongo.DATA_COLLECTIONS), SOURCE_QUOTAS)


def _scheduler_indexes(name: str) -> tuple[str, ...]:
    """The index actions `ensure_indexes` needs on a scheduler collection (TTL ones also get retention updates)."""
    return INDEXES + (RETENTION if SCHEDULER[name].ttl_field else ())


@dataclass(frozen=True)
class ComponentRole:
    component: str
    user: str
    role: str
    password_env: str
    collections: Mapping[str, tuple[str, ...]]
    database_actions: tuple[str, ...] = ()

    def privileges(self, database: str) -> list[dict[str, Any]]:
        """The role's privileges as MongoDB's createRole takes them."""
        privileges: list[dict[str, Any]] = [
            {"resource": {"db": database, "collection": name}, "actions": sorted(set(actions))}
            for name, actions in sorted(self.collections.items())
        ]
        if self.database_actions:
            privileges.append({"resource": {"db": database, "collection": ""},
                               "actions": sorted(set(self.database_actions))})
        return privileges


def _roles() -> dict[str, ComponentRole]:
    ex, hist, meta = mongo.EXECUTIONS, mongo.HISTORY, mongo.METADATA
    tomb, slots = mongo.EXECUTION_TOMBSTONES, mongo.RUN_SLOTS
    sync = ComponentRole(
        "sync", "syncjob-sync", "syncjobSync", "SYNCJOB_SYNC_PASSWORD",
        {
            ex: READ + WRITE,                 # its run's record: open, attempts, progress, heartbeat, verdict
            tomb: READ,                       # was its record deleted by an admin?
            slots: READ + WRITE,              # concurrencyPolicy Forbid: claim and release the run slot
            **{name: READ + WRITE + INDEXES for name in MARKET_DATA},  # upserts; indexes at start-up
        },
    )
    operator = ComponentRole(
        "operator", "syncjob-operator", "syncjobOperator", "SYNCJOB_OPERATOR_PASSWORD",
        {
            ex: READ + WRITE + ("remove",) + _scheduler_indexes(ex),  # records; remove: the schema migration
            hist: WRITE + _scheduler_indexes(hist),                  # audit entries (written, never read)
            meta: _scheduler_indexes(meta),                           # indexes only: it never reads or writes it
            tomb: READ + _scheduler_indexes(tomb),
            slots: ("update", *_scheduler_indexes(slots)),          # closing a record releases its slot
        },
        database_actions=("listCollections",),
    )
    api = ComponentRole(
        "api", "syncjob-api", "syncjobApi", "SYNCJOB_API_PASSWORD",
        {
            # serve; the cancel flag, mark-failed, delete (it never creates a record: the operator and pods do)
            ex: (*READ, "update", "remove", *_scheduler_indexes(ex)),
            hist: READ + WRITE + _scheduler_indexes(hist),            # serve; audit entries
            meta: READ + WRITE + _scheduler_indexes(meta),            # serve; PUT metadata (an upsert)
            tomb: (*WRITE, "remove", *_scheduler_indexes(tomb)),    # delete: a tombstone, undone if running
            slots: ("update", *_scheduler_indexes(slots)),          # mark-failed closes a record: frees its slot
        },
        database_actions=("listCollections",),
    )
    return {r.component: r for r in (operator, api, sync)}


ROLES = _roles()

# The documented action each command needs (MongoDB "Privilege Actions"); how `allows_command` judges a command.
_COMMAND_ACTIONS = {
    "find": ("find",), "count": ("find",), "distinct": ("find",), "aggregate": ("find",),
    "insert": ("insert",), "update": ("update",), "delete": ("remove",), "findAndModify": ("find", "update"),
    "createIndexes": ("createIndex",), "listIndexes": ("listIndexes",), "collMod": ("collMod",),
    "killCursors": ("killCursors",), "drop": ("dropCollection",), "create": ("createCollection",),
    "dropIndexes": ("dropIndex",),
}
DATABASE_ACTIONS = {"listCollections": ("listCollections",), "dropDatabase": ("dropDatabase",),
                    "createUser": ("createUser",), "createRole": ("createRole",), "dropUser": ("dropUser",),
                    "updateUser": ("changeOwnPassword", "grantRole"), "grantRolesToUser": ("grantRole",)}
# Pipeline stages that read or write another collection, each needing its own privilege there.
_OTHER_NAMESPACE_STAGES = frozenset({"$lookup", "$graphLookup", "$unionWith", "$out", "$merge"})
# Commands that need no privilege (handshake, authentication, liveness, sessions, cursor continuation).
NO_PRIVILEGE = frozenset({"hello", "isMaster", "ismaster", "ping", "buildInfo", "buildinfo", "saslStart",
                          "saslContinue", "endSessions", "getMore", "logout", "connectionStatus"})


def allows(role: ComponentRole, action: str, collection: str | None) -> bool:
    """MongoDB's rule: a privilege on `{db, collection: C}` grants its actions on C only; `collection: ""` is the
    database resource (database actions such as listCollections). The database is the role's own."""
    if collection is None:
        return action in role.database_actions
    return action in role.collections.get(collection, ())


def required_actions(command: Mapping[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    """(collection or None for a database action, the actions MongoDB requires) of one command document (for an
    aggregate, `stages` lists its stages' names)."""
    name = next(iter(command))
    if name in NO_PRIVILEGE:
        return None, ()
    if name in DATABASE_ACTIONS:
        return None, DATABASE_ACTIONS[name]
    if name not in _COMMAND_ACTIONS:
        raise ValueError(f"no privilege rule for command {name!r}")
    actions = _COMMAND_ACTIONS[name]
    upsert = (name == "update" and any(u.get("upsert") for u in command.get("updates", ()))) or (
        name == "findAndModify" and command.get("upsert"))
    if upsert:
        actions = (*actions, "insert")
    if name == "findAndModify" and command.get("remove"):
        actions = ("find", "remove")
    other_namespaces = _OTHER_NAMESPACE_STAGES & set(command.get("stages", ()))
    if name == "aggregate" and other_namespaces:
        raise ValueError(f"aggregate with {sorted(other_namespaces)}: reads or writes other collections")
    collection = command[name]
    if not isinstance(collection, str):
        raise ValueError(f"{name} on {collection!r}: a database-wide form no component uses")
    return collection, actions


def allows_command(role: ComponentRole, command: Mapping[str, Any]) -> bool:
    collection, actions = required_actions(command)
    return all(allows(role, a, collection) for a in actions)


# -- creating the roles and users -----------------------------------------------------------------------------

def _exists(db: Database[Any], kind: str, name: str) -> bool:
    key = {"role": "roles", "user": "users"}[kind]
    found = db.command(f"{kind}sInfo", name)
    return bool(found.get(key))


def apply(db: Database[Any], passwords: Mapping[str, str], components: tuple[str, ...] = tuple(ROLES)) -> None:
    """Create or update each component's role and user in `db` (needs userAdmin on it, e.g. root)."""
    for component in components:
        spec = ROLES[component]
        privileges = spec.privileges(db.name)
        if _exists(db, "role", spec.role):
            db.command("updateRole", spec.role, privileges=privileges, roles=[])
        else:
            db.command("createRole", spec.role, privileges=privileges, roles=[])
        roles = [{"role": spec.role, "db": db.name}]
        if _exists(db, "user", spec.user):
            db.command("updateUser", spec.user, pwd=passwords[component], roles=roles)
        else:
            db.command("createUser", spec.user, pwd=passwords[component], roles=roles)


def uri(host: str, component: str, password: str, database: str = mongo.DEFAULT_DATABASE,
        options: str = "") -> str:
    """The MONGO_URI of a component's user (`host` is host:port; `options` e.g. `directConnection=true`)."""
    user = ROLES[component].user
    query = f"?{options}" if options else ""
    return f"mongodb://{quote(user, safe='')}:{quote(password, safe='')}@{host}/{database}{query}"


# -- the mongosh script -----------------------------------------------------------------------------------------

_JS_BODY = """\
const dbName = process.env.SYNCJOB_DATABASE || "tradingagents";
const target = db.getSiblingDB(dbName);
for (const spec of COMPONENTS) {
  const privileges = Object.entries(spec.collections).map(
    ([collection, actions]) => ({resource: {db: dbName, collection: collection}, actions: actions}));
  if (spec.databaseActions.length > 0) {
    privileges.push({resource: {db: dbName, collection: ""}, actions: spec.databaseActions});
  }
  if (target.getRole(spec.role) === null) {
    target.createRole({role: spec.role, privileges: privileges, roles: []});
  } else {
    target.updateRole(spec.role, {privileges: privileges, roles: []});
  }
  const pwd = process.env[spec.passwordEnv];
  if (!pwd) {
    throw new Error(spec.passwordEnv + " is not set: the " + spec.component + "'s MongoDB password");
  }
  const roles = [{role: spec.role, db: dbName}];
  if (target.getUser(spec.user) === null) {
    target.createUser({user: spec.user, pwd: pwd, roles: roles});
  } else {
    target.updateUser(spec.user, {pwd: pwd, roles: roles});
  }
  print("syncjob: role " + spec.role + " and user " + spec.user + " in " + dbName);
}
"""


def render_js() -> str:
    lines = []
    for r in ROLES.values():
        head = {"component": r.component, "user": r.user, "role": r.role, "passwordEnv": r.password_env,
                "databaseActions": sorted(set(r.database_actions))}
        lines.append("  {" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in head.items()) + ",")
        lines.append("   collections: {")
        lines.extend(f"     {json.dumps(name)}: {json.dumps(sorted(set(actions)))},"
                     for name, actions in sorted(r.collections.items()))
        lines.append("   }},")
    return (
        "// The syncjob components' MongoDB roles and users (docs/security.md). Generated from\n"
        "// syncjob/mongo_users.py by `make mongo-users` (python -m syncjob.mongo_users js); do not edit: a test\n"
        "// compares them. Idempotent: creates or updates each role and user. The official mongo image runs it as\n"
        "// root at first start; run it again as root after changing a password or upgrading (docs/security.md).\n"
        "// Env: SYNCJOB_DATABASE (default tradingagents), SYNCJOB_OPERATOR_PASSWORD, SYNCJOB_API_PASSWORD,\n"
        "// SYNCJOB_SYNC_PASSWORD.\n"
        "const COMPONENTS = [\n" + "\n".join(lines) + "\n];\n"
        + _JS_BODY
    )


def render_table() -> str:
    """The rights as a Markdown table (docs/security.md embeds it; a test compares)."""
    components = list(ROLES.values())
    collections = sorted({c for r in components for c in r.collections},
                         key=lambda c: (c not in SCHEDULER, c))
    rows = ["| collection | " + " | ".join(f"{r.component} (`{r.user}`)" for r in components) + " |",
            "|---|" + "---|" * len(components)]
    for name in collections:
        cells = [", ".join(sorted(set(r.collections.get(name, ())))) or "—" for r in components]
        rows.append(f"| `{name}` | " + " | ".join(cells) + " |")
    rows.append("| the database (`collection: \"\"`) | "
                + " | ".join(", ".join(r.database_actions) or "—" for r in components) + " |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m syncjob.mongo_users", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("js", help="print the mongosh script of manifests/mongodb")
    sub.add_parser("table", help="print the rights as the Markdown table of docs/security.md")
    do = sub.add_parser("apply", help="create or update the roles and users (passwords from SYNCJOB_*_PASSWORD)")
    do.add_argument("--uri", required=True, help="a URI of a user who may manage users and roles (e.g. root)")
    do.add_argument("--database", default=os.environ.get("SYNCJOB_DATABASE", mongo.DEFAULT_DATABASE))
    args = parser.parse_args(argv)
    if args.command in ("js", "table"):
        sys.stdout.write(render_js() if args.command == "js" else render_table())
        return 0
    missing = [r.password_env for r in ROLES.values() if not os.environ.get(r.password_env)]
    if missing:
        parser.error(f"set {', '.join(missing)}")
    passwords = {c: os.environ[r.password_env] for c, r in ROLES.items()}
    client: MongoClient[dict[str, Any]] = MongoClient(args.uri, serverSelectionTimeoutMS=10000)
    with client:
        apply(client[args.database], passwords)
    for r in ROLES.values():
        print(f"role {r.role} and user {r.user} in {args.database}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

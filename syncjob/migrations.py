"""Start-up migrations of records written by earlier versions (docs/mongodb.md, "Schema versions").

Schema 1 (before run ids carried their namespace) keyed a record by its Job name alone and stored execution_time
in milliseconds. Schema 2 keys it `<namespace>.<job>` and stores seconds, as the incumbent's readers expect. The
operator runs `migrate` at start-up; it is idempotent and safe to interrupt (the new document is written before
the old one is removed, and a re-run finds whatever is left). The incumbent's own records (ObjectId ids, no
namespace, seconds already) are left as they are.

scheduler_metadata was keyed by job name alone (a unique index on `job_id`), so two namespaces' admins rewrote
each other's display names. It is now keyed by (namespace, job_id), and its documents need no rewrite: ours already
carry their namespace, and the incumbent's (no namespace) stay as they are and apply as a fallback only to jobs
with no document of their own namespace. Only the old unique index must go, and dropping an index is a
destructive action no component's MongoDB role has: `migrate_metadata` drops it when it is in the way (the API
calls it when a metadata write hits it; MongoDB without roles, as in the test bed, lets it), and otherwise says
what an administrator has to drop. It is idempotent.
"""

from __future__ import annotations

import logging
from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, OperationFailure

from syncjob import mongo
from syncjob.executions import SCHEMA_VERSION
from syncjob.runs import run_id

log = logging.getLogger(__name__)


_OLD_METADATA_KEY = [("job_id", 1)]


class MigrationRefused(Exception):
    """MongoDB refused a migration step this process has no privilege for; the message says what to do by hand."""


def migrate_metadata(db: Database[Any]) -> bool:
    """Drop scheduler_metadata's old unique index on `job_id` alone; True if this call dropped it, False if there
    is none. MigrationRefused when MongoDB refuses to list or drop the index (a role without listIndexes and
    dropIndex on the collection)."""
    coll = db[mongo.METADATA]
    try:
        indexes = coll.index_information()
    except OperationFailure as exc:
        if exc.code == 26:  # NamespaceNotFound: no collection, no index
            return False
        raise MigrationRefused(_refused(exc)) from exc
    for name, info in indexes.items():
        if info.get("unique") and [(k, int(d)) for k, d in info.get("key", [])] == _OLD_METADATA_KEY:
            try:
                coll.drop_index(name)
            except OperationFailure as exc:
                if exc.code == 27:  # IndexNotFound: another process dropped it first
                    return False
                raise MigrationRefused(_refused(exc)) from exc
            log.info("Dropped index %s of %s: metadata is now keyed by namespace and job", name, mongo.METADATA)
            return True
    return False


def _refused(exc: OperationFailure) -> str:
    return (f"MongoDB refused to drop the previous version's unique index on {mongo.METADATA}.job_id "
            f"({exc.code}: {exc.details.get('errmsg') if exc.details else exc}); as an administrator, run "
            f"db.{mongo.METADATA}.dropIndex('job_id_1')")


def _less_telling(existing: dict[str, Any], migrated: dict[str, Any]) -> bool:
    """Whether a schema-2 record found under the new id says less than the old record: a `running` record made for
    a run the old one already closed, or a missed/skipped record the scan wrote before it could see the old one."""
    if existing.get("schema_version") == SCHEMA_VERSION and existing.get("k8s_job") == migrated.get("k8s_job") \
            and existing.get("started_at") is None and existing.get("status") in ("missed", "skipped"):
        return True
    return existing.get("status") == "running" and migrated.get("status") not in (None, "running")


def migrate(db: Database[Any], batch: int = 500) -> int:
    """Bring schema-1 execution records to schema 2; returns how many were migrated."""
    coll = db[mongo.EXECUTIONS]
    query = {"schema_version": {"$exists": False}, "namespace": {"$type": "string"}, "_id": {"$type": "string"}}
    moved = 0
    while True:
        docs = list(coll.find(query).limit(batch))
        if not docs:
            break
        for doc in docs:
            old_id = doc.pop("_id")
            doc["_id"] = run_id(doc["namespace"], old_id)
            doc["k8s_job"] = old_id
            doc["schema_version"] = SCHEMA_VERSION
            if isinstance(doc.get("execution_time"), int | float) and not isinstance(doc["execution_time"], bool):
                doc["execution_time"] = round(doc["execution_time"] / 1000.0, 3)
            try:
                coll.insert_one(doc)
            except DuplicateKeyError:  # an interrupted earlier migration, or a writer of the new version, came first
                existing = coll.find_one({"_id": doc["_id"]}) or {}
                if _less_telling(existing, doc):
                    coll.replace_one({"_id": doc["_id"]}, doc)
            coll.delete_one({"_id": old_id})
            moved += 1
    if moved:
        log.info("Migrated %d execution records to schema %d", moved, SCHEMA_VERSION)
    return moved

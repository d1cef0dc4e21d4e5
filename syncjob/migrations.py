"""Start-up migration of execution records written by earlier versions (docs/mongodb.md, "Schema versions").

Schema 1 (before run ids carried their namespace) keyed a record by its Job name alone and stored execution_time
in milliseconds. Schema 2 keys it `<namespace>.<job>` and stores seconds, as the incumbent's readers expect. The
operator runs `migrate` at start-up; it is idempotent and safe to interrupt (the new document is written before
the old one is removed, and a re-run finds whatever is left). The incumbent's own records (ObjectId ids, no
namespace, seconds already) are left as they are.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from syncjob import mongo
from syncjob.executions import SCHEMA_VERSION
from syncjob.runs import run_id

log = logging.getLogger(__name__)


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
            with contextlib.suppress(DuplicateKeyError):  # an interrupted earlier migration wrote it already
                coll.insert_one(doc)
            coll.delete_one({"_id": old_id})
            moved += 1
    if moved:
        log.info("Migrated %d execution records to schema %d", moved, SCHEMA_VERSION)
    return moved

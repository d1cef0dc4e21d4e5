"""The audit trail (scheduler_history): every mutation through the API, allowed, failed or denied, is one entry.

Entries are written by `syncjob.audit.write`, the one writer the operator uses too, so API and operator entries
share one schema: job_id, namespace, action, status (success | failed | denied, or pending), user, via ("api"; the
operator writes "kubectl" for tokens set with kubectl), target (job or execution id), details, error_message,
timestamp. A mutation's entry is written `pending` before the change and given its outcome after it, so an API
process that dies in between leaves the entry pending rather than no entry. An audit write that fails (MongoDB
down) after the change is logged and never hides the answer the caller is owed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException
from pymongo.database import Database
from pymongo.errors import PyMongoError

from syncjob import audit as syncjob_audit
from syncjob import mongo
from syncjob_api import models
from syncjob_api.core.errors import Unavailable, describe_kube
from syncjob_api.core.timefmt import from_incumbent, render, zone

log = logging.getLogger(__name__)

VIA = "api"


def write(db: Database[dict[str, Any]], *, job_id: str | None, namespace: str | None, action: str, status: str,
          user: str, target: str | None, details: dict[str, Any] | None = None,
          error_message: str | None = None) -> None:
    try:
        syncjob_audit.write(db, job_id=job_id, namespace=namespace, action=action, status=status, user=user, via=VIA,
                            target=target, details=details, error_message=error_message)
    except PyMongoError as exc:
        log.error("Failed to record %s %s by %s on %s in the audit trail: %s", action, status, user, target, exc)


@dataclass
class Audit:
    """What an audited block learns as it goes (the canonical job id, the namespace, details)."""

    job_id: str | None
    target: str
    namespace: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, HTTPException):
        return str(exc.detail)
    if isinstance(exc, Unavailable):
        return str(exc)
    if isinstance(exc, PyMongoError):
        return f"MongoDB error: {type(exc).__name__}"
    module = type(exc).__module__
    if module.startswith(("kubernetes", "urllib3")):
        return describe_kube(exc)
    return f"internal error: {type(exc).__name__}"


@contextmanager
def audited(db: Database[dict[str, Any]], *, action: models.Action, user: str, target: str,
            job_id: str | None) -> Iterator[Audit]:
    """Run a mutation and record its outcome: success, or failed with the reason the caller was given.

    A mutation that could not be audited is not made: its entry is written (`pending`) before the block runs, and
    a MongoDB that refuses it is the API's 503. The entry gets its namespace only from the block, once the target
    is found (never from what the caller named: a request must not plant entries in a namespace it cannot see).
    """
    audit = Audit(job_id=job_id, target=target)
    key = syncjob_audit.begin(db, job_id=job_id, namespace=None, action=action.value, user=user, via=VIA,
                              target=target)
    try:
        yield audit
    except BaseException as exc:
        _finish(db, key, audit, action, user, "failed", _reason(exc))
        raise
    _finish(db, key, audit, action, user, "success", None)


def _finish(db: Database[dict[str, Any]], key: str, audit: Audit, action: models.Action, user: str, status: str,
            error_message: str | None) -> None:
    try:
        syncjob_audit.finish(db, key, status=status, job_id=audit.job_id, namespace=audit.namespace,
                             target=audit.target, details=audit.details, error_message=error_message)
    except PyMongoError as exc:  # the entry stays pending, which is what is known
        log.error("Failed to record %s %s by %s on %s in the audit trail: %s", action.value, status, user,
                  audit.target, exc)


def to_entry(doc: dict[str, Any], tz_name: str) -> models.HistoryEntry:
    tz = zone(tz_name)
    details = doc.get("details")
    return models.HistoryEntry(
        id=str(doc.get("_id")), job_id=_str(doc.get("job_id")), namespace=_str(doc.get("namespace")),
        action=_str(doc.get("action")), status=_str(doc.get("status")), user=_str(doc.get("user")),
        via=_str(doc.get("via")), target=_str(doc.get("target")),
        details=details if isinstance(details, dict) else None,
        error_message=_str(doc.get("error_message")), timestamp=render(_timestamp(doc), tz),
    )


def _timestamp(doc: dict[str, Any]) -> Any:
    """The entry's time; the incumbent's entries (no `via`) hold naive UTC+8 times."""
    value = doc.get("timestamp")
    return value if "via" in doc else from_incumbent(value)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def page(db: Database[dict[str, Any]], query: dict[str, Any], limit: int, offset: int,
         tz_name: str) -> models.HistoryPage:
    coll = db[mongo.HISTORY]
    docs = list(coll.find(query).sort("timestamp", -1).skip(offset).limit(limit))
    total = coll.count_documents(query)
    return models.HistoryPage(history=[to_entry(d, tz_name) for d in docs], total=total, limit=limit, offset=offset)

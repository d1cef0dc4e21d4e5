"""/api/scheduler/history: the audit trail of every job the caller may see, filterable by job, namespace, status
and action."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from syncjob_api import models
from syncjob_api.api import responses
from syncjob_api.api.deps import Ctx, CurrentUser, Limit200, MongoDep, NamespaceFilter, Offset, scoped
from syncjob_api.models import Envelope
from syncjob_api.services import audit
from syncjob_api.services.jobs import normalise, stored_ids

router = APIRouter(prefix="/history", tags=["history"])


@router.get("", response_model=Envelope[models.HistoryPage], responses=responses.READ, summary="Action history")
def list_history(
    user: CurrentUser, ctx: Ctx, db: MongoDep,
    job_id: Annotated[str | None, Query(pattern=models.JOB_ID_PATTERN, max_length=models.JOB_ID_MAX,
                                        description="Only this job's entries.")] = None,
    namespace: NamespaceFilter = None,
    status: Annotated[models.HistoryStatusFilter | None, Query(
        description="success, failed, denied or pending (its API process stopped before the outcome).")] = None,
    action: Annotated[models.Action | None, Query(description="Only this action.")] = None,
    limit: Limit200 = 50,
    offset: Offset = 0,
) -> Envelope[models.HistoryPage]:
    """Audited actions on every job in the namespaces the caller may list, newest first (API requests, and the
    operator's handling of kubectl tokens)."""
    query: dict[str, Any] = scoped(user.scope, namespace)
    if job_id:
        ids = stored_ids(normalise(job_id))
        query["job_id"] = ids[0] if len(ids) == 1 else {"$in": ids}
    if status is not None:
        query["status"] = status.value
    if action is not None:
        query["action"] = action.value
    data = audit.page(db, query, limit, offset, ctx.settings.default_time_zone)
    return Envelope[models.HistoryPage](data=data, message=f"获取到 {len(data.history)} 条操作记录")

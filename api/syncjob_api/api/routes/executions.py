"""/api/scheduler/executions: the execution records of every job, and the three record mutations (admin only):
cancel a running run, mark a running run failed (stopping its pod), delete a finished record.

Each mutation writes the record through `syncjob.executions`, the state machine every writer shares: the cancel flag
(`request_cancel`), the failed verdict (`close` as Writer.API) and the deletion that leaves a tombstone
(`delete_finished`), so the operator never recreates a record an admin deleted while its Job still exists.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from kubernetes.client.exceptions import ApiException

from syncjob import names
from syncjob.executions import Writer, close, delete_finished, request_cancel
from syncjob.model import ExecutionStatus
from syncjob_api import models
from syncjob_api.api import responses
from syncjob_api.api.deps import (
    AdminUser,
    Ctx,
    CurrentUser,
    ExecutionIdPath,
    Limit200,
    MongoDep,
    NamespaceFilter,
    Offset,
    audited_action,
    scoped,
)
from syncjob_api.core.errors import describe_kube
from syncjob_api.models import Envelope
from syncjob_api.services import audit, executions, kubeops
from syncjob_api.services.jobs import normalise, stored_ids

log = logging.getLogger(__name__)
router = APIRouter(prefix="/executions", tags=["executions"])

JobIdQuery = Annotated[str | None, Query(
    pattern=models.JOB_ID_PATTERN, max_length=models.JOB_ID_MAX,
    description="Only this job's runs (SyncJob name or the incumbent's underscore id).",
)]


@router.get("", response_model=Envelope[models.ExecutionPage], responses=responses.READ,
            summary="List executions")
def list_executions(
    user: CurrentUser, ctx: Ctx, db: MongoDep, job_id: JobIdQuery = None, namespace: NamespaceFilter = None,
    status: Annotated[models.ExecutionStatusFilter | None, Query(description="Only runs in this status.")] = None,
    is_manual: Annotated[bool | None, Query(description="true: manual runs only; false: scheduled only.")] = None,
    limit: Limit200 = 50,
    offset: Offset = 0,
) -> Envelope[models.ExecutionPage]:
    """Execution records of every job in the namespaces the caller may list (records outlive their SyncJob until
    the retention expires), newest first. `job_id` without `namespace` gives that job name's records in every
    namespace the caller sees (each record names its namespace)."""
    ids = stored_ids(normalise(job_id)) if job_id else None
    query = executions.build_query(ids, scoped(user.scope, namespace), status, is_manual)
    data = executions.page(db, query, limit, offset, ctx.tz_for)
    return Envelope[models.ExecutionPage](data=data, message=f"获取到 {len(data.items)} 条执行记录")


@router.post("/{execution_id}/cancel", response_model=Envelope[models.CancelResult], responses=responses.MUTATE,
             summary="Cancel a running execution", openapi_extra=audited_action(models.Action.CANCEL))
def cancel_execution(user: AdminUser, ctx: Ctx, db: MongoDep,
                     execution_id: ExecutionIdPath) -> Envelope[models.CancelResult]:
    """Admin. Flags the record (the pod stops cooperatively) and sets a cancel-at token scoped to this run on its
    SyncJob (the operator deletes the Job if the pod does not stop within the grace period). 409 when the run had
    already finished, naming its status."""
    with audit.audited(db, action=models.Action.CANCEL, user=user.user, target=execution_id, job_id=None) as a:
        doc = executions.find(db, execution_id)
        run_id = str(doc["_id"])
        job_name = doc.get("job_id") if isinstance(doc.get("job_id"), str) else None
        namespace = doc.get("namespace") if isinstance(doc.get("namespace"), str) else None
        a.job_id, a.namespace = job_name, namespace
        executions.require_running(doc, execution_id, "cancel")
        if not request_cancel(db, [doc["_id"]], user.user):  # it finished between the read and the flag
            executions.require_running(executions.find(db, execution_id), execution_id, "cancel")
            raise HTTPException(409, f"Cannot cancel execution {execution_id}: it is no longer running")
        token: str | None = None
        if job_name and namespace:
            token = kubeops.new_token()
            a.details = {"token": token, "run_id": run_id}
            annotations = {names.CANCEL_AT: token, names.CANCEL_RUNS: f"{token}={run_id}",
                           names.CANCEL_REQUESTED_BY: user.user}
            try:
                patched = kubeops.patch_syncjob(ctx.kube, namespace, job_name,
                                                {"metadata": {"annotations": annotations}})
                ctx.cache.observe(patched)
            except HTTPException as exc:
                if exc.status_code != 404:
                    raise
                token = None  # the SyncJob is gone: the flag on the record is all there is to set
                a.details = {"run_id": run_id, "syncjob": "not found"}
    log.info("Requested cancellation of run %s of SyncJob %s/%s (token %s, by %s)", run_id, namespace, job_name,
             token, user.user)
    return Envelope[models.CancelResult](
        data=models.CancelResult(execution_id=run_id, job_id=job_name, cancel_requested=True, token=token),
        message="已设置取消标记，任务将在下次检查时停止",  # noqa: RUF001 (the seed's message)
    )


@router.post("/{execution_id}/mark-failed", response_model=Envelope[models.MarkFailedResult],
             responses=responses.MUTATE, summary="Mark a running execution failed",
             openapi_extra=audited_action(models.Action.MARK_FAILED))
def mark_failed(
    user: AdminUser, ctx: Ctx, db: MongoDep, execution_id: ExecutionIdPath,
    reason: Annotated[str, Query(min_length=1, max_length=500, description="Why; stored as the error message.")]
    = "用户手动标记为失败",
) -> Envelope[models.MarkFailedResult]:
    """Admin. Closes a running record as failed (reason MarkedFailed, the given reason as its error message); when
    its Job still has a Pending or Running pod, deletes that Job so the pod stops (the pod also stops on its own when
    it notices that its record was closed). Finished records keep their verdict (409)."""
    with audit.audited(db, action=models.Action.MARK_FAILED, user=user.user, target=execution_id, job_id=None) as a:
        doc = executions.find(db, execution_id)
        run_id = str(doc["_id"])
        a.job_id = doc.get("job_id") if isinstance(doc.get("job_id"), str) else None
        namespace = doc.get("namespace") if isinstance(doc.get("namespace"), str) else None
        a.namespace = namespace
        a.details = {"reason": reason}
        executions.require_running(doc, execution_id, "mark failed")
        job_name = executions.k8s_job_name(doc)
        alive = kubeops.live_pods(ctx.kube, namespace, job_name) if namespace and job_name else []
        # The verdict first: a Job deleted before it would let the operator close the record with its own.
        if not close(db, doc["_id"], ExecutionStatus.FAILED, Writer.API, reason="MarkedFailed",
                     error_message=reason, marked_failed_by=user.user,
                     stopped_pods=alive):  # another writer's verdict came first
            executions.require_running(executions.find(db, execution_id), execution_id, "mark failed")
            raise HTTPException(409, f"Cannot mark execution {execution_id} failed: it is no longer running")
        stopped = ""
        if namespace and job_name:
            # Also with no pod alive: a Job waiting out a retry's back-off would start another pod.
            a.details = {"reason": reason, "stopped_pods": alive, "deleted_job": job_name}
            try:
                kubeops.delete_job(ctx.kube, namespace, job_name)
                stopped = (f"; deleted Job {job_name} to stop its pod ({', '.join(alive)})" if alive
                           else f"; deleted Job {job_name}, so that no retry starts")
            except ApiException as exc:  # the record says failed; the pod stops when it notices
                a.details["delete_error"] = describe_kube(exc)
                stopped = (f"; could not delete Job {job_name} ({describe_kube(exc)}): its pod stops when it "
                           "notices the closed record")
    log.info("Marked run %s failed (by %s): %s%s", run_id, user.user, reason, stopped)
    return Envelope[models.MarkFailedResult](
        data=models.MarkFailedResult(execution_id=run_id, status=ExecutionStatus.FAILED.value, reason=reason,
                                     stopped_pods=alive),
        message="已标记为失败状态" + stopped,
    )


@router.delete("/{execution_id}", response_model=Envelope[models.DeleteResult], responses=responses.MUTATE,
               summary="Delete a finished execution record", openapi_extra=audited_action(models.Action.DELETE))
def delete_execution(user: AdminUser, db: MongoDep,
                     execution_id: ExecutionIdPath) -> Envelope[models.DeleteResult]:
    """Admin. Deletes a record that is not running (409 for a running one: cancel or mark it failed first). A
    tombstone keeps every writer from recreating it while its Job still exists."""
    with audit.audited(db, action=models.Action.DELETE, user=user.user, target=execution_id, job_id=None) as a:
        doc = executions.find(db, execution_id)
        a.job_id = doc.get("job_id") if isinstance(doc.get("job_id"), str) else None
        a.namespace = doc.get("namespace") if isinstance(doc.get("namespace"), str) else None
        a.details = {"status": doc.get("status")}
        if doc.get("status") == ExecutionStatus.RUNNING.value:
            raise HTTPException(409, f"Cannot delete execution {execution_id}: it is running")
        if not delete_finished(db, doc["_id"], user.user):
            raise HTTPException(409, f"Cannot delete execution {execution_id}: it changed meanwhile")
    log.info("Deleted execution record %s (by %s)", execution_id, user.user)
    return Envelope[models.DeleteResult](data=models.DeleteResult(execution_id=str(doc["_id"]), deleted=True),
                                         message="执行记录已删除")

"""/api/scheduler/jobs: the job list and detail (from the SyncJob cache), pause, resume, trigger, metadata, and
each job's action history, executions and execution stats (from MongoDB)."""

from __future__ import annotations

import json
import logging
from contextlib import AbstractContextManager
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import Response
from pymongo.errors import DuplicateKeyError

from syncjob import migrations, mongo
from syncjob.runs import manual_job_name
from syncjob_api import models
from syncjob_api.api import responses
from syncjob_api.api.deps import (
    AdminUser,
    Ctx,
    CurrentUser,
    JobDep,
    JobIdPath,
    Limit100,
    Limit200,
    MongoDep,
    NamespaceQuery,
    Offset,
    audited_action,
)
from syncjob_api.core.errors import Unavailable
from syncjob_api.core.timefmt import now_iso, render, utcnow
from syncjob_api.models import Envelope
from syncjob_api.services import audit, executions, kubeops, trigger
from syncjob_api.services.access import Principal
from syncjob_api.services.jobs import JobEntry, detail, stored_ids

log = logging.getLogger(__name__)
router = APIRouter(prefix="/jobs", tags=["jobs"])


def _job_query(ctx: Ctx, user: Principal, job: JobEntry) -> tuple[list[str], list[str | None]]:
    """job_id values of a job's records in MongoDB, and the namespaces they may have: the job's, and none (the
    incumbent's records) when the caller sees those and no other namespace has a job of this name."""
    shared = len(ctx.cache.lookup(job.name)) > 1
    spaces: list[str | None] = [job.namespace]
    if user.sees_legacy and not shared:
        spaces.append(None)
    return stored_ids(job.name), spaces


def _audited(ctx: Ctx, action: models.Action, user: str, target: str) -> AbstractContextManager[audit.Audit]:
    return audit.audited(ctx.db, action=action, user=user, target=target, job_id=target)


@router.get("", response_model=Envelope[list[models.JobPublic]], responses=responses.READ,
            summary="List jobs")
def list_jobs(user: CurrentUser, ctx: Ctx) -> Response:
    """Every SyncJob in the watched namespaces that the caller may list, from the watch-fed cache (no Kubernetes API
    call)."""
    ctx.entries()  # 503 until the cache has loaded
    version, entries = ctx.cache.snapshot()
    meta_version, meta = ctx.metadata.snapshot()
    data, count = ctx.job_list.get(entries, version, meta, meta_version, user.scope.key)
    head = json.dumps({"success": True, "message": f"获取到 {count} 个定时任务", "timestamp": now_iso()},
                      ensure_ascii=False).encode()
    return Response(head[:-1] + b', "data": ' + data + b"}", media_type="application/json")


@router.get("/{job_id}", response_model=Envelope[models.JobDetail], responses=responses.READ_ONE,
            summary="Get a job")
def get_job(user: CurrentUser, ctx: Ctx, job: JobDep) -> Envelope[models.JobDetail]:
    """The job with the rest of its spec and its status."""
    return Envelope[models.JobDetail](data=detail(job, ctx.metadata.for_job(job.namespace, job.name)),
                                      message=f"获取任务 {job.name} 详情成功")


def _set_paused(ctx: Ctx, user: AdminUser, job_id: str, namespace: str | None, paused: bool,
                action: models.Action) -> Envelope[models.PauseResult]:
    with _audited(ctx, action, user.user, job_id) as a:
        job = user.job(job_id, namespace)
        a.job_id, a.target, a.namespace = job.name, job.name, job.namespace
        a.details = {"paused": paused, "was_paused": job.job.spec.paused}
        patched = kubeops.patch_syncjob(ctx.kube, job.namespace, job.name, {"spec": {"paused": paused}})
        ctx.cache.observe(patched)
    log.info("Patched SyncJob %s/%s: paused=%s (by %s)", job.namespace, job.name, paused, user.user)
    verb = "已暂停" if paused else "已恢复"
    return Envelope[models.PauseResult](data=models.PauseResult(job_id=job.name, namespace=job.namespace,
                                                                 paused=paused), message=f"任务 {job.name} {verb}")


@router.post("/{job_id}/pause", response_model=Envelope[models.PauseResult], responses=responses.MUTATE,
             summary="Pause a job", openapi_extra=audited_action(models.Action.PAUSE))
def pause_job(user: AdminUser, ctx: Ctx, job_id: JobIdPath,
              namespace: NamespaceQuery = None) -> Envelope[models.PauseResult]:
    """Admin. Sets spec.paused=true: scheduled runs stop (running runs and manual triggers are not affected)."""
    return _set_paused(ctx, user, job_id, namespace, True, models.Action.PAUSE)


@router.post("/{job_id}/resume", response_model=Envelope[models.PauseResult], responses=responses.MUTATE,
             summary="Resume a job", openapi_extra=audited_action(models.Action.RESUME))
def resume_job(user: AdminUser, ctx: Ctx, job_id: JobIdPath,
               namespace: NamespaceQuery = None) -> Envelope[models.PauseResult]:
    """Admin. Sets spec.paused=false."""
    return _set_paused(ctx, user, job_id, namespace, False, models.Action.RESUME)


@router.post("/{job_id}/trigger", response_model=Envelope[models.TriggerResult], responses=responses.MUTATE,
             summary="Trigger a run now", openapi_extra=audited_action(models.Action.TRIGGER))
def trigger_job(
    user: AdminUser, ctx: Ctx, job_id: JobIdPath, namespace: NamespaceQuery = None,
    force: Annotated[bool, Query(description="This run skips the trading-hours check (later runs do not).")] = False,
) -> Envelope[models.TriggerResult]:
    """Admin. Requests one run: sets a new requested-at token (and force-at, when forced) on the SyncJob, or joins
    the run already requested and not yet started (`joined: true`); the operator starts one Job per token. 422 when
    the spec is invalid; 409 under concurrencyPolicy Forbid while a run is active, and for a forced request while an
    unforced one is pending. The answer names the run id, and whether the Job existed within a few seconds."""
    with _audited(ctx, models.Action.TRIGGER, user.user, job_id) as a:
        job = user.job(job_id, namespace)
        a.job_id, a.target, a.namespace = job.name, job.name, job.namespace
        a.details = {"force": force}
        req = trigger.request_run(ctx.kube, ctx.db, job.namespace, job.name, user.user, force,
                                  ctx.settings.trigger_force_wait_seconds)
        ctx.cache.observe(req.syncjob)
        a.details = {"token": req.token, "run_id": req.run_id, "force": req.force, "joined": req.joined}
        log.info("%s run %s of SyncJob %s/%s (token %s%s, by %s)", "Joined" if req.joined else "Requested",
                 req.run_id, job.namespace, job.name, req.token, ", forced" if req.force else "", user.user)
        created = kubeops.wait_for_job(ctx.kube, job.namespace, manual_job_name(job.name, req.token),
                                       ctx.settings.trigger_wait_seconds)
        a.details["job_created"] = created
    if req.joined:
        message = (f"任务 {job.name} 已有待执行的触发请求: this request joined run {req.run_id}, which was already "
                   "requested and not yet started; no second run was requested")
    else:
        message = f"任务 {job.name} 已触发执行"
    if req.force:
        message += "（强制模式）"  # noqa: RUF001 (the seed's message)
    if not created:
        message += f"; the operator has not created Job {manual_job_name(job.name, req.token)} yet"
    return Envelope[models.TriggerResult](
        data=models.TriggerResult(job_id=job.name, namespace=job.namespace, token=req.token, run_id=req.run_id,
                                  force=req.force, joined=req.joined, job_created=created),
        message=message,
    )


@router.put("/{job_id}/metadata", response_model=Envelope[models.JobMetadataPublic], responses=responses.MUTATE,
            summary="Set a job's display name and description", openapi_extra=audited_action(models.Action.METADATA))
def update_metadata(
    user: AdminUser, ctx: Ctx, db: MongoDep, job_id: JobIdPath, body: Annotated[models.JobMetadataUpdate, Body()],
    namespace: NamespaceQuery = None,
) -> Envelope[models.JobMetadataPublic]:
    """Admin. Writes scheduler_metadata; a field left out is unchanged, null removes the override."""
    with _audited(ctx, models.Action.METADATA, user.user, job_id) as a:
        job = user.job(job_id, namespace)
        a.job_id, a.target, a.namespace = job.name, job.name, job.namespace
        changes: dict[str, str | None] = {
            k: getattr(body, k) for k in ("display_name", "description") if k in body.model_fields_set
        }
        a.details = dict(changes)
        now = utcnow()
        stored = _store_metadata(db, job, {**changes, "updated_by": user.user, "updated_at": now})
        ctx.metadata.invalidate()
    return Envelope[models.JobMetadataPublic](
        data=models.JobMetadataPublic(
            job_id=job.name, namespace=job.namespace, display_name=stored.get("display_name"),
            description=stored.get("description"), updated_by=user.user, updated_at=render(now, job.tz) or "",
        ),
        message=f"任务 {job.name} 元数据已更新",
    )


def _store_metadata(db: MongoDep, job: JobEntry, values: dict[str, Any]) -> dict[str, Any]:
    """Upsert the job's document of its namespace. A duplicate key means the previous version's unique index on
    job_id alone is still there (another namespace has a document of this name): it is dropped and the write made
    again, or 503 saying what an administrator has to drop when MongoDB does not let the API drop it."""
    for attempt in range(3):
        try:
            stored = db[mongo.METADATA].find_one_and_update(
                {"namespace": job.namespace, "job_id": job.name},
                {"$set": values, "$setOnInsert": {"namespace": job.namespace, "job_id": job.name}},
                upsert=True, return_document=True, projection={"_id": 0},
            )
            return stored or {}
        except DuplicateKeyError:
            if attempt:  # two upserts raced under the new key; the retry updates the winner's document
                continue
            try:
                migrations.migrate_metadata(db)
            except migrations.MigrationRefused as exc:
                raise Unavailable(str(exc)) from exc
    raise Unavailable(f"could not write {mongo.METADATA} for {job.namespace}/{job.name}: duplicate key")


@router.get("/{job_id}/history", response_model=Envelope[models.HistoryPage], responses=responses.READ_ONE,
            summary="A job's action history")
def job_history(user: CurrentUser, ctx: Ctx, db: MongoDep, job: JobDep, limit: Limit100 = 20,
                offset: Offset = 0) -> Envelope[models.HistoryPage]:
    """Audited actions on this job (pause, resume, trigger, metadata, cancel, mark-failed, delete), newest first."""
    ids, spaces = _job_query(ctx, user, job)
    query: dict[str, object] = {"job_id": ids[0] if len(ids) == 1 else {"$in": ids}, "namespace": {"$in": spaces}}
    data = audit.page(db, query, limit, offset, job.job.spec.time_zone)
    return Envelope[models.HistoryPage](data=data, message=f"获取到 {len(data.history)} 条操作记录")


@router.get("/{job_id}/executions", response_model=Envelope[models.ExecutionPage], responses=responses.READ_ONE,
            summary="A job's executions")
def job_executions(
    user: CurrentUser, ctx: Ctx, db: MongoDep, job: JobDep,
    status: Annotated[models.ExecutionStatusFilter | None, Query(description="Only runs in this status.")] = None,
    is_manual: Annotated[bool | None, Query(description="true: manual runs only; false: scheduled only.")] = None,
    limit: Limit200 = 50, offset: Offset = 0,
) -> Envelope[models.ExecutionPage]:
    """This job's execution records, newest first."""
    ids, spaces = _job_query(ctx, user, job)
    query = executions.build_query(ids, {"namespace": {"$in": spaces}}, status, is_manual)
    data = executions.page(db, query, limit, offset, ctx.tz_for)
    return Envelope[models.ExecutionPage](data=data, message=f"获取到 {len(data.items)} 条执行记录")


@router.get("/{job_id}/execution-stats", response_model=Envelope[models.ExecutionStats],
            responses=responses.READ_ONE, summary="A job's execution statistics")
def job_execution_stats(user: CurrentUser, ctx: Ctx, db: MongoDep, job: JobDep) -> Envelope[models.ExecutionStats]:
    """Counts by status, mean, median and 95th percentile duration of successful runs, success rate, last run."""
    ids, spaces = _job_query(ctx, user, job)
    data = executions.stats(db, ids, {"namespace": {"$in": spaces}}, job.tz)
    return Envelope[models.ExecutionStats](data=data, message="获取执行统计成功")

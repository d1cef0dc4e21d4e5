"""/api/scheduler/stats and /health: the seed's scheduler overview, with honest meanings."""

from __future__ import annotations

from fastapi import APIRouter

from syncjob.model import ExecutionStatus
from syncjob_api import models
from syncjob_api.api import responses
from syncjob_api.api.deps import Ctx, CurrentUser, MongoDep
from syncjob_api.models import Envelope
from syncjob_api.services import executions, health

router = APIRouter(tags=["system"])


@router.get("/stats", response_model=Envelope[models.SchedulerStats], responses=responses.READ,
            summary="Scheduler statistics")
def stats(user: CurrentUser, ctx: Ctx, db: MongoDep) -> Envelope[models.SchedulerStats]:
    """Job counts from the SyncJob cache, runs in progress from MongoDB, the operator's liveness from its Lease, all
    over the namespaces the caller may list. running_jobs keeps the seed's meaning: jobs whose schedule is active
    (not paused)."""
    scope = user.scope
    entries = scope.entries(ctx.entries())
    paused = sum(1 for e in entries if e.job.spec.paused)
    running_now = executions.collection(db).count_documents({**scope.query(),
                                                             "status": ExecutionStatus.RUNNING.value})
    operator = ctx.operator_state()
    data = models.SchedulerStats(
        total_jobs=len(entries), running_jobs=len(entries) - paused, paused_jobs=paused,
        executions_running=running_now, scheduler_running=operator.alive, scheduler_state=1 if operator.alive else 0,
    )
    return Envelope[models.SchedulerStats](data=data, message="获取统计信息成功")


@router.get("/health", response_model=Envelope[models.Health], responses=responses.READ, summary="Health check")
def get_health(user: CurrentUser, ctx: Ctx) -> Envelope[models.Health]:
    """Checks the Kubernetes API, MongoDB, the operator (Lease renewed within the limit) and the SyncJob cache, and
    names the components that are down. Answers 200 whatever it finds: the body says what is wrong."""
    ctx.store.ensure_indexes()  # an API started while MongoDB was down gets its indexes once it is back
    data = health.health(ctx.kube, ctx.db, ctx.cache, ctx.settings.operator_namespace,
                         ctx.settings.operator_lease_max_age_seconds, ctx.settings.default_time_zone)
    data.components.cache.jobs = len(user.scope.entries(ctx.cache.entries()))  # only the jobs the caller sees
    message = "调度器运行正常" if not data.down else f"Down: {', '.join(data.down)}"
    return Envelope[models.Health](data=data, message=message)

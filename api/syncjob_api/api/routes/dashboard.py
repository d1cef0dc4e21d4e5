"""The web dashboard: its page and built assets (/dashboard/), and the reads it needs beyond the seed's endpoints
(/api/scheduler/dashboard/*): who the caller is, one filtered page of the job table with each job's recent runs,
a job's schedule ahead and durations, one run's whole record.

The page itself is public (it holds no data); every read it makes carries the bearer token the user signed in with,
and every action it offers calls the existing REST endpoints, so a viewer's forged request meets the same 403.
The assets are built from web/ by Vite (`make web`) into web/static/dist; DASHBOARD_DIR points elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from syncjob_api import dashboard_models as dm
from syncjob_api.api import responses
from syncjob_api.api.deps import (
    Credentials,
    Ctx,
    CurrentUser,
    ExecutionIdPath,
    JobDep,
    MongoDep,
    Offset,
)
from syncjob_api.core.security import Role
from syncjob_api.models import Envelope
from syncjob_api.services import dashboard, executions

DIST = Path(os.environ.get("DASHBOARD_DIR") or Path(__file__).resolve().parents[2] / "web" / "static" / "dist")

router = APIRouter(prefix="/dashboard", tags=["dashboard"])


@router.get("/me", response_model=Envelope[dm.Me], responses=responses.READ, summary="Who the signed-in user is")
def me(user: CurrentUser, ctx: Ctx, credentials: Credentials) -> Envelope[dm.Me]:
    """The caller's name and role: `admin` when it may patch SyncJobs in some namespace it sees, else `viewer`.
    The page shows action controls to admins only; the API refuses a mutation outside the caller's rights either way
    (403, checked in the target's namespace)."""
    role = Role.ADMIN if user.may_patch_somewhere() else Role.VIEWER
    data = dm.Me(user=user.user, role=role.value, auth_mode=ctx.settings.auth_mode.value,
                 time_zone=ctx.settings.default_time_zone)
    return Envelope[dm.Me](data=data, message=f"已登录: {user.user} ({role.value})")


StrFilter = Annotated[str | None, Query(max_length=253, pattern=r"^[A-Za-z0-9_.\-]*$")]


@router.get("/jobs", response_model=Envelope[dm.JobTable], responses=responses.READ,
            summary="One page of the job table")
def job_table(
    user: CurrentUser, ctx: Ctx, db: MongoDep,
    namespace: StrFilter = None, task: StrFilter = None, source: StrFilter = None,
    status: Annotated[str | None, Query(pattern=r"^(success|failed|cancelled|skipped|missed|running|paused|never)$",
                                        description="The last run's status, or running/paused/never.")] = None,
    q: Annotated[str | None, Query(max_length=100, description="Part of the name or display name.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50, offset: Offset = 0,
) -> Envelope[dm.JobTable]:
    """SyncJobs filtered and paged from the cache (by namespace, task, source, last status, name), each with its
    success rate and median successful duration over the last 7 days and its last 20 runs."""
    entries = user.scope.entries(dashboard.refresh(ctx.entries()))  # only the namespaces the caller may list
    meta = {(e.namespace, e.name): ctx.metadata.for_job(e.namespace, e.name) for e in entries}
    chosen = [e for e in entries
              if dashboard.matches(e, meta[(e.namespace, e.name)], namespace, task, source, status, q or None)]
    chosen.sort(key=lambda e: (e.namespace, e.name))
    page = chosen[offset:offset + limit]
    sums = dashboard.summaries(db, page)
    rows = [dashboard.job_row(e, meta[(e.namespace, e.name)], sums[(e.name, e.namespace)]) for e in page]
    data = dm.JobTable.model_validate({"items": rows, "total": len(chosen), "all": len(entries), "limit": limit,
                                       "offset": offset, "facets": dashboard.facets(entries)})
    return Envelope[dm.JobTable](data=data, message=f"获取到 {len(rows)} / {len(chosen)} 个定时任务")


@router.get("/jobs/{job_id}/schedule", response_model=Envelope[dm.JobSchedule], responses=responses.READ_ONE,
            summary="A job's next runs and durations")
def job_schedule(user: CurrentUser, ctx: Ctx, db: MongoDep, job: JobDep) -> Envelope[dm.JobSchedule]:
    """The next 10 scheduled times (job's time zone) and the durations of its last 100 finished runs."""
    data = dm.JobSchedule.model_validate({
        "next_runs": dashboard.upcoming(job), "time_zone": job.job.spec.time_zone,
        "durations": dashboard.durations(db, job, {"namespace": job.namespace})})
    return Envelope[dm.JobSchedule](data=data, message=f"获取任务 {job.name} 调度成功")


@router.get("/runs/{execution_id}", response_model=Envelope[dm.RunDetail], responses=responses.READ_ONE,
            summary="One run's whole record")
def run_detail(user: CurrentUser, ctx: Ctx, db: MongoDep,
               execution_id: ExecutionIdPath) -> Envelope[dm.RunDetail]:
    """Every field of the record: status and reason, trigger, who asked, attempts with their source attempts and
    errors, counts, warnings, error message and traceback."""
    doc = executions.find(db, execution_id)
    if not user.scope.sees(doc.get("namespace") if isinstance(doc.get("namespace"), str) else None):
        raise HTTPException(404, f"Execution {execution_id} not found")  # not in a namespace the caller may list
    if not doc.get("requested_by") and isinstance(doc.get("job_id"), str):
        doc["requested_by"] = dashboard.requester(db, doc)
    return Envelope[dm.RunDetail](data=dm.RunDetail.model_validate(dashboard.run_detail(doc, ctx.tz_for)),
                                  message=f"获取执行记录 {execution_id} 成功")


@router.get("/running", response_model=Envelope[list[dm.RunRow]], responses=responses.READ,
            summary="Running runs (the live feed's polling fallback)")
def running_runs(user: CurrentUser, ctx: Ctx, db: MongoDep) -> Envelope[list[dm.RunRow]]:
    """The running runs the caller may see, newest first, in the live feed's row shape: what the page polls when
    its event stream cannot get through (a proxy that buffers or blocks Server-Sent Events)."""
    rows = [dm.RunRow.model_validate(dashboard.run_row(d, ctx.tz_for))
            for d in dashboard.running(db, dashboard.FEED_LIMIT, user.scope.query())]
    return Envelope[list[dm.RunRow]](data=rows, message=f"获取到 {len(rows)} 个运行中的执行记录")


@router.get("/runs", response_model=Envelope[list[dm.RunRow]], responses=responses.READ,
            summary="Recently finished runs")
def recent_runs(user: CurrentUser, ctx: Ctx, db: MongoDep,
                limit: Annotated[int, Query(ge=1, le=100)] = 30) -> Envelope[list[dm.RunRow]]:
    """The latest finished runs of every job, newest first, as small rows (the live feed's shape)."""
    rows = [dm.RunRow.model_validate(dashboard.run_row(d, ctx.tz_for))
            for d in dashboard.recent_finished(db, limit, user.scope.query())]
    return Envelope[list[dm.RunRow]](data=rows, message="获取最近执行记录成功")


# -- the page ----------------------------------------------------------------------------------------------------

pages = APIRouter(include_in_schema=False)


@pages.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/dashboard/")


@pages.get("/dashboard")
def dashboard_no_slash() -> RedirectResponse:
    return RedirectResponse("/dashboard/")


@pages.get("/dashboard/")
def dashboard_page() -> Response:
    index = DIST / "index.html"
    if not index.is_file():
        raise HTTPException(503, f"The dashboard's assets are not built ({index} missing): run `make web`")
    return FileResponse(index, headers={"Cache-Control": "no-cache"})


def mount_assets(app: Any) -> None:
    """Serve the hashed assets under /dashboard/assets (immutable names: cacheable)."""
    assets = DIST / "assets"
    app.mount("/dashboard/assets", StaticFiles(directory=assets, check_dir=False), name="dashboard-assets")

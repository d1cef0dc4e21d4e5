"""The /api/scheduler router: every resource router under the seed's prefix."""

from __future__ import annotations

from fastapi import APIRouter

from syncjob_api.api.routes import dashboard, executions, history, jobs, stream, system

api_router = APIRouter(prefix="/api/scheduler")
api_router.include_router(jobs.router)
api_router.include_router(executions.router)
api_router.include_router(history.router)
api_router.include_router(system.router)
api_router.include_router(stream.router)
api_router.include_router(dashboard.router)

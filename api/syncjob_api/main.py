"""The app factory and the process entry point (`python -m syncjob_api`, console script `syncjob-api`).

`create_app(settings)` builds one app with its own clients, cache and metrics registry; the lifespan starts the
SyncJob watch and creates the MongoDB indexes, and stops the watch on shutdown.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio.to_thread
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from syncjob import cli
from syncjob_api.api.main import api_router
from syncjob_api.api.routes import dashboard
from syncjob_api.context import AppContext
from syncjob_api.core import errors
from syncjob_api.core.config import Settings
from syncjob_api.metrics import MetricsMiddleware

log = logging.getLogger(__name__)

DESCRIPTION = """\
The scheduler API of syncjob-operator: the seed's `/api/scheduler` endpoints, served from SyncJob custom resources
(a watch-fed cache) and MongoDB. Mutations go through Kubernetes (patch spec.paused, set request tokens) and are
audited in `scheduler_history`. Reads need a viewer, every mutation an admin. Every answer is
`{success, data, message, timestamp}`; errors have `data: null` and the status code that says what happened.
Times are ISO 8601 with an offset, in the job's time zone.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    ctx = AppContext.build(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(ctx.start)
        log.info("Started scheduler API (auth %s, SyncJobs in %s)", settings.auth_mode.value, ctx.cache.scope)
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(ctx.close)
            log.info("Stopped scheduler API")

    app = FastAPI(
        title="syncjob-operator scheduler API", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
        openapi_tags=[
            {"name": "jobs", "description": "SyncJobs as scheduler jobs: list, detail, pause, resume, trigger."},
            {"name": "executions", "description": "Run records in scheduler_executions."},
            {"name": "history", "description": "The audit trail in scheduler_history."},
            {"name": "system", "description": "Statistics and health."},
            {"name": "stream", "description": "Live run progress as Server-Sent Events (a ticket opens a stream)."},
            {"name": "dashboard", "description": "The web dashboard's reads (its page is served at /dashboard/)."},
        ],
    )
    app.state.ctx = ctx
    errors.install(app)
    app.add_middleware(MetricsMiddleware, metrics=ctx.metrics,
                       templates=lambda: [*app.openapi()["paths"], "/metrics", "/healthz", "/readyz", "/docs",
                                          "/openapi.json"])
    app.include_router(api_router)
    app.include_router(dashboard.pages)
    dashboard.mount_assets(app)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        """Liveness: the process answers."""
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        """Readiness: the SyncJob cache has loaded, so reads can be served."""
        if ctx.cache.synced:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "SyncJob cache not synced"}, status_code=503)

    return app


def main(argv: Sequence[str] | None = None) -> None:
    cli.parse("syncjob-api", "The scheduler API of syncjob-operator (/api/scheduler) on uvicorn.", Settings, argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="info",
                proxy_headers=False)

"""Dependencies of the routes, as Annotated aliases: Ctx, MongoDep, CurrentUser (a viewer), AdminUser.

Authentication comes first on every route (before parameters are looked at), then authorization: reads need
`get` on SyncJobs, mutations `patch`. In Kubernetes mode the namespace at stake is the job's (or the execution
record's) when the path names one, else WATCH_NAMESPACE (cluster-wide when empty). A refused mutation is written
to the audit trail as `denied`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pymongo.database import Database
from pymongo.errors import PyMongoError

from syncjob_api import models
from syncjob_api.context import AppContext
from syncjob_api.core.errors import Unavailable
from syncjob_api.core.security import Identity, Role, Verb
from syncjob_api.services import audit, executions
from syncjob_api.services.jobs import JobEntry, resolve

bearer = HTTPBearer(
    auto_error=False, scheme_name="BearerToken",
    description="A static token (AUTH_MODE=static) or a Kubernetes bearer token (AUTH_MODE=kubernetes).",
)

JobIdPath = Annotated[str, Path(
    pattern=models.JOB_ID_PATTERN, max_length=models.JOB_ID_MAX,
    description="The SyncJob name; the incumbent's underscore ids (tushare_quotes_sync) name the same job.",
)]
ExecutionIdPath = Annotated[str, Path(
    pattern=models.EXECUTION_ID_PATTERN, max_length=models.EXECUTION_ID_MAX,
    description="The run id, `<namespace>.<Job name>`; the incumbent's records are found by their ObjectId's hex "
                "form.",
)]
NamespaceQuery = Annotated[str | None, Query(
    pattern=models.NAMESPACE_PATTERN, max_length=models.NAMESPACE_MAX,
    description="Only needed when the job name exists in several watched namespaces.",
)]

MAX_OFFSET = 1_000_000
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Entries to skip (0..1000000).")]
Limit100 = Annotated[int, Query(ge=1, le=100, description="Page size, 1..100.")]
Limit200 = Annotated[int, Query(ge=1, le=200, description="Page size, 1..200.")]

_JOB_ID = re.compile(models.JOB_ID_PATTERN)
_EXECUTION_ID = re.compile(models.EXECUTION_ID_PATTERN)


def get_ctx(request: Request) -> AppContext:
    ctx = request.app.state.ctx
    assert isinstance(ctx, AppContext)
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


def get_db(ctx: Ctx) -> Database[dict[str, Any]]:
    return ctx.db


MongoDep = Annotated[Database[dict[str, Any]], Depends(get_db)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


@dataclass(frozen=True)
class Principal:
    """The caller, with the role this request proved."""

    user: str
    role: Role


@dataclass(frozen=True)
class Target:
    """What a request acts on, as far as can be told before its parameters are validated."""

    namespace: str | None
    job_id: str | None
    target: str | None


def _identity(ctx: AppContext, credentials: HTTPAuthorizationCredentials | None) -> Identity:
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or not credentials.credentials:
        raise HTTPException(401, "Not authenticated: send Authorization: Bearer <token>", headers=challenge)
    identity = ctx.auth.authenticate(credentials.credentials)
    if identity is None:
        raise HTTPException(401, "Invalid or expired token", headers=challenge)
    return identity


def _target(ctx: AppContext, request: Request, lookup_namespace: bool) -> Target:
    home = ctx.settings.watch_namespace or None
    params = request.path_params
    job_id, execution_id = params.get("job_id"), params.get("execution_id")
    if isinstance(job_id, str) and _JOB_ID.match(job_id) and len(job_id) <= models.JOB_ID_MAX:
        namespace = request.query_params.get("namespace")
        try:
            found = [c for c in ctx.candidates(job_id) if namespace in (None, c.namespace)]
        except Unavailable:
            found = []
        if len(found) == 1:
            return Target(found[0].namespace, found[0].name, job_id)
        return Target(home, job_id, job_id)
    if (isinstance(execution_id, str) and _EXECUTION_ID.match(execution_id)
            and len(execution_id) <= models.EXECUTION_ID_MAX):
        if lookup_namespace:
            doc = executions.collection(ctx.db).find_one(executions.id_query(execution_id),
                                                         {"namespace": 1, "job_id": 1})
            if doc is not None:
                ns = doc.get("namespace")
                job = doc.get("job_id")
                return Target(ns if isinstance(ns, str) and ns else home, job if isinstance(job, str) else None,
                              execution_id)
        return Target(home, None, execution_id)
    raw = job_id if isinstance(job_id, str) else execution_id if isinstance(execution_id, str) else None
    return Target(home, None, raw[:120] if raw else None)


def _where(namespace: str | None) -> str:
    return f"in namespace {namespace}" if namespace else "cluster-wide"


def require_viewer(request: Request, ctx: Ctx, credentials: Credentials) -> Principal:
    identity = _identity(ctx, credentials)
    namespace = _target(ctx, request, lookup_namespace=True).namespace if ctx.auth.needs_namespace else None
    if not ctx.auth.allowed(identity, Verb.GET, namespace):
        raise HTTPException(403, f"User {identity.user} may not read SyncJobs {_where(namespace)}")
    return Principal(identity.user, identity.role or Role.VIEWER)


def require_admin(request: Request, ctx: Ctx, credentials: Credentials) -> Principal:
    identity = _identity(ctx, credentials)
    target = _target(ctx, request, lookup_namespace=True) if ctx.auth.needs_namespace else None
    namespace = target.namespace if target is not None else None
    if ctx.auth.allowed(identity, Verb.PATCH, namespace):
        return Principal(identity.user, Role.ADMIN)
    if target is None:  # static mode: look the target up only to name it in the audit entry
        try:
            target = _target(ctx, request, lookup_namespace=True)
        except PyMongoError:
            target = Target(None, None, None)
    route = request.scope.get("route")
    action = (getattr(route, "openapi_extra", None) or {}).get("x-audit-action", "unknown")
    needs = f"patch on SyncJobs {_where(namespace)}" if ctx.auth.needs_namespace else "the admin role"
    message = f"User {identity.user} may not {action}: it needs {needs}"
    audit.write(ctx.db, job_id=target.job_id, namespace=target.namespace, action=action, status="denied",
                user=identity.user, target=target.target, error_message=message)
    raise HTTPException(403, message)


CurrentUser = Annotated[Principal, Depends(require_viewer)]
AdminUser = Annotated[Principal, Depends(require_admin)]


def job_entry(ctx: Ctx, job_id: JobIdPath, namespace: NamespaceQuery = None) -> JobEntry:
    return resolve(ctx.candidates(job_id), job_id, namespace)


JobDep = Annotated[JobEntry, Depends(job_entry)]


def audited_action(action: models.Action) -> dict[str, Any]:
    """openapi_extra of a mutation route: names the action its audit entries record."""
    return {"x-audit-action": action.value}

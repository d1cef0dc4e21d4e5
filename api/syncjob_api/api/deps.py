"""Dependencies of the routes, as Annotated aliases: Ctx, MongoDep, CurrentUser (a viewer), AdminUser, JobDep.

Authentication comes first on every route (before parameters are looked at), then authorization, in both auth
modes the same way (services/access.py): reads return only the namespaces where the caller may `list` SyncJobs,
a mutation needs `patch` in the namespace of the job (or the execution record) it changes. A refused mutation is
written to the audit trail as `denied`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pymongo.database import Database

from syncjob_api import models
from syncjob_api.context import AppContext
from syncjob_api.core.security import Identity, Role, Verb
from syncjob_api.services import audit, executions
from syncjob_api.services.access import Principal, Scope
from syncjob_api.services.jobs import JobEntry

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
NamespaceFilter = Annotated[str | None, Query(
    pattern=models.NAMESPACE_PATTERN, max_length=models.NAMESPACE_MAX,
    description="Only this namespace's entries (among those the caller may list).",
)]

MAX_OFFSET = 1_000_000
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Entries to skip (0..1000000).")]
Limit100 = Annotated[int, Query(ge=1, le=100, description="Page size, 1..100.")]
Limit200 = Annotated[int, Query(ge=1, le=200, description="Page size, 1..200.")]

_JOB_ID = re.compile(models.JOB_ID_PATTERN)
_EXECUTION_ID = re.compile(models.EXECUTION_ID_PATTERN)
_NAMESPACE = re.compile(models.NAMESPACE_PATTERN)


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
class Target:
    """What a mutation acts on, as far as can be told before its parameters are validated."""

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


def _valid(value: Any, pattern: re.Pattern[str], max_length: int) -> str | None:
    return value if isinstance(value, str) and len(value) <= max_length and pattern.match(value) else None


def _target(principal: Principal, request: Request) -> Target | None:
    """The namespace a mutation is decided in: the job's (among those the caller sees) or the record's. None when
    the request names no single SyncJob (unknown, or ambiguous for this caller): the route answers 404 or 409."""
    ctx = principal.ctx
    params = request.path_params
    job_id = _valid(params.get("job_id"), _JOB_ID, models.JOB_ID_MAX)
    if job_id is not None:
        namespace = _valid(request.query_params.get("namespace"), _NAMESPACE, models.NAMESPACE_MAX)
        found = [c for c in ctx.candidates(job_id) if namespace in (None, c.namespace)]
        visible = [c for c in found if principal.may(Verb.LIST, c.namespace)]
        if len(visible) == 1:
            return Target(visible[0].namespace, visible[0].name, job_id)
        if len(found) == 1:  # it exists where the caller may not look: the patch check below refuses
            return Target(found[0].namespace, found[0].name, job_id)
        return None
    execution_id = _valid(params.get("execution_id"), _EXECUTION_ID, models.EXECUTION_ID_MAX)
    if execution_id is not None:
        doc = executions.collection(ctx.db).find_one(executions.id_query(execution_id), {"namespace": 1, "job_id": 1})
        if doc is None:
            return None
        ns, job = doc.get("namespace"), doc.get("job_id")
        return Target(principal.home_of(ns if isinstance(ns, str) else None), job if isinstance(job, str) else None,
                      execution_id)
    return None


def _where(namespace: str | None) -> str:
    return f"in namespace {namespace}" if namespace else "cluster-wide"


def require_viewer(request: Request, ctx: Ctx, credentials: Credentials) -> Principal:
    """Any authenticated caller; a read that names no job needs at least one namespace it may read (a job path is
    checked in the job's namespace when the job is resolved)."""
    principal = Principal(ctx, _identity(ctx, credentials))
    if "job_id" not in request.path_params and principal.scope.empty:
        home = ctx.settings.watch_namespace or None
        where = _where(home) if home else "in any namespace"
        raise HTTPException(403, f"User {principal.user} may not list SyncJobs {where}")
    return principal


def require_admin(request: Request, ctx: Ctx, credentials: Credentials) -> Principal:
    """A caller that may patch SyncJobs in the namespace of what the request changes. A request that names no
    single SyncJob or record goes on to its 404 or 409 only for a caller who may patch somewhere."""
    principal = Principal(ctx, _identity(ctx, credentials), Role.ADMIN)
    target = _target(principal, request)
    if target is not None and principal.may(Verb.PATCH, target.namespace):
        return principal
    if target is None and principal.may_patch_somewhere():
        return principal
    target = target or Target(None, None, _raw_target(request))
    route = request.scope.get("route")
    action = (getattr(route, "openapi_extra", None) or {}).get("x-audit-action", "unknown")
    where = _where(target.namespace) if target.namespace or target.job_id is None else "in its namespace"
    message = f"User {principal.user} may not {action}: it needs patch on SyncJobs {where}"
    audit.write(ctx.db, job_id=target.job_id, namespace=target.namespace, action=action, status="denied",
                user=principal.user, target=target.target, error_message=message)
    raise HTTPException(403, message)


def _raw_target(request: Request) -> str | None:
    raw = request.path_params.get("job_id") or request.path_params.get("execution_id")
    return raw[:120] if isinstance(raw, str) and raw else None


CurrentUser = Annotated[Principal, Depends(require_viewer)]
AdminUser = Annotated[Principal, Depends(require_admin)]


def job_entry(user: CurrentUser, job_id: JobIdPath, namespace: NamespaceQuery = None) -> JobEntry:
    return user.job(job_id, namespace)


JobDep = Annotated[JobEntry, Depends(job_entry)]


def scoped(scope: Scope, namespace: str | None) -> dict[str, Any]:
    """The filter on `namespace` of a list: the caller's scope, narrowed to one namespace when asked (a namespace
    the caller may not list gives nothing)."""
    if namespace is None:
        return scope.query()
    return {"namespace": namespace if scope.sees(namespace) else {"$in": []}}


def audited_action(action: models.Action) -> dict[str, Any]:
    """openapi_extra of a mutation route: names the action its audit entries record."""
    return {"x-audit-action": action.value}

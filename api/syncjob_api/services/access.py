"""What a caller may see and change, namespace by namespace, in both auth modes.

A caller reads a namespace's SyncJobs, records and audit entries when it may `list syncjobs` there, and changes
them when it may `patch syncjobs` there (static mode: its token's role, in the token's namespaces). So:

- With WATCH_NAMESPACE set, a caller sees that namespace or nothing.
- With WATCH_NAMESPACE empty (all namespaces), a caller allowed cluster-wide sees everything; anyone else sees the
  namespaces it is allowed in, each checked on its own (a SubjectAccessReview per namespace, cached briefly), among
  the namespaces that have SyncJobs or records.
- Records with no namespace (the incumbent's, written before SyncJobs) belong to the deployment's home: the
  WATCH_NAMESPACE when set, else they are shown only to callers allowed cluster-wide.

A job id names a SyncJob in any namespace the caller sees; when it names one in several of them, the caller must
say which (`?namespace=`), else 409. A job that exists only where the caller may not look is 403; one that exists
nowhere is 404.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException

from syncjob_api.core.security import Identity, Role, Verb
from syncjob_api.services.jobs import JobEntry

if TYPE_CHECKING:
    from syncjob_api.context import AppContext


@dataclass(frozen=True)
class Scope:
    """The namespaces a caller may read (None: every one) and whether it sees records with no namespace."""

    namespaces: frozenset[str] | None
    legacy: bool

    @property
    def empty(self) -> bool:
        return self.namespaces is not None and not self.namespaces and not self.legacy

    @property
    def key(self) -> tuple[str, ...] | None:
        return None if self.namespaces is None else tuple(sorted(self.namespaces))

    def sees(self, namespace: str | None) -> bool:
        if not namespace:
            return self.legacy
        return self.namespaces is None or namespace in self.namespaces

    def entries(self, entries: list[JobEntry]) -> list[JobEntry]:
        if self.namespaces is None:
            return entries
        return [e for e in entries if e.namespace in self.namespaces]

    def query(self) -> dict[str, Any]:
        """The MongoDB filter on `namespace` of the records this scope may read."""
        if self.namespaces is None:
            return {} if self.legacy else {"namespace": {"$type": "string"}}
        values: list[str | None] = [*sorted(self.namespaces)]
        if self.legacy:
            values.append(None)  # matches a missing namespace too
        return {"namespace": {"$in": values}}


def ambiguous(job_id: str, namespaces: list[str]) -> HTTPException:
    return HTTPException(409, f"Ambiguous job id {job_id}: it names a SyncJob in several namespaces "
                              f"({', '.join(sorted(namespaces))}); give namespace=")


class Principal:
    """The caller of one request: who, with what proven role, and what it may see and change (decided lazily,
    each answer kept for the request)."""

    def __init__(self, ctx: AppContext, identity: Identity, role: Role = Role.VIEWER) -> None:
        self.ctx = ctx
        self.identity = identity
        self.role = role
        self._decisions: dict[tuple[Verb, str | None], bool] = {}

    @property
    def user(self) -> str:
        return self.identity.user

    def may(self, verb: Verb, namespace: str | None) -> bool:
        key = (verb, namespace or None)
        if key not in self._decisions:
            self._decisions[key] = self.ctx.auth.allowed(self.identity, verb, namespace or None)
        return self._decisions[key]

    @cached_property
    def scope(self) -> Scope:
        home = self.ctx.settings.watch_namespace or None
        if home is not None:
            allowed = self.may(Verb.LIST, home)
            return Scope(frozenset({home}) if allowed else frozenset(), legacy=allowed)
        if self.may(Verb.LIST, None):
            return Scope(None, legacy=True)
        spaces = frozenset(ns for ns in sorted(self.ctx.known_namespaces()) if self.may(Verb.LIST, ns))
        return Scope(spaces, legacy=False)

    @property
    def sees_legacy(self) -> bool:
        """Whether the caller sees records with no namespace (the deployment's home, or cluster-wide)."""
        return self.may(Verb.LIST, self.ctx.settings.watch_namespace or None)

    def home_of(self, namespace: str | None) -> str | None:
        """The namespace that decides about a record: its own, or the home for one with none."""
        return namespace or self.ctx.settings.watch_namespace or None

    def may_patch_somewhere(self) -> bool:
        if self.may(Verb.PATCH, None):
            return True
        scope = self.scope
        return scope.namespaces is not None and any(self.may(Verb.PATCH, ns) for ns in sorted(scope.namespaces))

    def job(self, job_id: str, namespace: str | None) -> JobEntry:
        """The one SyncJob a job id names for this caller: 404 when none exists, 403 when it exists only where the
        caller may not look, 409 when it names one in several namespaces the caller sees."""
        found = [c for c in self.ctx.candidates(job_id) if namespace in (None, c.namespace)]
        if not found:
            where = f" in namespace {namespace}" if namespace else ""
            raise HTTPException(404, f"Job {job_id} not found{where}")
        visible = [c for c in found if self.may(Verb.LIST, c.namespace)]
        if not visible:
            raise HTTPException(403, f"User {self.user} may not read SyncJob {job_id}: it needs list on SyncJobs in "
                                     "its namespace")
        if len(visible) > 1:
            raise ambiguous(job_id, [c.namespace for c in visible])
        return visible[0]

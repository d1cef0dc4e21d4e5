"""Is the scheduler working? The Kubernetes API, MongoDB, the operator (its Lease) and the SyncJob cache.

The operator proves it is alive by renewing the `syncjob-operator` Lease in OPERATOR_NAMESPACE every 10 s; the API
calls it down when the Lease is missing or its renewTime is older than OPERATOR_LEASE_MAX_AGE_SECONDS (45 s).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pymongo.database import Database
from pymongo.errors import PyMongoError

from syncjob import names
from syncjob_api import models
from syncjob_api.core.errors import describe_kube
from syncjob_api.core.timefmt import render, utcnow, zone
from syncjob_api.services.cache import SyncJobCache

_CHECK_TIMEOUT = (2.0, 3.0)


@dataclass(frozen=True)
class OperatorState:
    alive: bool
    message: str
    renew_time: dt.datetime | None
    age_seconds: float | None


def operator_state(api: client.ApiClient, namespace: str, max_age: float) -> OperatorState:
    try:
        lease = client.CoordinationV1Api(api).read_namespaced_lease(
            names.OPERATOR_LEASE, namespace, _request_timeout=_CHECK_TIMEOUT)
    except ApiException as exc:
        if exc.status == 404:
            return OperatorState(False, f"Lease {namespace}/{names.OPERATOR_LEASE} not found: the operator is not "
                                 "running", None, None)
        return OperatorState(False, f"cannot read Lease {namespace}/{names.OPERATOR_LEASE}: {describe_kube(exc)}",
                             None, None)
    except Exception as exc:  # transport errors: the API server is down, so is our view of the operator
        return OperatorState(False, f"cannot read Lease {namespace}/{names.OPERATOR_LEASE}: {describe_kube(exc)}",
                             None, None)
    renew = lease.spec.renew_time if lease.spec is not None else None
    if renew is None:
        return OperatorState(False, f"Lease {namespace}/{names.OPERATOR_LEASE} has no renewTime", None, None)
    if renew.tzinfo is None:
        renew = renew.replace(tzinfo=dt.UTC)
    age = max(0.0, (utcnow() - renew).total_seconds())
    if age > max_age:
        return OperatorState(False, f"the operator last renewed its Lease {age:.0f}s ago (limit {max_age:.0f}s)",
                             renew, round(age, 3))
    return OperatorState(True, f"Lease renewed {age:.0f}s ago", renew, round(age, 3))


def kubernetes_state(api: client.ApiClient) -> models.ComponentHealth:
    try:
        version = client.VersionApi(api).get_code(_request_timeout=_CHECK_TIMEOUT)
    except Exception as exc:
        return models.ComponentHealth(ok=False, message=describe_kube(exc))
    return models.ComponentHealth(ok=True, message=f"reachable, {version.git_version}")


def mongo_state(db: Database[dict[str, Any]]) -> models.ComponentHealth:
    try:
        db.command("ping")
    except PyMongoError as exc:
        return models.ComponentHealth(ok=False, message=f"MongoDB unreachable: {type(exc).__name__}")
    return models.ComponentHealth(ok=True, message=f"reachable, database {db.name}")


def cache_state(cache: SyncJobCache, tz_name: str) -> models.CacheHealth:
    s = cache.status()
    if not s.synced:
        message = f"not synced yet: {s.error or 'listing SyncJobs'}"
    elif s.stale:
        message = f"stale for {s.stale_seconds:.0f}s, serving the last known SyncJobs: {s.error}"
    else:
        message = f"watching SyncJobs in {cache.scope}"
    return models.CacheHealth(
        ok=s.synced and not s.stale, message=message, synced=s.synced, stale=s.stale, stale_seconds=s.stale_seconds,
        last_synced_at=render(s.last_synced_at, zone(tz_name)), jobs=s.jobs,
    )


def health(api: client.ApiClient, db: Database[dict[str, Any]], cache: SyncJobCache, operator_namespace: str,
           max_age: float, tz_name: str) -> models.Health:
    kube = kubernetes_state(api)
    mongo = mongo_state(db)
    op = operator_state(api, operator_namespace, max_age)
    cached = cache_state(cache, tz_name)
    tz = zone(tz_name)
    components = models.HealthComponents(
        kubernetes=kube, mongodb=mongo, cache=cached,
        operator=models.OperatorHealth(ok=op.alive, message=op.message, renew_time=render(op.renew_time, tz),
                                       age_seconds=op.age_seconds),
    )
    down = [name for name in ("kubernetes", "mongodb", "operator", "cache") if not getattr(components, name).ok]
    return models.Health(
        status="unhealthy" if down else "healthy", running=op.alive, state=1 if op.alive else 0, down=down,
        components=components, timestamp=render(utcnow(), tz) or "",
    )

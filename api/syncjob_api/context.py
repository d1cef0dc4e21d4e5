"""Everything a request needs, built once per app: settings, clients, the SyncJob cache, the authenticator.

`create_app` makes one AppContext and keeps it in app.state; dependencies hand its parts to the routes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from kubernetes import client
from pymongo.database import Database

from syncjob import mongo
from syncjob_api.core.config import AuthMode, Settings
from syncjob_api.core.db import MongoStore
from syncjob_api.core.errors import Unavailable
from syncjob_api.core.kube import api_client
from syncjob_api.core.security import Authenticator, KubernetesAuthenticator, StaticAuthenticator
from syncjob_api.core.timefmt import zone
from syncjob_api.metrics import Metrics
from syncjob_api.services.cache import SyncJobCache
from syncjob_api.services.health import OperatorState, operator_state
from syncjob_api.services.jobs import JobEntry, JobListPayload, MetadataCache, normalise

log = logging.getLogger(__name__)


@dataclass
class AppContext:
    settings: Settings
    kube: client.ApiClient
    store: MongoStore
    cache: SyncJobCache
    auth: Authenticator
    metadata: MetadataCache
    metrics: Metrics
    job_list: JobListPayload = field(default_factory=JobListPayload)
    _operator: tuple[float, OperatorState] | None = None
    _record_namespaces: tuple[float, frozenset[str]] | None = None

    @classmethod
    def build(cls, settings: Settings) -> AppContext:
        auth: Authenticator
        if settings.auth_mode is AuthMode.STATIC:  # a bad tokens file stops start-up before anything else
            assert settings.auth_tokens_file is not None  # the settings validator guarantees it
            auth = StaticAuthenticator.from_file(settings.auth_tokens_file)
        kube = api_client(settings.kubeconfig)
        if settings.auth_mode is AuthMode.KUBERNETES:
            auth = KubernetesAuthenticator(kube, settings.auth_cache_seconds)
        store = MongoStore(settings)
        cache = SyncJobCache(kube, settings.watch_namespace, settings.watch_timeout_seconds)
        metrics = Metrics()
        metrics.watch_state(cache, lambda: store.db)
        return cls(settings=settings, kube=kube, store=store, cache=cache, auth=auth,
                   metadata=MetadataCache(store.db), metrics=metrics)

    @property
    def db(self) -> Database[dict[str, Any]]:
        return self.store.db

    def start(self) -> None:
        self.store.ensure_indexes()
        self.cache.start()
        if not self.cache.wait_synced(self.settings.cache_sync_timeout_seconds):
            log.warning("Started serving before the first SyncJob list: reads answer 503 until it succeeds")

    def close(self) -> None:
        self.cache.stop()
        self.store.close()
        self.kube.close()

    def operator_state(self, max_age_seconds: float = 5.0) -> OperatorState:
        """The operator's liveness, read from its Lease at most every few seconds (stats polls should not each
        cost a Kubernetes API call)."""
        cached = self._operator
        if cached is not None and time.monotonic() - cached[0] < max_age_seconds:
            return cached[1]
        state = operator_state(self.kube, self.settings.operator_namespace,
                               self.settings.operator_lease_max_age_seconds)
        self._operator = (time.monotonic(), state)
        return state

    def entries(self) -> list[JobEntry]:
        if not self.cache.synced:
            status = self.cache.status()
            raise Unavailable(f"SyncJobs not loaded yet: the Kubernetes API cannot be reached ({status.error})"
                              if status.error else "SyncJobs not loaded yet; try again shortly")
        return self.cache.entries()

    def candidates(self, job_id: str) -> list[JobEntry]:
        """The SyncJobs a job id may name (the name itself, or the SyncJob name of an underscore id)."""
        self.entries()
        return self.cache.lookup(normalise(job_id))

    def known_namespaces(self, max_age_seconds: float = 10.0) -> set[str]:
        """Namespaces that have SyncJobs now, or execution records or audit entries (those outlive their SyncJobs):
        where a caller who may not read cluster-wide is asked about, one namespace at a time."""
        spaces = {e.namespace for e in self.cache.entries()}
        cached = self._record_namespaces
        if cached is None or time.monotonic() - cached[0] >= max_age_seconds:
            found = frozenset(
                ns for coll in (mongo.EXECUTIONS, mongo.HISTORY)
                for ns in self.db[coll].distinct("namespace") if isinstance(ns, str) and ns
            )
            cached = self._record_namespaces = (time.monotonic(), found)
        return spaces | cached[1]

    def tz_for(self, job_id: str | None, namespace: str | None) -> ZoneInfo:
        if job_id and self.cache.synced:
            found = [e for e in self.cache.lookup(normalise(job_id)) if namespace in (None, e.namespace)]
            if found:
                return found[0].tz
        return zone(self.settings.default_time_zone)

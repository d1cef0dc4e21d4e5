"""The watch-fed cache of SyncJobs: reads never call the Kubernetes API.

A background thread lists the SyncJobs (in WATCH_NAMESPACE, or everywhere), then watches from the list's
resourceVersion, applying ADDED/MODIFIED/DELETED events. When the watch expires (410) it relists; when the API
server cannot be reached it keeps serving the last known SyncJobs, marks itself stale (the health endpoint says so)
and relists with backoff. Until the first list succeeds, reads answer 503.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from syncjob import names
from syncjob.model import SyncJob
from syncjob_api.core.timefmt import utcnow
from syncjob_api.services.jobs import JobEntry, build_entry, refreshed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheStatus:
    synced: bool
    stale: bool
    stale_seconds: float | None
    last_synced_at: dt.datetime | None
    error: str | None
    jobs: int


def _rv(obj: dict[str, Any]) -> str | None:
    value = (obj.get("metadata") or {}).get("resourceVersion")
    return str(value) if value is not None else None


def _newer(candidate: str | None, current: str | None) -> bool:
    if current is None or candidate is None:
        return True
    try:
        return int(candidate) >= int(current)
    except ValueError:  # resourceVersions are opaque; when not numbers, the latest write wins
        return True


class SyncJobCache:
    def __init__(self, api: client.ApiClient, namespace: str, watch_timeout: int) -> None:
        self.namespace = namespace
        self.watch_timeout = watch_timeout
        self._custom = client.CustomObjectsApi(api)
        self._entries: dict[tuple[str, str], JobEntry] = {}
        self._rvs: dict[tuple[str, str], str | None] = {}
        self._by_name: dict[str, list[JobEntry]] = {}
        self._ordered: list[JobEntry] = []
        self._next_due: dt.datetime | None = None
        self._lock = threading.RLock()
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._stale_since: float | None = None
        self._error: str | None = None
        self._last_synced_at: dt.datetime | None = None
        self._watch: watch.Watch | None = None
        self._thread: threading.Thread | None = None
        self.version = 0  # bumped on every change of what entries() returns

    @property
    def scope(self) -> str:
        return f"namespace {self.namespace}" if self.namespace else "all namespaces"

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="syncjob-cache", daemon=True)
        self._thread.start()

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        w = self._watch
        if w is not None:
            w.stop()  # shuts the socket down, so the blocked read returns now
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- reads ------------------------------------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def entries(self) -> list[JobEntry]:
        """Every cached job, ordered by namespace and name, with next run times that have not passed."""
        now = utcnow()
        due = self._next_due
        if due is not None and due <= now:
            with self._lock:
                for key, entry in list(self._entries.items()):
                    fresh = refreshed(entry, now)
                    if fresh is not entry:
                        self._entries[key] = fresh
                self._reindex()
        return self._ordered

    def snapshot(self) -> tuple[int, list[JobEntry]]:
        """(version, entries), consistent with each other."""
        self.entries()
        with self._lock:
            return self.version, self._ordered

    def lookup(self, name: str) -> list[JobEntry]:
        self.entries()  # refresh due next run times
        return self._by_name.get(name, [])

    def status(self) -> CacheStatus:
        since = self._stale_since
        stale = since is not None or not self.synced
        return CacheStatus(
            synced=self.synced, stale=stale,
            stale_seconds=None if since is None else round(time.monotonic() - since, 3),
            last_synced_at=self._last_synced_at, error=self._error, jobs=len(self._ordered),
        )

    def observe(self, obj: dict[str, Any]) -> None:
        """Apply an object a write returned, so this replica reads its own writes before the watch event arrives."""
        with self._lock:
            self._upsert(obj)
            self._reindex()

    # -- the watch thread ---------------------------------------------------------------------------------------

    def _list_call(self) -> tuple[Any, tuple[Any, ...]]:
        if self.namespace:
            return self._custom.list_namespaced_custom_object, (names.GROUP, names.VERSION, self.namespace,
                                                                names.PLURAL)
        return self._custom.list_cluster_custom_object, (names.GROUP, names.VERSION, names.PLURAL)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                rv = self._relist()
                backoff = 0.5
                while not self._stop.is_set():
                    rv = self._watch_from(rv)
            except ApiException as exc:
                if self._stop.is_set():
                    break
                if exc.status == 410:
                    log.info("Relisting SyncJobs in %s: the watch's resourceVersion expired", self.scope)
                    continue
                self._fail(exc, backoff)
                backoff = min(backoff * 2, 30.0)
            except Exception as exc:  # network errors, timeouts: keep serving what we have, retry
                if self._stop.is_set():
                    break
                self._fail(exc, backoff)
                backoff = min(backoff * 2, 30.0)

    def _fail(self, exc: BaseException, delay: float) -> None:
        if self._stale_since is None:
            self._stale_since = time.monotonic()
        self._error = f"{type(exc).__name__}: {getattr(exc, 'reason', None) or exc}"[:300]
        log.warning("Failed to watch SyncJobs in %s (%s); relisting in %.1fs", self.scope, self._error, delay)
        self._stop.wait(delay)

    def _relist(self) -> str | None:
        func, args = self._list_call()
        listed = func(*args, _request_timeout=(3.0, 30.0))
        now = utcnow()
        with self._lock:
            self._entries.clear()
            self._rvs.clear()
            for obj in listed.get("items", []):
                obj.setdefault("apiVersion", names.API_VERSION)
                obj.setdefault("kind", names.KIND)
                self._upsert(obj, now)
            self._reindex()
        self._mark_fresh()
        if not self._synced.is_set():
            log.info("Listed %d SyncJobs in %s", len(self._entries), self.scope)
        self._synced.set()
        rv = (listed.get("metadata") or {}).get("resourceVersion")
        return str(rv) if rv else None

    def _watch_from(self, rv: str | None) -> str | None:
        func, args = self._list_call()
        w = watch.Watch()
        self._watch = w
        if self._stop.is_set():
            return rv
        for event in w.stream(func, *args, resource_version=rv, timeout_seconds=self.watch_timeout,
                              allow_watch_bookmarks=True, deserialize=False,
                              _request_timeout=(3.0, self.watch_timeout + 30)):
            kind = event.get("type")
            obj = event.get("object") or {}
            rv = _rv(obj) or rv
            if kind in ("ADDED", "MODIFIED"):
                with self._lock:
                    self._upsert(obj)
                    self._reindex()
            elif kind == "DELETED":
                with self._lock:
                    meta = obj.get("metadata") or {}
                    key = (meta.get("namespace") or "default", meta.get("name") or "")
                    if self._entries.pop(key, None) is not None:
                        self._rvs.pop(key, None)
                        self._reindex()
            self._mark_fresh()
            if self._stop.is_set():
                break
        self._mark_fresh()  # the server ended the watch on time: we are current as of rv
        return rv

    def _mark_fresh(self) -> None:
        if self._stale_since is not None:
            log.info("Resumed watching SyncJobs in %s", self.scope)
        self._stale_since = None
        self._error = None
        self._last_synced_at = utcnow()

    # -- index maintenance (callers hold the lock) -----------------------------------------------------------

    def _upsert(self, obj: dict[str, Any], now: dt.datetime | None = None) -> None:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace") or "default", meta.get("name") or "")
        rv = _rv(obj)
        if key in self._rvs and not _newer(rv, self._rvs[key]):
            return
        try:
            job = SyncJob.from_k8s(obj)
        except ValidationError as exc:
            log.warning("Ignored SyncJob %s/%s: it does not match the model (%d errors)", key[0], key[1],
                        exc.error_count())
            self._entries.pop(key, None)
            self._rvs.pop(key, None)
            return
        self._entries[key] = build_entry(job, now or utcnow())
        self._rvs[key] = rv

    def _reindex(self) -> None:
        ordered = [self._entries[k] for k in sorted(self._entries)]
        by_name: dict[str, list[JobEntry]] = {}
        for entry in ordered:
            by_name.setdefault(entry.name, []).append(entry)
        dues = [e.next_run for e in ordered if e.next_run is not None]
        self._ordered = ordered
        self._by_name = by_name
        self.version += 1
        self._next_due = min(dues) if dues else None

"""The pod's side of its execution record: open, attempts, progress, heartbeat, cancellation, the verdict.

The record (`scheduler_executions`, `_id` = run id `<namespace>.<job>`) is shared with the operator and the API,
and its state machine lives in `syncjob.executions`: every write this module makes goes through it, and no other
code of the sync image writes the record. Progress is written at most once per `progress_interval`; a heartbeat
thread writes `heartbeat_at` every `heartbeat_interval` and watches for a cancel request or another writer's
verdict, so even a long source call notices them (`on_cancel` interrupts the main thread).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from pymongo.database import Database
from pymongo.errors import PyMongoError

from sync_image.errors import RecordClosed, RunCancelled
from sync_image.store import MongoRetry
from syncjob import executions, mongo
from syncjob.executions import Writer, utcnow
from syncjob.model import ExecutionStatus

log = logging.getLogger(__name__)
_RUNNING = ExecutionStatus.RUNNING.value
_FLAGS = {"status": 1, "cancel_requested": 1, "cancel_reason": 1, "cancel_requested_by": 1}


class ExecutionReporter:
    """Reports one run (one attempt of it: this pod) to its execution record."""

    def __init__(
        self,
        db: Database[Any],
        run_id: str,
        retry: MongoRetry,
        *,
        progress_interval: float = 1.0,
        heartbeat_interval: float = 10.0,
        enabled: bool = True,
        on_cancel: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.run_id = run_id
        self.retry = retry
        self.progress_interval = progress_interval
        self.heartbeat_interval = heartbeat_interval
        self.enabled = enabled
        self.on_cancel = on_cancel
        self._clock = clock
        self._last_progress: float | None = None
        self._cancel = threading.Event()
        self.cancel_reason = ""
        self.closed_status: str | None = None  # set when another writer's verdict was noticed
        self._closed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.attempt = 0
        self.progress_writes = 0
        self.heartbeats = 0

    # -- open and attempts -------------------------------------------------------------------------------------

    def open(self, identity: dict[str, Any], **fields: Any) -> dict[str, Any] | None:
        """Create or join the record; return it as stored (its status may already be final), None if an admin
        deleted it."""
        record = self.retry(lambda: executions.open_run(self.db, identity, Writer.POD, **fields),
                            f"execution record {self.run_id}")
        if record is not None:
            self._observe(record)
        return record

    def begin_attempt(self, pod: str) -> int:
        """This pod starts its attempt; its number (0 if the record stopped running meanwhile)."""
        self.attempt = self.retry(lambda: executions.begin_attempt(self.db, self.run_id, pod),
                                  f"attempt of run {self.run_id}")
        return self.attempt

    def end_attempt(self, outcome: str, *, reason: str | None = None, error_message: str | None = None,
                    **fields: Any) -> None:
        """What this attempt came to, in its entry of `attempts`."""
        self.retry(lambda: executions.end_attempt(self.db, self.run_id, self.attempt, outcome, reason=reason,
                                                  error_message=error_message, **fields),
                   f"attempt {self.attempt} of run {self.run_id}")

    def claim_slot(self, namespace: str, job_id: str) -> str | None:
        """concurrencyPolicy Forbid: take the SyncJob's slot; the run holding it if another does."""
        return self.retry(lambda: executions.claim_slot(self.db, namespace, job_id, self.run_id),
                          f"Forbid slot of {namespace}/{job_id}")

    def flags(self) -> dict[str, Any] | None:
        """The record's status and cancel request as they are now (None if it is gone)."""
        found: dict[str, Any] | None = self.retry(
            lambda: self.db[mongo.EXECUTIONS].find_one({"_id": self.run_id}, _FLAGS), "execution record read")
        return found

    # -- cancellation --------------------------------------------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        """A cancel request or another writer's verdict was noticed."""
        return self._cancel.is_set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set() and not self._closed

    def _observe(self, record: dict[str, Any] | None) -> None:
        """Note a cancellation request, or that someone else closed the record."""
        if self._cancel.is_set():
            return
        if record is None:
            reason, self._closed = "execution record was removed", True
        elif record.get("status") not in (None, _RUNNING):
            self.closed_status = str(record.get("status"))
            reason, self._closed = f"execution record was closed as {self.closed_status} by another writer", True
        elif record.get("cancel_requested"):
            reason = f"cancel requested ({record.get('cancel_reason') or 'Cancelled'})"
        else:
            return
        self.cancel_reason = reason
        self._cancel.set()
        log.info("Noticed that run %s must stop: %s", self.run_id, reason)
        if self.on_cancel is not None:
            self.on_cancel()

    def check(self) -> None:
        """Raise `RunCancelled` or `RecordClosed` if either was noticed."""
        if not self._cancel.is_set():
            return
        if self._closed:
            raise RecordClosed(self.cancel_reason, self.closed_status)
        raise RunCancelled(self.cancel_reason or "cancel requested")

    def _update(self, fields: dict[str, Any]) -> None:
        self._observe(executions.update_running(self.db, self.run_id, fields))

    def update(self, fields: dict[str, Any]) -> None:
        """Best effort: write fields of a running record (what an interrupted attempt got done)."""
        try:
            executions.update_running(self.db, self.run_id, {**fields, "updated_at": utcnow()})
        except PyMongoError as exc:
            log.warning("Could not write the state of run %s: %s", self.run_id, type(exc).__name__)

    # -- progress ------------------------------------------------------------------------------------------------

    def checkpoint(self, processed: int, total: int, message: str, current_item: str | None = None,
                   **extra: Any) -> None:
        """Between batches: write progress (at most once per interval), then stop if cancellation was asked for."""
        self.check()
        now = self._clock()
        if self.enabled and (self._last_progress is None or now - self._last_progress >= self.progress_interval):
            self._last_progress = now
            percent = round(100.0 * processed / total, 1) if total else 0.0
            stamp = utcnow()
            fields = {"progress": percent, "progress_message": message, "current_item": current_item,
                      "processed_items": processed, "total_items": total, "updated_at": stamp, **extra}
            try:
                self._update(fields)
                self.progress_writes += 1
            except PyMongoError as exc:  # the data writes retry; a lost progress write is not worth stalling for
                log.warning("Could not write progress of run %s: %s", self.run_id, type(exc).__name__)
        else:
            try:  # no progress write due: still read the cancellation flag, as every batch boundary must
                self._observe(executions.read_flags(self.db, self.run_id))
            except PyMongoError as exc:
                log.warning("Could not read the cancellation flag of run %s: %s", self.run_id, type(exc).__name__)
        self.check()

    # -- heartbeat -----------------------------------------------------------------------------------------------

    def beat(self) -> None:
        stamp = utcnow()
        try:
            self._update({"heartbeat_at": stamp, "updated_at": stamp})
            self.heartbeats += 1
        except PyMongoError as exc:
            log.warning("Could not write heartbeat of run %s: %s", self.run_id, type(exc).__name__)

    def start_heartbeat(self) -> None:
        if not self.enabled or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(self.heartbeat_interval):
                self.beat()

        self._thread = threading.Thread(target=loop, name=f"heartbeat-{self.run_id}", daemon=True)
        self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
            self._thread = None

    # -- the verdict ---------------------------------------------------------------------------------------------

    def close(self, status: ExecutionStatus, *, reason: str | None = None, unless_cancel_requested: bool = False,
              attempt_fields: dict[str, Any] | None = None, **fields: Any) -> bool:
        """Give the record its verdict if it is still running (and, with `unless_cancel_requested`, no cancel was
        requested), with this attempt's outcome in the same write. True if this call closed it."""
        self.stop_heartbeat()
        attempt = executions.AttemptEnd(self.attempt, status.value, reason, fields.get("error_message"),
                                        attempt_fields or {})
        return self.retry(lambda: executions.close(self.db, self.run_id, status, Writer.POD, reason=reason,
                                                   unless_cancel_requested=unless_cancel_requested,
                                                   attempt=attempt, **fields),
                          f"final status of run {self.run_id}")

    def status(self) -> str | None:
        """The record's status now (None if it is gone)."""
        record = self.flags()
        return None if record is None else str(record.get("status"))

"""The pod's side of its execution record: started, progress, heartbeat, cancellation, final verdict.

The record (`scheduler_executions`, `_id` = run id) is shared with the operator (see `syncjob.executions`): the
operator may have created it first, may ask for cancellation (`cancel_requested`), and may close it (deadline,
pod deleted). So every write here is conditional on the record still being `running`, a record that is no longer
running stops the run like a cancellation, and the final status goes through `close_if_running`, so the first
verdict wins. Progress is written at most once per `progress_interval`; a heartbeat thread writes `heartbeat_at`
every `heartbeat_interval` and watches for cancellation, so even a long source call notices it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import PyMongoError

from sync_image.errors import RunCancelled
from sync_image.store import MongoRetry
from syncjob.executions import close_if_running, ensure_record, utcnow
from syncjob.model import ExecutionStatus

log = logging.getLogger(__name__)
_RUNNING = ExecutionStatus.RUNNING.value


class ExecutionReporter:
    """Reports one run to its execution record."""

    def __init__(
        self,
        collection: Collection[Any],
        run_id: str,
        retry: MongoRetry,
        *,
        progress_interval: float = 1.0,
        heartbeat_interval: float = 10.0,
        enabled: bool = True,
        on_cancel: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.collection = collection
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
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.progress_writes = 0
        self.heartbeats = 0

    # -- start ---------------------------------------------------------------------------------------------------

    def start(self, identity: dict[str, Any], **fields: Any) -> dict[str, Any]:
        """Create or join the record; return it as stored (its status may already be final)."""
        now = utcnow()
        values = {"pod_started_at": now, "heartbeat_at": now, "updated_at": now, **fields}
        self.retry(lambda: ensure_record(self.collection, identity, **values), f"execution record {self.run_id}")
        record = self.retry(lambda: self.collection.find_one({"_id": self.run_id}), "execution record read")
        if record is None:  # deleted between the two calls: nothing sensible to report to
            raise RunCancelled("execution record disappeared")
        self._observe(record)
        return dict(record)

    # -- cancellation --------------------------------------------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def _observe(self, record: dict[str, Any] | None) -> None:
        """Note a cancellation request, or that someone else closed the record."""
        if self._cancel.is_set():
            return
        if record is None:
            reason = "execution record was closed or removed by another writer"
        elif record.get("status") not in (None, _RUNNING):
            reason = f"execution record was closed as {record.get('status')} by another writer"
        elif record.get("cancel_requested"):
            reason = "cancel requested"
        else:
            return
        self.cancel_reason = reason
        self._cancel.set()
        log.info("Noticed cancellation of run %s: %s", self.run_id, reason)
        if self.on_cancel is not None:
            self.on_cancel()

    def check(self) -> None:
        """Raise `RunCancelled` if cancellation was noticed."""
        if self._cancel.is_set():
            raise RunCancelled(self.cancel_reason or "cancel requested")

    def _update(self, fields: dict[str, Any]) -> None:
        record = self.collection.find_one_and_update(
            {"_id": self.run_id, "status": _RUNNING}, {"$set": fields},
            projection={"status": 1, "cancel_requested": 1}, return_document=ReturnDocument.AFTER,
        )
        if record is None:
            record = self.collection.find_one({"_id": self.run_id}, {"status": 1, "cancel_requested": 1})
        self._observe(record)

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
                self._observe(self.collection.find_one({"_id": self.run_id}, {"status": 1, "cancel_requested": 1}))
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
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    # -- the verdict ---------------------------------------------------------------------------------------------

    def finish(self, status: ExecutionStatus, **fields: Any) -> tuple[bool, str | None]:
        """Close the record if it is still running. Returns (closed by us, the status the record ends with)."""
        self.stop_heartbeat()
        closed = self.retry(lambda: close_if_running(self.collection, self.run_id, status, **fields),
                            f"final status of run {self.run_id}")
        if closed:
            return True, status.value
        record = self.retry(lambda: self.collection.find_one({"_id": self.run_id}, {"status": 1}),
                            "execution record read")
        return False, None if record is None else str(record.get("status"))


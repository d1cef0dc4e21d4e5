"""One run, start to finish: join the execution record, gate on trading hours, run the task, record the verdict.

The exit code tells Kubernetes how the pod ended and the execution record tells people why: 0 success or skipped,
1 failed, 2 bad configuration, 3 cancelled (by `cancel_requested`, by the operator closing the record, or by
SIGTERM when the pod is deleted). A record that is already final when the pod starts is left alone.
"""

from __future__ import annotations

import _thread
import datetime as dt
import logging
import signal
import threading
import traceback
from collections.abc import Sequence
from enum import IntEnum
from types import FrameType
from typing import Any

from pymongo import MongoClient
from pymongo.database import Database

from sync_image import sources as registry
from sync_image.errors import ConfigurationError, RunCancelled, RunInterrupted, RunTerminated, StoreUnavailable
from sync_image.record import ExecutionReporter
from sync_image.settings import DEFAULT_DATABASE, PodSettings
from sync_image.sources.base import Source
from sync_image.sources.fallback import FallbackSource
from sync_image.store import MongoRetry
from sync_image.tasks import TASKS, TaskContext, TaskResult
from sync_image.trading_calendar import TradingCalendar
from syncjob import mongo
from syncjob.executions import identity_fields
from syncjob.model import ExecutionStatus

log = logging.getLogger(__name__)
SIGTERM_REASON = "pod terminated (SIGTERM)"


class ExitCode(IntEnum):
    SUCCESS = 0
    FAILED = 1
    CONFIGURATION = 2
    CANCELLED = 3


EXIT_FOR_STATUS = {
    ExecutionStatus.SUCCESS.value: ExitCode.SUCCESS,
    ExecutionStatus.SKIPPED.value: ExitCode.SUCCESS,
    ExecutionStatus.CANCELLED.value: ExitCode.CANCELLED,
    ExecutionStatus.FAILED.value: ExitCode.FAILED,
    ExecutionStatus.MISSED.value: ExitCode.FAILED,
}


def connect(uri: str, **kwargs: Any) -> Database[Any]:
    """The database named in the URI's path (default `tradingagents`), with timezone-aware datetimes."""
    client: MongoClient[Any] = MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=5000,
                                           connectTimeoutMS=5000, **kwargs)
    return client.get_default_database(default=DEFAULT_DATABASE)


class Runner:
    """Runs one SyncJob execution described by the pod settings."""

    def __init__(
        self,
        settings: PodSettings,
        db: Database[Any],
        *,
        sources: Sequence[Source] | None = None,
        handle_signals: bool = False,
        reporting: bool = True,
        now: dt.datetime | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.options = settings.options
        self.now = now or dt.datetime.now(dt.UTC)
        self.retry = MongoRetry(budget=self.options.mongo_retry_seconds)
        self.handle_signals = handle_signals
        self._finishing = False
        self._previous_handlers: dict[int, Any] = {}
        self.reporter = ExecutionReporter(
            db[mongo.EXECUTIONS], settings.run_id, self.retry,
            progress_interval=self.options.progress_interval_seconds,
            heartbeat_interval=self.options.heartbeat_seconds,
            enabled=reporting, on_cancel=self._interrupt_main,
        )
        self._given_sources = list(sources) if sources is not None else None
        self.chain: FallbackSource | None = None
        self.context: TaskContext | None = None
        self.warnings: list[str] = []

    @property
    def name(self) -> str:
        return f"{self.settings.namespace}/{self.settings.run_id}"

    # -- signals -------------------------------------------------------------------------------------------------

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        if not self._finishing:
            raise RunTerminated(SIGTERM_REASON)
        log.info("Ignored SIGTERM for run %s: its verdict is being written", self.name)

    def _on_cancel_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self._finishing:
            raise RunCancelled(self.reporter.cancel_reason or "cancel requested")

    def _interrupt_main(self) -> None:
        """Called by the heartbeat thread on cancellation: stop the main thread even inside a long source call."""
        if self.handle_signals and threading.current_thread() is not threading.main_thread():
            _thread.interrupt_main(signal.SIGUSR1)

    def _install_signals(self) -> None:
        if self.handle_signals:
            self._previous_handlers[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_sigterm)
            self._previous_handlers[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, self._on_cancel_signal)

    def _restore_signals(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    # -- the run -------------------------------------------------------------------------------------------------

    def run(self) -> ExitCode:
        s = self.settings
        log.info("Started run %s of SyncJob %s (task %s, sources %s, trigger %s%s)", self.name, s.job_name,
                 s.task.value, ",".join(x.value for x in s.sources), s.trigger, ", forced" if s.force else "")
        identity = identity_fields(run_id=s.run_id, job_id=s.job_name, namespace=s.namespace, trigger=s.trigger,
                                   force=s.force, scheduled_time=s.scheduled_time, now=self.now)
        record = self.reporter.start(identity, task=s.task.value, sources=[x.value for x in s.sources])
        status = str(record.get("status"))
        if status != ExecutionStatus.RUNNING.value:
            log.info("Skipped run %s: its execution record is already %s", self.name, status)
            return EXIT_FOR_STATUS.get(status, ExitCode.FAILED)
        if self.reporter.cancelled:
            return self._finish(ExecutionStatus.CANCELLED, reason="cancel requested before the run started")
        self._install_signals()
        try:
            return self._run_guarded()
        finally:
            self._finishing = True
            self.reporter.stop_heartbeat()
            if self.chain is not None:
                self.chain.close()
            self._restore_signals()

    def _run_guarded(self) -> ExitCode:
        try:
            self.reporter.start_heartbeat()
            self.reporter.check()
            return self._run_task()
        except RunInterrupted as exc:
            log.info("Cancelled run %s: %s", self.name, exc.reason)
            return self._finish(ExecutionStatus.CANCELLED, reason=exc.reason, **self._partial_fields())
        except ConfigurationError as exc:
            self._finish(ExecutionStatus.FAILED, error_message=str(exc), **self._partial_fields())
            return ExitCode.CONFIGURATION
        except StoreUnavailable as exc:
            log.error("Failed run %s: %s", self.name, exc)
            try:
                self._finish(ExecutionStatus.FAILED, error_message=str(exc), traceback=traceback.format_exc())
            except (StoreUnavailable, RunInterrupted):
                log.error("Could not record the failure of run %s: MongoDB is still unreachable", self.name)
            return ExitCode.FAILED
        except Exception as exc:
            log.exception("Failed run %s", self.name)
            return self._finish(ExecutionStatus.FAILED, error_message=f"{type(exc).__name__}: {exc}",
                                traceback=traceback.format_exc(), **self._partial_fields())

    def _build_sources(self) -> list[Source]:
        if self._given_sources is not None:
            return self._given_sources
        return [registry.build(x.value, tushare_token=self.settings.tushare_token,
                               options=self.options.model_dump()) for x in self.settings.sources]

    def _run_task(self) -> ExitCode:
        s = self.settings
        if self.options.unknown_keys:
            self.warnings.append(f"ignored unknown SYNC_OPTIONS keys: {', '.join(self.options.unknown_keys)}")
        self.chain = FallbackSource(self._build_sources())
        calendar = TradingCalendar(self.chain.trading_days)
        if s.trading_hours_only and not s.force:
            when = s.scheduled_time or self.now
            check = calendar.session_check(when)
            if check.warning:
                self.warnings.append(check.warning)
            if not check.in_session:
                log.info("Skipped run %s: %s", self.name, check.reason)
                return self._finish(ExecutionStatus.SKIPPED, reason=f"outside trading hours: {check.reason}",
                                    progress=100, progress_message="Skipped outside trading hours",
                                    **self._partial_fields())
        self.retry(lambda: mongo.ensure_indexes(self.db, mongo.DATA_COLLECTIONS), "ensure indexes")
        self.context = TaskContext(self.db, self.options, self.chain, self.reporter, calendar, self.retry, self.now)
        result = TASKS[s.task](self.context)
        self.warnings.extend(w for w in calendar.warnings if w not in self.warnings)
        return self._verdict(result)

    def _verdict(self, result: TaskResult) -> ExitCode:
        fields = self._partial_fields()
        if result.total_items and result.failed_items >= result.total_items:
            message = "every source failed for every item"
            if result.item_errors:
                message += f": {result.item_errors[0]}"
            return self._finish(ExecutionStatus.FAILED, error_message=message, **fields)
        ratio = result.failed_items / result.total_items if result.total_items else 0.0
        if ratio > self.options.max_error_ratio:
            message = (f"{result.failed_items} of {result.total_items} items failed ({ratio:.0%} > "
                       f"max_error_ratio {self.options.max_error_ratio:.0%}): {'; '.join(result.item_errors[:3])}")
            return self._finish(ExecutionStatus.FAILED, error_message=message, **fields)
        c = result.counts
        message = (f"Synced {result.processed_items} of {result.total_items} items: {c.inserted} inserted, "
                   f"{c.updated} updated, {c.unchanged} unchanged, {c.errors} errors")
        gaps = result.gaps or {}
        if gaps.get("symbols_with_gaps"):
            unit = "sessions" if gaps.get("kind") == "daily" else "report periods"
            missing = gaps.get(f"missing_{'sessions' if unit == 'sessions' else 'periods'}", 0)
            message = (f"Success with gaps: {message}; {gaps['symbols_with_gaps']} symbols miss {missing} {unit}"
                       + ("" if gaps.get("repaired") or gaps.get("kind") != "daily"
                          else " (run with repair_gaps to fetch them)"))
        return self._finish(ExecutionStatus.SUCCESS, progress=100, progress_message=message,
                            error_message="; ".join(result.item_errors[:3]) or None, **fields)

    def _partial_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        chain = self.chain
        if chain is not None:
            fields["source_used"] = chain.source_used
            fields["source_attempts"] = [a.to_doc() for a in chain.attempts]
        result = self.context.result if self.context is not None else None
        if result is not None:
            fields["return_value"] = {
                **result.counts.to_doc(), "total_items": result.total_items,
                "processed_items": result.processed_items, "failed_items": result.failed_items,
                "item_errors": result.item_errors, **result.extra,
                "attempts_not_recorded": chain.attempts_dropped if chain is not None else 0,
            }
            fields["processed_items"] = result.processed_items
            fields["total_items"] = result.total_items
            if result.gaps is not None:
                fields["gaps"] = result.gaps
        if self.warnings:
            fields["warnings"] = list(self.warnings)
        return fields

    def _finish(self, status: ExecutionStatus, **fields: Any) -> ExitCode:
        self._finishing = True
        closed, final = self.reporter.finish(status, **fields)
        if closed:
            log.info("Recorded run %s as %s", self.name, status.value)
            return EXIT_FOR_STATUS[status.value]
        log.info("Left run %s as %s: another writer closed its record first", self.name, final)
        return EXIT_FOR_STATUS.get(final or "", ExitCode.FAILED)

"""One run's attempt, start to finish: join the execution record, begin an attempt, run the task, record the outcome.

A run is a Job; each of its pods is an attempt (a Job with backoffLimit N has up to N+1). The exit code tells
Kubernetes how the pod ended and the execution record tells people why (docs/pod-contract.md):

* 0: success or skipped (outside trading hours; concurrencyPolicy Forbid while another run holds the slot); also
  when the record was deleted by an admin (nothing is written).
* 1: failed. On an attempt that is not the last, only the attempt entry says so and the record stays `running`,
  so the Job's next pod syncs again; the last attempt closes the record `failed`.
* 2: bad configuration: no retry can help, the record is closed `failed` at once.
* 3: cancelled, because a cancel was requested (`cancel_requested`; Replace asks the same way).
* 143: SIGTERM without a cancel request (deadline, eviction, deletion, drain): the attempt is recorded
  `terminated` and the record stays `running`; the operator closes it with Kubernetes' verdict.

A record that is already final when the pod starts, or that another writer closes while it runs, is left alone:
the pod exits as that status says. Every write goes through `ExecutionReporter`, and so `syncjob.executions`.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
import traceback
from collections.abc import Sequence
from enum import IntEnum
from types import FrameType
from typing import Any

from pymongo.database import Database

from sync_image import sources as registry
from sync_image.errors import (
    ConfigurationError,
    RecordClosed,
    RunCancelled,
    RunInterrupted,
    RunTerminated,
    StoreUnavailable,
)
from sync_image.record import ExecutionReporter
from sync_image.settings import PodSettings
from sync_image.sources.base import Source
from sync_image.sources.fallback import FallbackSource
from sync_image.store import MongoRetry
from sync_image.tasks import TASKS, TaskContext, TaskResult
from sync_image.trading_calendar import TradingCalendar
from syncjob import mongo
from syncjob.executions import cancelled_verdict, identity
from syncjob.model import ConcurrencyPolicy, ExecutionStatus

log = logging.getLogger(__name__)
SIGTERM_REASON = "SIGTERM"
SIGTERM_MESSAGE = ("Kubernetes stopped the pod (SIGTERM) with no cancel requested: an activeDeadlineSeconds "
                   "deadline, an eviction, a deletion of the pod or a node drain; the operator records Kubernetes' "
                   "verdict from the Job")
FORBID_REASON = "ConcurrencyForbid"
# what an attempt entry keeps of the run's fields
_ATTEMPT_FIELDS = ("source_used", "source_attempts", "return_value", "processed_items", "total_items", "traceback",
                   "warnings")


class ExitCode(IntEnum):
    SUCCESS = 0
    FAILED = 1
    CONFIGURATION = 2
    CANCELLED = 3
    TERMINATED = 128 + signal.SIGTERM


EXIT_FOR_STATUS = {
    ExecutionStatus.SUCCESS.value: ExitCode.SUCCESS,
    ExecutionStatus.SKIPPED.value: ExitCode.SUCCESS,
    ExecutionStatus.CANCELLED.value: ExitCode.CANCELLED,
    ExecutionStatus.FAILED.value: ExitCode.FAILED,
    ExecutionStatus.MISSED.value: ExitCode.FAILED,
}


def connect(uri: str) -> Database[Any]:
    """The sync pod's database (`syncjob.mongo.connect`, the one client factory)."""
    return mongo.connect(uri, app="syncjob-sync")


def _exit_for(status: str | None) -> ExitCode:
    return EXIT_FOR_STATUS.get(status or "", ExitCode.FAILED)


class Runner:
    """Runs one attempt of one SyncJob execution described by the pod settings."""

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
            db, settings.run_id, self.retry,
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
        return self.settings.run_id

    @property
    def attempt(self) -> int:
        return self.reporter.attempt

    @property
    def last_attempt(self) -> bool:
        """No pod follows this one if it fails: the Job's backoffLimit is used up."""
        return self.attempt > self.settings.backoff_limit

    # -- signals -------------------------------------------------------------------------------------------------

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        if not self._finishing:
            raise RunTerminated(SIGTERM_REASON)
        log.info("Ignored SIGTERM for run %s: its outcome is being written", self.name)

    def _on_cancel_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self._finishing:
            self.reporter.check()

    def _interrupt_main(self) -> None:
        """Called by the heartbeat thread on a cancel or another writer's verdict: stop the main thread even inside
        a long source call. A real signal to the main thread, so that a blocking call (a sleep, a socket read)
        returns with EINTR and the handler runs at once."""
        main = threading.main_thread()
        if not self.handle_signals or self._finishing or threading.current_thread() is main or main.ident is None:
            return
        if signal.getsignal(signal.SIGUSR1) == self._on_cancel_signal:  # SIGUSR1's default action kills
            signal.pthread_kill(main.ident, signal.SIGUSR1)

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
        log.info("Started run %s of SyncJob %s/%s (task %s, sources %s, trigger %s%s)", self.name, s.namespace,
                 s.job_name, s.task.value, ",".join(x.value for x in s.sources), s.trigger,
                 ", forced" if s.force else "")
        ident = identity(run_id=s.run_id, job_id=s.job_name, namespace=s.namespace, job=s.k8s_job,
                         trigger=s.trigger, force=s.force, scheduled_time=s.scheduled_time)
        record = self.reporter.open(ident, task=s.task.value, sources=[x.value for x in s.sources])
        if record is None:
            log.info("Left run %s alone: an admin deleted its execution record", self.name)
            return ExitCode.SUCCESS
        status = str(record.get("status"))
        if status != ExecutionStatus.RUNNING.value:
            log.info("Skipped run %s: its execution record is already %s", self.name, status)
            return _exit_for(status)
        if self.reporter.begin_attempt(s.pod_name) == 0:
            final = self.reporter.status()
            log.info("Skipped run %s: its execution record became %s", self.name, final)
            return _exit_for(final)
        log.info("Began attempt %d of run %s in pod %s (backoffLimit %d)", self.attempt, self.name, s.pod_name,
                 s.backoff_limit)
        if self.reporter.cancel_requested:
            return self._cancelled("before the attempt started")
        if s.concurrency_policy is ConcurrencyPolicy.FORBID:
            holder = self.reporter.claim_slot(s.namespace, s.job_name)
            if holder is not None:
                log.info("Skipped run %s: run %s of the same SyncJob is still running (Forbid)", self.name, holder)
                return self._finish(ExecutionStatus.SKIPPED, reason=FORBID_REASON,
                                    error_message=f"run {holder} was still running (concurrencyPolicy Forbid)",
                                    progress=100, progress_message="Skipped: another run was still running")
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
        except RecordClosed as exc:
            return self._closed_elsewhere(exc)
        except RunTerminated:
            return self._terminated()
        except RunCancelled:
            return self._cancelled()
        except ConfigurationError as exc:
            return self._finish(ExecutionStatus.FAILED, reason="ConfigurationError", retryable=False,
                                exit_code=ExitCode.CONFIGURATION, error_message=str(exc), **self._partial_fields())
        except StoreUnavailable as exc:
            log.error("Failed run %s: %s", self.name, exc)
            try:
                return self._finish(ExecutionStatus.FAILED, reason="StoreUnavailable", error_message=str(exc),
                                    traceback=traceback.format_exc())
            except (StoreUnavailable, RunInterrupted):
                log.error("Could not record the failure of run %s: MongoDB is still unreachable", self.name)
            return ExitCode.FAILED
        except Exception as exc:
            log.exception("Failed run %s", self.name)
            return self._finish(ExecutionStatus.FAILED, reason=type(exc).__name__,
                                error_message=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(),
                                **self._partial_fields())

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

    # -- outcomes ------------------------------------------------------------------------------------------------

    def _stop_reporting(self) -> None:
        self._finishing = True
        self.reporter.stop_heartbeat()

    def _finish(self, status: ExecutionStatus, *, reason: str | None = None, retryable: bool = True,
                exit_code: ExitCode | None = None, **fields: Any) -> ExitCode:
        """The outcome of this attempt. A failure that a later attempt may mend is written to this attempt's entry
        only; a success is refused if a cancel was requested meanwhile (`_late_cancel`); the rest close the record."""
        self._stop_reporting()
        if status is ExecutionStatus.FAILED:
            reason = reason or "SyncFailed"
            if retryable and not self.last_attempt:
                self.reporter.end_attempt("failed", reason=reason, error_message=fields.get("error_message"),
                                          **_attempt_fields(fields))
                log.info("Failed attempt %d of run %s (%s); the record stays running for the Job's next pod",
                         self.attempt, self.name, reason)
                return ExitCode.FAILED
        if status is ExecutionStatus.SUCCESS:
            if self.reporter.close(status, reason=reason, unless_cancel_requested=True,
                                   attempt_fields=_attempt_fields(fields), **fields):
                return self._recorded(status)
            return self._late_cancel(fields)
        return self._close(status, reason=reason, exit_code=exit_code, **fields)

    def _close(self, status: ExecutionStatus, *, reason: str | None, exit_code: ExitCode | None = None,
               **fields: Any) -> ExitCode:
        if self.reporter.close(status, reason=reason, attempt_fields=_attempt_fields(fields), **fields):
            return self._recorded(status, exit_code)
        final = self.reporter.status()
        log.info("Left run %s as %s: another writer closed its record first", self.name, final)
        return _exit_for(final)

    def _recorded(self, status: ExecutionStatus, exit_code: ExitCode | None = None) -> ExitCode:
        log.info("Recorded run %s as %s", self.name, status.value)  # with this attempt's entry, in one write
        return exit_code if exit_code is not None else EXIT_FOR_STATUS[status.value]

    def _late_cancel(self, fields: dict[str, Any]) -> ExitCode:
        """The work is done but a cancel was requested after the last checkpoint: the run ends `cancelled`, saying
        what it had already written, and never as a silent success."""
        record = self.reporter.flags()
        if record is None or record.get("status") != ExecutionStatus.RUNNING.value:
            final = None if record is None else str(record.get("status"))
            log.info("Left run %s as %s: another writer closed its record first", self.name, final)
            return _exit_for(final)
        reason, message = cancelled_verdict(record)
        written = fields.get("progress_message") or "its work was complete"
        message = (f"{message}: the cancel arrived after the last checkpoint, when the run had already finished "
                   f"its work ({written})")
        log.info("Cancelled run %s after its last checkpoint", self.name)
        return self._close(ExecutionStatus.CANCELLED, reason=reason, **{**fields, "error_message": message})

    def _cancelled(self, when: str = "") -> ExitCode:
        """A cancel was requested (noticed at a checkpoint, by the heartbeat, or on SIGTERM)."""
        self._stop_reporting()
        record = self.reporter.flags()
        if record is None or record.get("status") != ExecutionStatus.RUNNING.value:
            return self._closed_elsewhere(None if record is None else str(record.get("status")))
        reason, message = cancelled_verdict(record)
        if when:
            message = f"{message} {when}"
        log.info("Cancelled run %s: %s", self.name, message)
        return self._close(ExecutionStatus.CANCELLED, reason=reason,
                           **{**self._partial_fields(), "error_message": message})

    def _terminated(self) -> ExitCode:
        """SIGTERM. With a cancel requested it is that cancel; otherwise Kubernetes stopped the pod for its own
        reasons, which only the Job's conditions tell: the attempt says `terminated`, the record stays running
        for the operator to close."""
        self._stop_reporting()
        record = self.reporter.flags()
        if record is None or record.get("status") != ExecutionStatus.RUNNING.value:
            return self._closed_elsewhere(None if record is None else str(record.get("status")))
        if record.get("cancel_requested"):
            return self._cancelled()
        fields = self._partial_fields()
        self.reporter.update(fields)
        self.reporter.end_attempt("terminated", reason=SIGTERM_REASON, error_message=SIGTERM_MESSAGE,
                                  **_attempt_fields(fields))
        log.info("Attempt %d of run %s was terminated (SIGTERM, no cancel requested); the operator records the "
                 "verdict", self.attempt, self.name)
        return ExitCode.TERMINATED

    def _closed_elsewhere(self, closed: RecordClosed | str | None) -> ExitCode:
        self._stop_reporting()
        status = closed.status if isinstance(closed, RecordClosed) else closed
        log.info("Stopped run %s: another writer closed its record as %s", self.name, status)
        return _exit_for(status)


def _attempt_fields(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: fields[k] for k in _ATTEMPT_FIELDS if k in fields}

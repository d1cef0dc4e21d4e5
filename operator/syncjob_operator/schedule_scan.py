"""Which scheduled times must have a run by now: the missed-run scan, as a pure function of persisted state.

The scan's position lives in the SyncJob's `status.scheduleScan` (docs/operator.md, "Missed and skipped runs"), so
an operator restart neither re-judges a pause as a string of misses nor forgets where it got to, and a spec edit
keeps the claim of a time that was due under the old schedule but whose starting deadline had not yet passed.

A time is judged once its starting deadline (plus a margin for the CronJob controller's own lag) has passed:
the caller then looks for its Job or record and records `missed` or `skipped` if there is none. Times while the
SyncJob was paused were never due.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from syncjob.model import ScheduleScan, SyncJobSpec
from syncjob_operator.builders import schedule_times

MAX_PENDING = 100
CONTROLLER_MARGIN = dt.timedelta(seconds=15)


@dataclass(frozen=True)
class ScanStep:
    state: ScheduleScan  # what to persist
    due: list[dt.datetime]  # times whose deadline has passed and which must have a run, oldest first


def _times(schedule: str, time_zone: str, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    if end <= start:
        return []
    spec = SyncJobSpec.model_construct(schedule=schedule, time_zone=time_zone)
    return schedule_times(spec, start, end)[-MAX_PENDING:]


def deadline(spec: SyncJobSpec) -> dt.timedelta:
    return dt.timedelta(seconds=spec.starting_deadline_seconds or 300) + CONTROLLER_MARGIN


def advance(spec: SyncJobSpec, state: ScheduleScan | None, now: dt.datetime, *, created: dt.datetime | None,
            lookback: dt.timedelta, judge: bool) -> ScanStep:
    """One step of the scan. With `judge` False (a pass caused by an event) only pauses, resumes and schedule
    changes are taken in; times are judged by the periodic passes."""
    if state is None and spec.paused:  # first sight of a paused SyncJob: when it was paused is not known
        state = ScheduleScan(schedule=spec.schedule, time_zone=spec.time_zone, scanned_until=now, paused_since=now)
    if state is None:
        start = max(now - lookback, created or now)
        state = ScheduleScan(schedule=spec.schedule, time_zone=spec.time_zone, scanned_until=start)
    scanned, paused_since, pending = state.scanned_until, state.paused_since, list(state.pending)
    if (state.schedule, state.time_zone) != (spec.schedule, spec.time_zone):
        if paused_since is None:  # times already due under the old schedule keep their claim
            pending += _times(state.schedule, state.time_zone, scanned, now)
        scanned = now
    if spec.paused and paused_since is None:
        pending += _times(spec.schedule, spec.time_zone, scanned, now)  # due before the pause
        scanned, paused_since = now, now
    elif not spec.paused and paused_since is not None:
        scanned, paused_since = now, None  # times while paused were never due
    due: list[dt.datetime] = []
    if judge:
        cutoff = now - deadline(spec)
        due = [t for t in pending if t <= cutoff]
        pending = [t for t in pending if t > cutoff]
        if not spec.paused:
            new = _times(spec.schedule, spec.time_zone, scanned, cutoff)
            if new:
                due += new
                scanned = new[-1]
    new_state = ScheduleScan(schedule=spec.schedule, time_zone=spec.time_zone, scanned_until=scanned,
                             paused_since=paused_since, pending=sorted(set(pending))[-MAX_PENDING:])
    return ScanStep(new_state, sorted(set(due))[-MAX_PENDING:])

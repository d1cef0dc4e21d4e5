"""The missed-run scan as persisted state: pauses, restarts and schedule edits neither invent nor lose a miss."""

from __future__ import annotations

import datetime as dt

from syncjob_operator.schedule_scan import advance

from syncjob.model import ScheduleScan, SyncJobSpec

UTC = dt.UTC
LOOKBACK = dt.timedelta(hours=6)
CREATED = dt.datetime(2026, 12, 1, 8, 58, 30, tzinfo=UTC)  # every test's SyncJob was created at 08:58:30


def spec(**kw: object) -> SyncJobSpec:
    return SyncJobSpec.model_validate({"task": "quotes", "schedule": "* * * * *", "timeZone": "UTC",
                                       "startingDeadlineSeconds": 60, **kw})


def at(hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(2026, 12, 1, hour, minute, second, tzinfo=UTC)


def run(spec_: SyncJobSpec, state: ScheduleScan | None, now: dt.datetime, judge: bool = True
        ) -> tuple[ScheduleScan, list[dt.datetime]]:
    step = advance(spec_, state, now, created=CREATED, lookback=LOOKBACK, judge=judge)
    # What the operator persists is what a restarted operator reads back: round-trip it through the status.
    return ScheduleScan.model_validate(step.state.to_k8s()), step.due


def test_a_pause_followed_by_an_operator_restart_records_no_miss_for_the_paused_minutes() -> None:
    state, _ = run(spec(), None, at(8, 59))
    state, _ = run(spec(), state, at(9, 0, 30))
    state, _ = run(spec(paused=True), state, at(9, 0, 40), judge=False)  # paused at 09:00:40
    state, due_paused = run(spec(paused=True), state, at(12, 0))
    state, _ = run(spec(), state, at(14, 0), judge=False)  # resumed at 14:00
    # The operator restarts at 15:00: all it has is the persisted state.
    state, due_after = run(spec(), state, at(15, 0))
    assert all(t <= at(9, 0, 40) for t in due_paused)
    assert not [t for t in due_after if at(9, 1) <= t <= at(14, 0)]
    assert due_after and min(due_after) > at(14, 0)  # the ticks after the resume are judged as usual


def test_ticks_due_before_a_pause_are_still_judged_after_it() -> None:
    state, _ = run(spec(), None, at(9, 0))
    state, _ = run(spec(paused=True), state, at(9, 3, 10), judge=False)  # 08:59..09:03 were due before the pause
    state, due = run(spec(paused=True), state, at(9, 10))
    assert due == [at(8, 59), at(9, 0), at(9, 1), at(9, 2), at(9, 3)]


def test_a_schedule_edit_between_a_miss_and_its_deadline_keeps_the_miss() -> None:
    state, _ = run(spec(schedule="0 10 * * *"), None, at(9, 0))
    state, due = run(spec(schedule="0 10 * * *"), state, at(10, 0, 30))  # 10:00 due, deadline not passed yet
    assert due == []
    state, due = run(spec(schedule="30 10 * * *"), state, at(10, 0, 40), judge=False)  # edited at 10:00:40
    state, due = run(spec(schedule="30 10 * * *"), state, at(10, 5))
    assert due == [at(10, 0)]
    state, due = run(spec(schedule="30 10 * * *"), state, at(10, 40))
    assert due == [at(10, 30)]



def test_a_schedule_edited_while_the_operator_was_down_is_judged_by_what_the_cronjob_ran() -> None:
    """Until the operator applies an edit the CronJob keeps the old schedule: its times are the ones that were due."""
    state, _ = run(spec(schedule="0 * * * *"), None, at(9, 0, 30))
    # The operator stops; at some point the schedule becomes :30; the operator sees it at 12:00:20.
    state, due = run(spec(schedule="30 * * * *"), state, at(12, 0, 20))
    assert due == [at(9, 0), at(10, 0), at(11, 0)]  # 12:00's starting deadline has not passed yet
    state, due = run(spec(schedule="30 * * * *"), state, at(12, 40))
    assert due == [at(12, 0), at(12, 30)]  # none of 09:30..11:30 (the CronJob never had them)

def test_a_time_is_judged_once() -> None:
    state, _ = run(spec(), None, at(9, 0))
    state, first = run(spec(), state, at(9, 5))
    state, second = run(spec(), state, at(9, 5, 30))
    state, third = run(spec(), state, at(9, 5, 40))
    assert first == [at(8, 59), at(9, 0), at(9, 1), at(9, 2), at(9, 3)]
    assert (second, third) == ([at(9, 4)], [])


def test_an_operator_without_a_scan_position_looks_back_no_further_than_the_syncjob_exists() -> None:
    old = advance(spec(), None, at(9, 30), created=at(8, 0), lookback=dt.timedelta(minutes=10), judge=True)
    assert old.due[0] == at(9, 21) and old.due[-1] == at(9, 28)  # lookback 10 min, deadline 75 s
    new = advance(spec(), None, at(9, 30), created=at(9, 27, 30), lookback=dt.timedelta(minutes=10), judge=True)
    assert new.due == [at(9, 28)]

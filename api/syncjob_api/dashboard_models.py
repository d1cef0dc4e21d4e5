"""The answers of the dashboard's reads and of the stream ticket, as documented in OpenAPI (inside the seed's
envelope). Kept apart from `models` (the seed's contract): these endpoints are ours alone."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from syncjob_api.models import JobPublic


class Me(BaseModel):
    user: str
    role: str = Field(description="admin (may patch SyncJobs in the watched namespace) or viewer.")
    auth_mode: str
    time_zone: str = Field(description="The zone the page shows times in.")


class RunMark(BaseModel):
    """One run as a mark of a job's strip or a bar of its duration chart."""

    id: str
    status: str | None
    timestamp: str | None
    execution_time: float | None = Field(description="Seconds.")


class JobRow(JobPublic):
    runs: list[RunMark] = Field(description="The last 20 runs, newest first.")
    runs_7d: int = Field(description="Runs in the last 7 days.")
    success_rate_7d: float | None = Field(description="success / (success + failed + missed) over 7 days.")
    median_duration_7d: float | None = Field(description="Median seconds of the successful runs of 7 days.")


class Facets(BaseModel):
    namespaces: list[str]
    tasks: list[str]
    sources: list[str]


class JobTable(BaseModel):
    items: list[JobRow]
    total: int = Field(description="SyncJobs matching the filters.")
    all: int = Field(description="SyncJobs served.")
    limit: int
    offset: int
    facets: Facets = Field(description="The values the filters offer.")


class JobSchedule(BaseModel):
    next_runs: list[str] = Field(description="The next 10 scheduled times in the job's zone (none while paused).")
    time_zone: str
    durations: list[RunMark] = Field(description="The last 100 finished runs, oldest first.")


class RunRow(BaseModel):
    """A run as the live feed and the runs view show it (a projection of its record)."""

    id: str
    job_id: str | None = None
    namespace: str | None = None
    status: str | None = None
    reason: str | None = None
    trigger: str | None = None
    is_manual: bool | None = None
    force: bool | None = None
    progress: float | None = Field(default=None, description="Percent, 0..100.")
    progress_message: str | None = None
    current_item: Any = None
    processed_items: int | None = None
    total_items: int | None = None
    source_used: str | None = None
    started_at: str | None = None
    heartbeat_at: str | None = None
    finished_at: str | None = None
    execution_time: float | None = None
    cancel_requested: bool | None = None
    error_message: str | None = None
    timestamp: str | None = None


class RunDetail(BaseModel):
    """Every field of a run's record (attempts, source attempts, counts, warnings, traceback, ...)."""

    model_config = ConfigDict(extra="allow")

    id: str


class StreamTicket(BaseModel):
    ticket: str = Field(description="Opens GET /stream/runs?ticket= within expires_in seconds.")
    expires_in: int
    user: str

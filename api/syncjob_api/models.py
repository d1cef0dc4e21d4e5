"""Request and response models of the HTTP contract, in families (public view, detail, update, page wrappers).

They are the OpenAPI schema: every route declares one, so /docs and schemathesis see what the API really returns.
Every response is the seed's envelope `{success, data, message, timestamp}`; errors carry `data: null`.
Times are ISO 8601 strings with an offset, rendered in the job's time zone.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from syncjob_api.core.timefmt import now_iso

T = TypeVar("T")

# A job id is a SyncJob name; the incumbent's underscore ids (tushare_quotes_sync) are accepted as aliases.
JOB_ID_PATTERN = r"^[a-z0-9]([-_a-z0-9]*[a-z0-9])?$"
JOB_ID_MAX = 63
# A run id is `<namespace>.<Job name>` (syncjob.runs); the incumbent's records have 24-hex ObjectIds, which the
# pattern's single-label form also admits (as it does the incumbent's underscore names).
_LABEL = r"[a-z0-9]([-_a-z0-9]*[a-z0-9])?"
EXECUTION_ID_PATTERN = rf"^{_LABEL}(\.{_LABEL})?$"
EXECUTION_ID_MAX = 127  # a namespace (63), the dot, a Job name (63)
NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
NAMESPACE_MAX = 63


class Envelope(BaseModel, Generic[T]):
    """The seed's success envelope."""

    success: Literal[True] = True
    data: T
    message: str
    timestamp: str = Field(default_factory=now_iso, description="When the answer was made (ISO 8601, UTC offset).")


class ErrorEnvelope(BaseModel):
    """Every error: the right status code and this body."""

    success: Literal[False] = False
    data: None = None
    message: str = Field(description="What went wrong, for a human.")
    timestamp: str = Field(description="When the answer was made (ISO 8601, UTC offset).")


# -- jobs ---------------------------------------------------------------------------------------------------------


class LastExecution(BaseModel):
    run_id: str = Field(description="Run id: `<namespace>.<Job name>`, the execution record's id.")
    status: str = Field(description="success, failed, missed, skipped or cancelled.")
    trigger: str | None = Field(default=None, description="schedule or manual.")
    started_at: str | None = None
    finished_at: str | None = None
    duration_seconds: float | None = Field(default=None, description="Wall time of the run in seconds.")
    source: str | None = Field(default=None, description="The source that delivered the data.")
    message: str | None = Field(default=None, description="Error message or reason, if any.")


class JobPublic(BaseModel):
    """A job as the jobs list shows it."""

    id: str = Field(description="The job id: the SyncJob name.")
    name: str = Field(description="A human name, as the incumbent's were: the display name (else the SyncJob name), "
                                  "containing the primary source's name as the incumbent spelled it (Tushare, "
                                  "AKShare, BaoStock), appended in brackets when the display name lacks it.")
    namespace: str = Field(description="Namespace of the SyncJob.")
    display_name: str | None = Field(description="scheduler_metadata override, else spec.displayName.")
    description: str | None = Field(description="scheduler_metadata override, else spec.description.")
    task: str = Field(description="basics, quotes, daily, financial or status.")
    sources: list[str] = Field(description="Data sources in priority order.")
    trigger: str = Field(description="The schedule as text: cron expression and time zone.")
    schedule: str = Field(description="Five-field cron expression.")
    time_zone: str = Field(description="IANA time zone of the schedule; times of this job are rendered in it.")
    paused: bool = Field(description="Scheduled runs are suspended (manual triggers still run).")
    next_run_time: str | None = Field(description="Next scheduled run; null when paused.")
    last_execution: LastExecution | None = Field(description="The last finished run, from the SyncJob status.")
    active_runs: list[str] = Field(description="Run ids the operator reports as active.")


class Condition(BaseModel):
    type: str
    status: str
    reason: str
    message: str
    last_transition_time: str | None


class ActiveRun(BaseModel):
    run_id: str
    job_name: str


class JobStatusPublic(BaseModel):
    """The SyncJob's status as the operator wrote it."""

    ready: bool | None = Field(description="The Ready condition; null before the operator has reconciled.")
    conditions: list[Condition]
    generation: int | None = Field(description="metadata.generation of the spec.")
    observed_generation: int | None = Field(description="The generation the operator last reconciled.")
    cron_job_name: str | None
    next_schedule_time: str | None = Field(description="Next run as the operator computed it.")
    last_schedule_time: str | None
    last_successful_time: str | None
    last_failure_time: str | None
    active: list[ActiveRun]
    last_handled_requested_at: str | None
    last_handled_force_at: str | None
    last_handled_cancel_at: str | None


class JobDetail(JobPublic):
    """A job with the rest of its spec and its status."""

    spec_display_name: str | None = Field(description="spec.displayName, before any metadata override.")
    spec_description: str | None = Field(description="spec.description, before any metadata override.")
    trading_hours_only: bool
    concurrency_policy: str
    starting_deadline_seconds: int | None
    active_deadline_seconds: int | None
    backoff_limit: int
    successful_jobs_history_limit: int
    failed_jobs_history_limit: int
    options: dict[str, Any]
    created_at: str | None
    metadata_updated_by: str | None = Field(description="Who last set the display name or description.")
    metadata_updated_at: str | None
    kwargs: dict[str, Any] = Field(description="The incumbent page's name for the task's parameters: spec.options.")
    args: list[Any] = Field(default_factory=list, description="Always empty (the incumbent page's field).")
    misfire_grace_time: int | None = Field(
        description="The incumbent page's name for how late a run may start: spec.startingDeadlineSeconds.")
    max_instances: int | None = Field(
        description="Runs at once: 1 under concurrencyPolicy Forbid or Replace, null (no limit) under Allow.")
    status: JobStatusPublic


class JobMetadataUpdate(BaseModel):
    """Body of PUT /jobs/{id}/metadata: a field left out is unchanged; null removes the override."""

    model_config = ConfigDict(extra="forbid")

    display_name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)


class JobMetadataPublic(BaseModel):
    job_id: str
    namespace: str
    display_name: str | None = Field(description="The override now stored (null = the spec's text is shown).")
    description: str | None
    updated_by: str
    updated_at: str


class PauseResult(BaseModel):
    job_id: str
    namespace: str
    paused: bool = Field(description="spec.paused as now patched.")


class TriggerResult(BaseModel):
    job_id: str
    namespace: str
    token: str = Field(description="The requested-at token of the run: set by this request, or the pending one it "
                                   "joined.")
    run_id: str = Field(description="Run id (`<namespace>.<Job name>`, the execution record's id) of the run this "
                                    "token starts.")
    force: bool = Field(description="The run skips the trading-hours check; later runs do not.")
    joined: bool = Field(default=False, description="True when a run was already requested and not yet started: "
                                                    "this request joined it instead of asking for a second run.")
    job_created: bool = Field(description="The operator created the Job within the short wait after the request.")


# -- executions and history ----------------------------------------------------------------------------------------


class ExecutionStatusFilter(StrEnum):
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    MISSED = "missed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class HistoryStatusFilter(StrEnum):
    SUCCESS = "success"
    FAILED = "failed"
    DENIED = "denied"
    PENDING = "pending"  # written before a change; its API process stopped before recording the outcome


class Action(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    TRIGGER = "trigger"
    METADATA = "metadata"
    CANCEL = "cancel"
    MARK_FAILED = "mark-failed"
    DELETE = "delete"


class ExecutionPublic(BaseModel):
    """One run's record in scheduler_executions."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(description="Run id: `<namespace>.<Job name>` (the incumbent's records: an ObjectId's hex).")
    legacy_id: str = Field(serialization_alias="_id", description="Same as id (the incumbent's clients read _id).")
    job_id: str | None
    job_name: str | None = None
    namespace: str | None = None
    status: str | None = Field(description="running, success, failed, missed, skipped or cancelled.")
    trigger: str | None = None
    is_manual: bool | None = None
    force: bool | None = None
    scheduled_time: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    timestamp: str | None = Field(default=None, description="When the record was created.")
    execution_time: float | None = Field(
        default=None, exclude_if=lambda v: v is None,
        description="Duration in seconds (the incumbent's unit); for a running run, the seconds it has run so far. "
                    "Left out when unknown, never null (the incumbent's page renders any value it finds).",
    )
    progress: float | None = Field(default=None, exclude_if=lambda v: v is None,
                                   description="0-100; left out when unknown (the page renders any value it finds).")
    progress_message: str | None = None
    current_item: Any = None
    total_items: int | None = None
    processed_items: int | None = None
    heartbeat_at: str | None = None
    updated_at: str | None = None
    source_used: str | None = None
    source_attempts: Any = None
    return_value: str | None = Field(
        default=None, description="The run's result as text, as the incumbent stored `str(result)`: our records' "
                                  "counts as JSON text.")
    result: Any = Field(default=None, description="The run's result as stored (the counts object of our records).")
    error_message: str | None = None
    traceback: str | None = None
    cancel_requested: bool | None = None
    reason: str | None = None
    gaps: Any = Field(default=None, description="daily and financial runs: per symbol, the trading sessions (or "
                      "report periods) still missing after the run, and suspensions apart (docs/data.md).")


class ExecutionPage(BaseModel):
    items: list[ExecutionPublic]
    total: int = Field(description="Records matching the filters.")
    limit: int
    offset: int


class LastExecutionBrief(BaseModel):
    run_id: str
    status: str | None
    timestamp: str | None
    execution_time: float | None = Field(default=None, exclude_if=lambda v: v is None,
                                         description="Duration in seconds; left out when unknown (a running run).")


class ExecutionStats(BaseModel):
    """Counts and durations over a job's records (within the retention period)."""

    total: int = Field(description="All records, running ones included.")
    success: int
    failed: int
    missed: int
    cancelled: int
    skipped: int
    running: int = Field(description="Records running now.")
    avg_execution_time: float = Field(description="Mean duration of successful runs, seconds rounded to 2 places, "
                                                  "as the incumbent's (0 when none).")
    p50_execution_time: float | None = Field(description="Median duration of successful runs, seconds.")
    p95_execution_time: float | None = Field(description="95th percentile duration of successful runs, seconds.")
    success_rate: float | None = Field(
        description="success / (success + failed + missed); skipped and cancelled runs are not counted. "
        "Null when there is no such run."
    )
    last_execution: LastExecutionBrief | None = Field(description="The newest record, whatever its status.")
    with_gaps: int = Field(default=0, description="Records whose run left sessions or report periods missing.")


class CancelResult(BaseModel):
    execution_id: str
    job_id: str | None
    cancel_requested: bool
    token: str | None = Field(description="The cancel-at token set on the SyncJob (null if the SyncJob is gone).")


class MarkFailedResult(BaseModel):
    execution_id: str
    status: str
    reason: str
    stopped_pods: list[str] = Field(default_factory=list, description="Pods of the run's Job that were still "
                                    "alive; their Job was deleted so that they stop.")


class DeleteResult(BaseModel):
    execution_id: str
    deleted: bool


class HistoryEntry(BaseModel):
    """One audited action from scheduler_history."""

    id: str
    job_id: str | None
    namespace: str | None = None
    action: str | None = Field(description="pause, resume, trigger, metadata, cancel, mark-failed or delete.")
    status: str | None = Field(
        description="success, failed, denied, or pending (its API process stopped before the outcome).")
    user: str | None = None
    via: str | None = Field(default=None, description="api or kubectl.")
    target: str | None = Field(default=None, description="The job or execution id acted on.")
    details: dict[str, Any] | None = None
    error_message: str | None = None
    timestamp: str | None = None


class HistoryPage(BaseModel):
    history: list[HistoryEntry]
    total: int
    limit: int
    offset: int


# -- stats and health ------------------------------------------------------------------------------------------


class SchedulerStats(BaseModel):
    total_jobs: int = Field(description="SyncJobs served (in the watched namespaces).")
    running_jobs: int = Field(
        description="SyncJobs that are not paused (their schedule is active), as the seed meant it; "
        "not runs in progress: see executions_running."
    )
    paused_jobs: int = Field(description="SyncJobs with spec.paused.")
    executions_running: int = Field(description="Execution records in status running now.")
    scheduler_running: bool = Field(description="The operator is alive (its Lease was renewed recently).")
    scheduler_state: int = Field(description="1 when the operator is alive, 0 when not (APScheduler's numbering).")


class ComponentHealth(BaseModel):
    ok: bool
    message: str


class OperatorHealth(ComponentHealth):
    renew_time: str | None = Field(description="Last renewal of the operator's Lease.")
    age_seconds: float | None = Field(description="Seconds since that renewal.")


class CacheHealth(ComponentHealth):
    synced: bool = Field(description="The SyncJob cache has listed at least once.")
    stale: bool = Field(description="The watch is failing; reads serve the last known SyncJobs.")
    stale_seconds: float | None
    last_synced_at: str | None = Field(description="Last successful list.")
    jobs: int


class HealthComponents(BaseModel):
    kubernetes: ComponentHealth
    mongodb: ComponentHealth
    operator: OperatorHealth
    cache: CacheHealth


class Health(BaseModel):
    status: Literal["healthy", "unhealthy"] = Field(description="unhealthy when any component is down.")
    running: bool = Field(description="The operator is alive (the seed's field).")
    state: int = Field(description="1 when the operator is alive, else 0 (the seed's field).")
    down: list[str] = Field(description="Names of the components that are down.")
    components: HealthComponents
    timestamp: str

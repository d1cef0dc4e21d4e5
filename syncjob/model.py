"""The one typed model of a SyncJob, its spec and its status.

The operator builds CronJobs from it, the API serves it, the tests and samples are validated by it, and
`syncjob.crd` generates the CRD's OpenAPI schema from it, so a field is changed in exactly one place.
Python names are snake_case; the Kubernetes names are the camelCase aliases.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator
from pydantic.alias_generators import to_camel

from syncjob import names

# Kubernetes object names: a Job is named `<syncjob>-<suffix>` and its pods add 6 more characters, within the
# 63-character label limit; the CronJob controller itself rejects CronJob names longer than 52.
MAX_NAME_LENGTH = 40


def _rfc3339(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Timestamp = Annotated[dt.datetime, PlainSerializer(_rfc3339, return_type=str, when_used="json")]


class Task(StrEnum):
    """What a run syncs, and into which collection."""

    BASICS = "basics"
    QUOTES = "quotes"
    DAILY = "daily"
    FINANCIAL = "financial"
    STATUS = "status"


class Source(StrEnum):
    """A market-data source the sync image can fetch from."""

    TUSHARE = "tushare"
    AKSHARE = "akshare"
    BAOSTOCK = "baostock"
    FILE = "file"


class ConcurrencyPolicy(StrEnum):
    FORBID = "Forbid"
    ALLOW = "Allow"
    REPLACE = "Replace"


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def to_k8s(self) -> dict[str, Any]:
        """The object as the Kubernetes API spells it: camelCase, RFC 3339 times, unset fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# The pod contract's variables (DESIGN.md) are the operator's: a pod template's extra env may not set them, nor any
# future one (they all start with SYNC_ or SYNCJOB_).
CONTRACT_ENV_PREFIXES = ("SYNC_", "SYNCJOB_")
CONTRACT_ENV = frozenset({"MONGO_URI", "TUSHARE_TOKEN"})


Quantity = int | float | str


class ResourceRequirements(CamelModel):
    """Compute resources of the sync container, merged by key over the operator's defaults."""

    requests: dict[str, Quantity] | None = Field(default=None, description="e.g. {cpu: 500m, memory: 1Gi}.")
    limits: dict[str, Quantity] | None = Field(default=None, description="e.g. {memory: 2Gi}.")


class Toleration(CamelModel):
    """A core/v1 Toleration."""

    key: str | None = Field(default=None, description="Taint key; empty with operator Exists matches all taints.")
    operator: str | None = Field(default=None, description="Exists or Equal (default).")
    value: str | None = Field(default=None, description="Taint value, with operator Equal.")
    effect: str | None = Field(default=None, description="NoSchedule, PreferNoSchedule or NoExecute; empty: all.")
    toleration_seconds: int | None = Field(default=None, description="How long a NoExecute taint is tolerated.")


class LocalObjectReference(CamelModel):
    name: str = Field(min_length=1, description="Name of a Secret in the SyncJob's namespace.")


class EnvVar(CamelModel):
    """A core/v1 EnvVar: a value, or a valueFrom (secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef)."""

    name: str = Field(min_length=1, description="Variable name; the pod contract's own (SYNC_*, SYNCJOB_*, "
                      "MONGO_URI, TUSHARE_TOKEN) are refused.")
    value: str | None = Field(default=None, description="Literal value.")
    value_from: dict[str, Any] | None = Field(default=None, description="Source of the value, as in core/v1.")


class PodTemplate(CamelModel):
    """What users may set on the pods of their runs; the rest of the pod (the contract) is the operator's.

    Set operator-wide with the operator's SYNC_POD_TEMPLATE (JSON or YAML) and per SyncJob with spec.podTemplate;
    the SyncJob wins: maps (nodeSelector, resources' requests and limits) merge by key, env merges by name,
    every other field replaces.
    """

    resources: ResourceRequirements | None = Field(default=None, description="Requests and limits of the sync "
                                                   "container, merged by key over the operator's defaults.")
    node_selector: dict[str, str] | None = Field(default=None, description="Node labels the pod must match.")
    tolerations: list[Toleration] | None = Field(default=None, description="Taints the pod tolerates.")
    affinity: dict[str, Any] | None = Field(default=None, description="A core/v1 Affinity (node, pod, anti).")
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        default=None, description="Secrets for pulling the sync image from a private registry.")
    env: list[EnvVar] | None = Field(default=None, description="Extra environment of the sync container (proxies, "
                                     "library settings); merged by name.")
    host_network: bool | None = Field(
        default=None, description="Run on the node's network (the project's test bed: loopback only). Needs a "
        "namespace whose Pod Security level allows it (privileged).")
    priority_class_name: str | None = Field(default=None, description="PriorityClass of the run pods.")

    @field_validator("env")
    @classmethod
    def _not_the_contract(cls, env: list[EnvVar] | None) -> list[EnvVar] | None:
        names_ = {e.name for e in env or []}
        taken = sorted(n for n in names_ if n in CONTRACT_ENV or n.startswith(CONTRACT_ENV_PREFIXES))
        if taken:
            raise ValueError(f"env may not set the pod contract's variables: {', '.join(taken)}")
        return env


class SyncJobSpec(CamelModel):
    """Desired state of a market-data sync job. The operator never writes it."""

    task: Task = Field(description="What to sync: basics, quotes, daily, financial or status.")
    schedule: str = Field(
        description="Five-field cron expression (minute hour day-of-month month day-of-week; 0 or 7 = Sunday, "
        "1-5 = Monday to Friday), evaluated in timeZone.",
        min_length=1,
    )
    time_zone: str = Field(
        default="Asia/Shanghai", description="IANA time zone of the schedule, passed to CronJob.spec.timeZone."
    )
    sources: list[Source] = Field(
        default_factory=lambda: [Source.TUSHARE, Source.AKSHARE, Source.BAOSTOCK],
        min_length=1,
        max_length=4,
        description="Data sources in priority order; the first is preferred and the next ones are fallbacks.",
    )
    paused: bool = Field(
        default=False,
        description="Suspend scheduled runs (mirrored to CronJob.spec.suspend). Running runs are not touched and "
        "manual runs still start. Leave it out of Git if the API or kubectl should be able to pause.",
    )
    display_name: str | None = Field(default=None, max_length=200, description="Human-readable name shown by the API.")
    description: str | None = Field(default=None, max_length=2000, description="What the job does, shown by the API.")
    trading_hours_only: bool = Field(
        default=False,
        description="Outside the A-share trading sessions a scheduled run records `skipped` and exits, unless forced.",
    )
    concurrency_policy: ConcurrencyPolicy = Field(
        default=ConcurrencyPolicy.FORBID,
        description="What to do when a run is due while the previous one still runs: Forbid skips the new run, "
        "Allow runs both, Replace cancels the old one.",
    )
    starting_deadline_seconds: int | None = Field(
        default=300, ge=10, description="A scheduled run that cannot start within this many seconds is missed."
    )
    active_deadline_seconds: int | None = Field(
        default=None, ge=1,
        description="A run still going after this many seconds is stopped and recorded failed (DeadlineExceeded). "
        "Unset: the task's default (quotes 900, status 600, basics 3600; daily and financial none, since a first "
        "full backfill takes hours: a run that stops heartbeating is failed LostHeartbeat instead).",
    )
    backoff_limit: int = Field(
        default=0, ge=0, le=10,
        description="Pod retries per run; retries normally happen inside the pod, per source and batch.",
    )
    successful_jobs_history_limit: int = Field(
        default=3, ge=0, le=100, description="Finished successful Jobs kept in the cluster (records stay in MongoDB)."
    )
    failed_jobs_history_limit: int = Field(
        default=3, ge=0, le=100, description="Finished failed Jobs kept in the cluster (records stay in MongoDB)."
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Task parameters passed to the pod as SYNC_OPTIONS, e.g. {incremental: true}, {periods: 8}, "
        "{codes: [600000.SH]}.",
    )
    pod_template: PodTemplate | None = Field(
        default=None,
        description="Placement, resources, pull secrets, extra env and host networking of this job's run pods, "
        "over the operator's SYNC_POD_TEMPLATE defaults (docs/deploy.md).",
    )

    @field_validator("sources")
    @classmethod
    def _unique_sources(cls, sources: list[Source]) -> list[Source]:
        if len(set(sources)) != len(sources):
            raise ValueError("sources must not repeat a source")
        return sources


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(CamelModel):
    """A Kubernetes-style condition: exactly the fields the API conventions name."""

    type: str = Field(description="Condition type, e.g. Ready.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason, e.g. Reconciled or InvalidSpec.")
    message: str = Field(default="", description="Human-readable detail.")
    last_transition_time: Timestamp = Field(description="When status last changed.")
    observed_generation: int | None = Field(default=None, description="The generation this condition describes.")


class ExecutionStatus(StrEnum):
    """Status of one run in scheduler_executions (a contract with the incumbent's readers)."""

    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    MISSED = "missed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self is not ExecutionStatus.RUNNING


class ExecutionSummary(CamelModel):
    """The last finished run, as recorded in scheduler_executions."""

    run_id: str = Field(description="Run id: the Job name and the _id of its execution record.")
    status: ExecutionStatus = Field(description="success, failed, missed, skipped or cancelled.")
    trigger: str | None = Field(default=None, description="schedule or manual.")
    started_at: Timestamp | None = Field(default=None, description="When the run started.")
    finished_at: Timestamp | None = Field(default=None, description="When the run ended.")
    duration_seconds: float | None = Field(default=None, description="Wall time of the run in seconds.")
    source: str | None = Field(default=None, description="The source that delivered the data.")
    message: str | None = Field(default=None, description="Error message or reason, if any.")


class ScheduleScan(CamelModel):
    """Where the operator's search for runs the schedule should have started but did not has got to.

    Kept in status, not in memory, so an operator restart or a spec edit neither invents misses nor loses one.
    """

    schedule: str = Field(description="The cron expression the scan position refers to.")
    time_zone: str = Field(description="Its time zone.")
    scanned_until: Timestamp = Field(description="Scheduled times up to here have been judged.")
    paused_since: Timestamp | None = Field(default=None, description="When scheduled runs were paused, if they are.")
    pending: list[Timestamp] = Field(
        default_factory=list, max_length=100,
        description="Times due under an earlier schedule whose starting deadline had not passed when it changed.")


class ActiveRun(CamelModel):
    run_id: str = Field(description="Run id of the active run.")
    job_name: str = Field(description="Name of its Job.")


class SyncJobStatus(CamelModel):
    """Observed state, written only by the operator."""

    observed_generation: int | None = Field(default=None, description="The spec generation last reconciled.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready, with reason and message.")
    cron_job_name: str | None = Field(default=None, description="Name of the owned CronJob.")
    cron_job_generation: int | None = Field(
        default=None, description="The CronJob's generation after the operator last applied it: a different live "
                                  "generation means someone else changed it since.")
    next_schedule_time: Timestamp | None = Field(default=None, description="Next scheduled run (absent when paused).")
    last_schedule_time: Timestamp | None = Field(default=None, description="When a run was last scheduled.")
    last_successful_time: Timestamp | None = Field(default=None, description="When a run last succeeded.")
    last_failure_time: Timestamp | None = Field(default=None, description="When a run last failed.")
    last_execution: ExecutionSummary | None = Field(default=None, description="The last finished run.")
    active: list[ActiveRun] = Field(default_factory=list, description="Runs in progress.")
    last_handled_requested_at: str | None = Field(
        default=None, description="The last requested-at token acted on (Flux's lastHandledReconcileAt)."
    )
    last_handled_force_at: str | None = Field(default=None, description="The last force-at token acted on.")
    last_handled_cancel_at: str | None = Field(default=None, description="The last cancel-at token acted on.")
    schedule_scan: ScheduleScan | None = Field(
        default=None, description="The missed-run scan's position (the operator's bookkeeping).")

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


class ObjectMeta(BaseModel):
    """The part of metadata this project reads; everything else is kept as it came."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, alias_generator=to_camel)

    name: str = Field(max_length=MAX_NAME_LENGTH, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    creation_timestamp: Timestamp | None = None


class SyncJob(CamelModel):
    """A SyncJob custom resource."""

    model_config = ConfigDict(extra="ignore")

    api_version: str = names.API_VERSION
    kind: str = names.KIND
    metadata: ObjectMeta
    spec: SyncJobSpec
    status: SyncJobStatus = Field(default_factory=SyncJobStatus)

    @classmethod
    def from_k8s(cls, obj: dict[str, Any]) -> SyncJob:
        """Parse an object as the Kubernetes API returns it (status may be absent or partial)."""
        return cls.model_validate(obj)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or "default"

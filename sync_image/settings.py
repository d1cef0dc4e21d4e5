"""The pod contract, parsed: the only inputs the sync image reads (docs/pod-contract.md).

The environment variables are fixed by the operator that renders the pod. Tunables that are not part of the
contract (batch sizes, error ratio, heartbeat interval, retry budget, tushare quotas) are optional keys of
SYNC_OPTIONS next to the task's own parameters, with defaults here.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from sync_image import codes as codelib
from syncjob import runs
from syncjob.model import ConcurrencyPolicy, Source, Task

DEFAULT_DATABASE = "tradingagents"
# tushare: "15点到16点之间入库"; akshare (eastmoney): final once the close is in; baostock: 17:30.
PUBLICATION_DELAY_MINUTES = {"tushare": 60.0, "akshare": 15.0, "baostock": 150.0, "file": 0.0}


class SyncOptions(BaseModel):
    """SYNC_OPTIONS: task parameters and tunables. Unknown keys are kept and reported as a warning."""

    model_config = ConfigDict(extra="allow")

    codes: list[str] | None = Field(default=None, description="Limit the run to these codes (any spelling).")
    incremental: bool = Field(default=True, description="daily: start each symbol after its last stored bar.")
    start_date: dt.date | None = Field(default=None, description="daily: back-fill start for symbols with no bars "
                                       "(or the range start when not incremental).")
    end_date: dt.date | None = Field(default=None, description="daily: last date to fetch (default today).")
    backfill_days: int = Field(default=30, ge=1, le=20000, description="daily: back-fill depth without start_date.")
    periods: int = Field(default=4, ge=1, le=80, description="financial: report periods per symbol.")
    file_dir: str | None = Field(default=None, description="file source: folder (default: the shipped sample).")
    file_delay_seconds: float = Field(default=0.0, ge=0.0, le=3600.0,
                                      description="file source: sleep this long in each fetch call, to simulate a "
                                      "slow source in demos and tests (a cancel or SIGTERM interrupts it).")
    batch_size: int = Field(default=50, ge=1, le=10000, description="Symbols per fetch batch (per fallback try).")
    write_batch_size: int = Field(default=1000, ge=1, le=100000, description="Documents per bulk write.")
    max_error_ratio: float = Field(default=0.1, ge=0.0, le=1.0,
                                   description="A run with more failed items than this share is failed.")
    heartbeat_seconds: float = Field(default=10.0, gt=0, le=15.0, description="Heartbeat interval (at most 15 s).")
    progress_interval_seconds: float = Field(default=1.0, ge=1.0, description="Minimum time between progress writes.")
    mongo_retry_seconds: float = Field(default=300.0, ge=0, description="How long to retry MongoDB before failing.")
    source_timeout_seconds: float = Field(default=30.0, gt=0, description="Network timeout of each source call.")
    tushare_rate_limits: dict[str, float] = Field(default_factory=dict,
                                                  description="Calls per minute per tushare API, e.g. {daily: 500}.")
    source_rate_limits: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Calls per minute by source and API or site, e.g. {akshare: {eastmoney: "
        "60}} (defaults: tushare per its docs' lowest paid tier, akshare eastmoney 120, sina 10).")
    rate_margin: float = Field(default=0.95, gt=0, le=1.0, description="Share of each quota the run asks for: "
                               "evenly spaced calls still reach a server a few milliseconds early or late.")
    source_concurrency: dict[str, int] = Field(
        default_factory=dict, description="Calls in flight at once by source (defaults: tushare 8, akshare 2, "
        "baostock 1: its one session, file 4).")
    concurrency: int | None = Field(default=None, ge=1, le=256, description="Batches fetched at once (default: the "
                                    "largest concurrency among the run's sources).")
    share_quotas: bool = Field(default=True, description="Share each source account's rate limits with every run "
                               "using it at the same time, through the source_quotas collection.")
    publication_delay_minutes: dict[str, float] = Field(
        default_factory=lambda: dict(PUBLICATION_DELAY_MINUTES),
        description="daily: how long after the 15:00 close each source publishes a session's bars; a bar is "
        "stored only once its session closed and this delay passed.")
    repair_gaps: bool = Field(default=False, description="daily: also fetch the sessions missing between each "
                              "symbol's window start and the last closed session (see the run's `gaps`).")
    gap_symbols_listed: int = Field(default=100, ge=0, le=5000,
                                    description="How many symbols the gap report lists by name.")

    @field_validator("codes")
    @classmethod
    def _canonical_codes(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        return list(dict.fromkeys(codelib.normalise(c) for c in value))

    @property
    def unknown_keys(self) -> list[str]:
        return sorted((self.model_extra or {}).keys())


def _flag(value: Any) -> Any:
    if isinstance(value, str) and value.strip() == "":
        return False
    return value


_SCHEDULED_SUFFIX = re.compile(r"-(\d{7,10})$")


class PodSettings(BaseSettings):
    """The pod's environment. Names are the contract's, exactly."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", populate_by_name=True)

    namespace: str = Field(validation_alias="SYNCJOB_NAMESPACE", min_length=1)
    job_name: str = Field(validation_alias="SYNCJOB_NAME", min_length=1)
    task: Task = Field(validation_alias="SYNC_TASK")
    sources: Annotated[list[Source], NoDecode] = Field(validation_alias="SYNC_SOURCES", min_length=1)
    options: Annotated[SyncOptions, NoDecode] = Field(default_factory=SyncOptions, validation_alias="SYNC_OPTIONS")
    trading_hours_only: bool = Field(default=False, validation_alias="SYNC_TRADING_HOURS_ONLY")
    force: bool = Field(default=False, validation_alias="SYNC_FORCE")
    trigger: str = Field(default="schedule", validation_alias="SYNC_TRIGGER", pattern="^(schedule|manual)$")
    k8s_job: str = Field(validation_alias="SYNC_RUN_ID", min_length=1)  # the Job name (downward API)
    pod_name: str = Field(default="", validation_alias="SYNC_POD_NAME", validate_default=True)
    concurrency_policy: ConcurrencyPolicy = Field(default=ConcurrencyPolicy.ALLOW,
                                                  validation_alias="SYNC_CONCURRENCY_POLICY")
    backoff_limit: int = Field(default=0, ge=0, validation_alias="SYNC_BACKOFF_LIMIT")
    scheduled_time: dt.datetime | None = Field(default=None, validation_alias="SYNC_SCHEDULED_TIME")
    mongo_uri: str = Field(validation_alias="MONGO_URI", min_length=1)
    tushare_token: str = Field(default="", validation_alias="TUSHARE_TOKEN", repr=False)

    @field_validator("sources", mode="before")
    @classmethod
    def _split_sources(cls, value: Any) -> Any:
        if isinstance(value, str):
            names = [part.strip() for part in value.split(",") if part.strip()]
            if len(set(names)) != len(names):
                raise ValueError("SYNC_SOURCES repeats a source")
            return names
        return value

    @field_validator("options", mode="before")
    @classmethod
    def _parse_options(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return {}
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"SYNC_OPTIONS is not valid JSON: {exc}") from exc
            if not isinstance(parsed, dict):
                raise ValueError("SYNC_OPTIONS must be a JSON object")
            return parsed
        return value

    @field_validator("trading_hours_only", "force", mode="before")
    @classmethod
    def _blank_is_false(cls, value: Any) -> Any:
        return _flag(value)

    @field_validator("concurrency_policy", "backoff_limit", mode="before")
    @classmethod
    def _blank_is_default(cls, value: Any, info: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return ConcurrencyPolicy.ALLOW if info.field_name == "concurrency_policy" else 0
        return value.strip() if isinstance(value, str) else value

    @field_validator("pod_name", mode="before")
    @classmethod
    def _default_pod_name(cls, value: Any) -> Any:
        """Unset outside a rendered pod: a pod's hostname is its name."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return os.environ.get("HOSTNAME") or socket.gethostname()
        return value

    @property
    def run_id(self) -> str:
        """The run's id, the `_id` of its execution record: `<namespace>.<job name>`."""
        return runs.run_id(self.namespace, self.k8s_job)

    @field_validator("trigger", mode="before")
    @classmethod
    def _default_trigger(cls, value: Any) -> Any:
        return "schedule" if value in (None, "") else value

    @field_validator("scheduled_time", mode="before")
    @classmethod
    def _blank_time(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("scheduled_time")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("SYNC_SCHEDULED_TIME must be RFC 3339 with a time zone")
        return value.astimezone(dt.UTC) if value is not None else None

    @model_validator(mode="after")
    def _scheduled_time_from_job_name(self) -> PodSettings:
        """A pod cannot read its Job's scheduled-timestamp annotation, but the CronJob controller names a scheduled
        run's Job `<cronjob>-<scheduled time in minutes since the epoch>`: the trading-hours check then judges the
        time the run was due, not the second its pod happened to start (a 15:00 tick starting at 15:00:05)."""
        if self.scheduled_time is None and self.trigger == "schedule":
            match = _SCHEDULED_SUFFIX.search(self.k8s_job)
            if match:
                self.scheduled_time = dt.datetime.fromtimestamp(int(match.group(1)) * 60, dt.UTC)
        return self


def describe_error(exc: ValidationError) -> str:
    """A validation error as one line naming the environment variables at fault."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "environment"
        parts.append(f"{where}: {error['msg']}")
    return "invalid pod configuration: " + "; ".join(parts)

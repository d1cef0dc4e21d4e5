"""Settings of the API process, read from the environment (pydantic-settings).

One place lists every knob and its default; `create_app(settings)` takes an instance, so tests build apps with
their own settings. Static token mode refuses to start without a tokens file: there is no default secret.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from syncjob.mongo import DEFAULT_RETENTION_DAYS


class AuthMode(StrEnum):
    STATIC = "static"  # bearer tokens from a YAML file (mounted from a Secret in Kubernetes)
    KUBERNETES = "kubernetes"  # TokenReview for identity, SubjectAccessReview on syncjobs for the role


class Settings(BaseSettings):
    """The API's configuration; every field is an environment variable of the same name in upper case."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    mongo_uri: str = Field(
        default="mongodb://127.0.0.1:27017/tradingagents",
        description="MongoDB URI; its path names the database (default tradingagents).",
    )
    mongo_timeout_ms: int = Field(
        default=3000, ge=100, le=60000,
        description="Server selection and socket timeout: how long a request waits before answering 503.",
    )
    auth_mode: AuthMode = Field(default=AuthMode.STATIC, description="static or kubernetes.")
    auth_tokens_file: Path | None = Field(
        default=None, description="Static mode: YAML list of {token, user, role: viewer|admin, namespaces?: [...]} "
                                  "(without namespaces, the role holds in every namespace)."
    )
    auth_cache_seconds: float = Field(
        default=10, ge=0, le=300,
        description="Kubernetes mode: how long a TokenReview or SubjectAccessReview answer is reused.",
    )
    watch_namespace: str = Field(
        default="", description="Namespace whose SyncJobs are served; empty = all (each caller sees the namespaces "
                                "it may list). Records with no namespace (the incumbent's) belong to it.")
    operator_namespace: str = Field(default="syncjob-system", description="Where the operator renews its Lease.")
    operator_lease_max_age_seconds: float = Field(
        default=45, gt=0, description="The operator counts as down when its Lease was renewed longer ago than this."
    )
    execution_retention_days: int = Field(
        default=DEFAULT_RETENTION_DAYS, ge=1, le=3650,
        description="TTL of execution records and audit entries, in days.",
    )
    api_host: str = Field(default="127.0.0.1", description="Address uvicorn binds.")
    api_port: int = Field(default=8000, ge=1, le=65535, description="Port uvicorn binds.")
    kubeconfig: str | None = Field(
        default=None, description="KUBECONFIG path; unset = in-cluster service account, then ~/.kube/config."
    )
    trigger_wait_seconds: float = Field(
        default=3, ge=0, le=3, description="How long a trigger waits for the operator to create the run's Job."
    )
    trigger_force_wait_seconds: float = Field(
        default=5, ge=0, le=30,
        description="How long a forced trigger waits for a pending unforced request to be started before it "
                    "answers 409 (a forced request never joins an unforced one).",
    )
    watch_timeout_seconds: int = Field(
        default=300, ge=10, description="Server-side timeout of one SyncJob watch request before it is renewed."
    )
    cache_sync_timeout_seconds: float = Field(
        default=10, ge=0, description="How long start-up waits for the first SyncJob list before serving."
    )
    default_time_zone: str = Field(
        default="Asia/Shanghai", description="Time zone for records whose SyncJob is unknown (the SyncJob default)."
    )

    @field_validator("default_time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _static_needs_tokens(self) -> Settings:
        if self.auth_mode is AuthMode.STATIC:
            if self.auth_tokens_file is None:
                raise ValueError("AUTH_MODE=static needs AUTH_TOKENS_FILE (a YAML list of {token, user, role})")
            if not self.auth_tokens_file.is_file():
                raise ValueError(f"AUTH_TOKENS_FILE {self.auth_tokens_file} is not a readable file")
        return self

"""Operator configuration, read once from the environment (pydantic-settings)."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

import yaml
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from syncjob.model import PodTemplate


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    mongo_uri: str = Field(description="MongoDB URI for execution records; the database is the URI's path.")
    watch_namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Namespaces to watch (comma list); empty watches the whole cluster."
    )
    operator_namespace: str = Field(default="syncjob-system", description="Where the operator's Lease lives.")
    sync_image: str = Field(default="ghcr.io/tradingagents/syncjob-sync:0.1.0", description="Image of sync pods.")
    sync_image_pull_policy: str = "IfNotPresent"
    sync_command: list[str] = Field(default_factory=lambda: ["syncjob-sync", "run"],
                                    description="Command of the sync container (JSON list).")
    mongo_secret_name: str = Field(default="syncjob-mongo",
                                   description="Secret in the SyncJob's namespace with key MONGO_URI for sync pods.")
    tushare_secret_name: str = Field(default="syncjob-tushare",
                                     description="Optional Secret with key TUSHARE_TOKEN for sync pods.")
    sync_service_account: str = Field(
        default="", description="ServiceAccount of sync pods in each SyncJob's namespace (manifests/sync-namespace "
                                "makes `syncjob-sync`, with no rights); empty: the namespace's default account.")
    sync_pod_template: Annotated[PodTemplate, NoDecode] = Field(
        default_factory=PodTemplate,
        description="Defaults for every run pod (JSON or YAML of a SyncJob's spec.podTemplate: resources, "
                    "nodeSelector, tolerations, affinity, imagePullSecrets, env, hostNetwork, priorityClassName); "
                    "a SyncJob's own spec.podTemplate wins.")
    sync_cpu_request: str = "100m"
    sync_memory_request: str = "256Mi"
    sync_memory_limit: str = "1Gi"
    cancel_grace_seconds: int = Field(default=30, ge=0,
                                      description="After a cancel, how long the pod may stop on its own before its "
                                                  "Job is deleted.")
    resync_seconds: float = Field(default=60, gt=0,
                                  description="Period of the level-based re-check of every SyncJob; the passes are "
                                              "spread evenly over it.")
    handler_threads: int = Field(default=16, ge=1,
                                 description="Threads for handler work that blocks on the API server or MongoDB.")
    missed_lookback_seconds: int = Field(default=6 * 3600, ge=60,
                                         description="How far back a (re)started operator looks for missed runs.")
    lost_heartbeat_seconds: float = Field(
        default=300, gt=0, description="A running record whose pod is gone and whose heartbeat is older than this is "
                                       "failed LostHeartbeat (sync pods heartbeat every 10-15 s).")
    lease_renew_seconds: float = Field(default=10, gt=0)
    webhook_port: int | None = Field(
        default=None, description="Port of the validating admission webhook (HTTPS); unset: no webhook, and a bad "
                                  "cron or time zone shows only in the Ready condition.")
    webhook_addr: str = Field(default="0.0.0.0", description="Address the webhook listens on.")
    webhook_cert_file: str = Field(default="/etc/syncjob-operator/webhook/tls.crt",
                                   description="Serving certificate of the webhook (PEM), e.g. from cert-manager.")
    webhook_key_file: str = Field(default="/etc/syncjob-operator/webhook/tls.key",
                                  description="Private key of the serving certificate (PEM).")
    log_format: Literal["json", "text"] = Field(
        default="json", description="json: one JSON object per line, with the Kubernetes object a line is about.")
    server_timeout_seconds: int = Field(default=300, description="Watch request timeout given to the API server.")

    @field_validator("sync_pod_template", mode="before")
    @classmethod
    def _yaml_or_json(cls, value: object) -> object:
        if isinstance(value, str):
            return yaml.safe_load(value) or {}  # JSON is YAML too
        return value

    @field_validator("watch_namespaces", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value


@lru_cache(maxsize=1)
def get_settings() -> OperatorSettings:
    return OperatorSettings()  # type: ignore[call-arg]

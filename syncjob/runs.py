"""Run ids: how a run's Job is named and how its execution record is keyed, shared by every component.

A run is a Job. Job names are unique only within a namespace (two namespaces with a SyncJob of the same name get
Jobs of the same name at the same minute), so a run's id, the `_id` of its record in `scheduler_executions`, is
`<namespace>.<job name>`: a dot can appear in neither a namespace nor one of our Job names (a SyncJob name is a DNS
label, and so is the suffix we or the CronJob controller add), so the id splits back unambiguously and needs no
escaping in a URL path (docs/mongodb.md).

A manual run's Job name derives from the SyncJob name and the request token, so creating it is idempotent: the
same token can never start two runs, even across operator restarts, and the API can tell the caller the run id
before the operator has acted.
"""

from __future__ import annotations

import datetime as dt
import hashlib

SEPARATOR = "."


def manual_job_name(syncjob_name: str, token: str) -> str:
    """The Job of the run a request token asks for."""
    digest = hashlib.sha256(token.encode()).hexdigest()[:10]
    return f"{syncjob_name}-m{digest}"


def scheduled_job_name(cronjob_name: str, scheduled: dt.datetime) -> str:
    """The name the CronJob controller gives the Job of a scheduled time (minutes since the epoch)."""
    return f"{cronjob_name}-{int(scheduled.timestamp()) // 60}"


def run_id(namespace: str, job_name: str) -> str:
    """The id of a run (and of its execution record): namespace and Job name."""
    return f"{namespace}{SEPARATOR}{job_name}"


def manual_run_id(namespace: str, syncjob_name: str, token: str) -> str:
    return run_id(namespace, manual_job_name(syncjob_name, token))


def scheduled_run_id(namespace: str, cronjob_name: str, scheduled: dt.datetime) -> str:
    return run_id(namespace, scheduled_job_name(cronjob_name, scheduled))


def split_run_id(value: str) -> tuple[str, str] | None:
    """(namespace, Job name) of a run id; None for an id that is not ours (the incumbent's ObjectIds)."""
    namespace, sep, job_name = value.partition(SEPARATOR)
    if not sep or not namespace or not job_name:
        return None
    return namespace, job_name


def job_id_aliases(job_id: str) -> list[str]:
    """A SyncJob name for a job id; the incumbent's underscore ids (tushare_quotes_sync) name the same job."""
    normalised = job_id.replace("_", "-")
    return [normalised] if normalised == job_id else [normalised, job_id]

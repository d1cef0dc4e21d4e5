"""Run ids: how a Job (and so an execution record) is named, shared by the operator and the API.

A manual run's Job name derives from the SyncJob name and the request token, so creating it is idempotent: the
same token can never start two runs, even across operator restarts, and the API can tell the caller the run id
before the operator has acted.
"""

from __future__ import annotations

import hashlib


def manual_run_id(syncjob_name: str, token: str) -> str:
    digest = hashlib.sha256(token.encode()).hexdigest()[:10]
    return f"{syncjob_name}-m{digest}"


def job_id_aliases(job_id: str) -> list[str]:
    """A SyncJob name for a job id; the incumbent's underscore ids (tushare_quotes_sync) name the same job."""
    normalised = job_id.replace("_", "-")
    return [normalised] if normalised == job_id else [normalised, job_id]

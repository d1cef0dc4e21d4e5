"""A manual run request: one request, one run, and every accepted answer names a run that will exist.

A trigger asks for a run by setting a new `requested-at` token on the SyncJob; the operator starts one Job per token
(its name derives from the token) and acknowledges it in `status.lastHandledRequestedAt`. Until then a newer token
would replace the older one and the older request's run would never exist, so the decision is made on the SyncJob
as the API server has it now, and the token is set only on that version of it:

1. The SyncJob's spec is invalid (Ready False, reason InvalidSpec, for the current generation): 422 with the
   condition's message. No token is written.
2. `concurrencyPolicy: Forbid` and a run of the SyncJob is active (a `running` record of its namespace and name, or
   `status.active` non-empty): 409 naming the active runs. No token is written. Replace and Allow accept the
   request (under Replace the operator cancels the active run, reason Replaced).
3. A token is pending (set, not yet acknowledged): the request JOINS that run and the answer names its run id with
   `joined: true`. A forced request never joins an unforced pending one (that would silently drop the force): it
   waits up to `TRIGGER_FORCE_WAIT_SECONDS` for the pending token to be acknowledged and decides again, and answers
   409 if it still is pending. An unforced request may join a forced pending run.
4. Otherwise a new token is set with a merge patch carrying `metadata.resourceVersion`; a 409 Conflict means the
   SyncJob changed since it was read (another trigger, the operator's status), so it is read again and the decision
   is made again, a bounded number of times.

The Forbid check is the API's answer to the caller; the operator's run slot (`syncjob.executions.claim_slot`) is what
keeps two runs from syncing at once when a scheduled run starts between the check and the operator acting.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pymongo.database import Database

from syncjob import names
from syncjob.runs import manual_run_id
from syncjob_api.services import executions, kubeops
from syncjob_api.services.jobs import stored_ids

MAX_CONFLICTS = 10
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Requested:
    """What a trigger came to: the run it names, and whether this request set its token or joined it."""

    token: str
    run_id: str
    force: bool
    joined: bool
    syncjob: dict[str, Any]  # the SyncJob as the API server returned it last


def invalid_spec(obj: dict[str, Any]) -> str | None:
    """The Ready condition's message when the operator judged the current spec invalid."""
    generation = (obj.get("metadata") or {}).get("generation")
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") != names.CONDITION_READY:
            continue
        observed = cond.get("observedGeneration")
        if (cond.get("status") == "False" and cond.get("reason") == names.REASON_INVALID_SPEC
                and (observed is None or observed == generation)):
            return str(cond.get("message") or "the spec is invalid")
    return None


def pending(obj: dict[str, Any]) -> tuple[str, bool] | None:
    """(token, forced) of a requested-at token the operator has not acknowledged yet."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    token = annotations.get(names.REQUESTED_AT)
    if not token or token == (obj.get("status") or {}).get("lastHandledRequestedAt"):
        return None
    return token, annotations.get(names.FORCE_AT) == token


def active_runs(db: Database[dict[str, Any]], obj: dict[str, Any], namespace: str, name: str) -> list[str]:
    """Runs of this SyncJob that are active: its running records and the runs its status lists."""
    found = executions.running_runs(db, namespace, stored_ids(name))
    for run in (obj.get("status") or {}).get("active") or []:
        rid = run.get("runId")
        if isinstance(rid, str) and rid not in found:
            found.append(rid)
    return found


def request_run(api: client.ApiClient, db: Database[dict[str, Any]], namespace: str, name: str, user: str,
                force: bool, force_wait_seconds: float) -> Requested:
    """Decide as the module docstring says, and set a token when a new run is to be requested."""
    deadline = time.monotonic() + force_wait_seconds
    conflicts = 0
    while True:
        obj = kubeops.get_syncjob(api, namespace, name)
        problem = invalid_spec(obj)
        if problem is not None:
            raise HTTPException(422, f"SyncJob {namespace}/{name} has an invalid spec, so no run was requested: "
                                     f"{problem}")
        if (obj.get("spec") or {}).get("concurrencyPolicy", "Forbid") == "Forbid":
            active = active_runs(db, obj, namespace, name)
            if active:
                raise HTTPException(409, f"SyncJob {namespace}/{name} has concurrencyPolicy Forbid and a run is "
                                         f"active ({', '.join(active)}), so no run was requested")
        waiting = pending(obj)
        if waiting is not None:
            token, forced = waiting
            if forced or not force:
                return Requested(token, manual_run_id(namespace, name, token), forced, True, obj)
            if time.monotonic() >= deadline:
                raise HTTPException(409, f"SyncJob {namespace}/{name} already has a run requested (token {token}, "
                                         "not forced) that the operator has not started yet; a forced request does "
                                         "not join an unforced one: try again once it has started")
            time.sleep(POLL_SECONDS)
            continue
        token = kubeops.new_token()
        annotations = {names.REQUESTED_AT: token, names.REQUESTED_BY: user}
        if force:
            annotations[names.FORCE_AT] = token
        version = (obj.get("metadata") or {}).get("resourceVersion")
        body = {"metadata": {"resourceVersion": version, "annotations": annotations}}
        try:
            patched = kubeops.patch_syncjob(api, namespace, name, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            conflicts += 1
            if conflicts >= MAX_CONFLICTS:
                raise HTTPException(409, f"SyncJob {namespace}/{name} kept changing while the request was being "
                                         "made, so no run was requested; try again") from exc
            continue
        return Requested(token, manual_run_id(namespace, name, token), force, False, patched)

"""The error answers each route documents in OpenAPI (all with the error envelope)."""

from __future__ import annotations

from typing import Any

from syncjob_api.models import ErrorEnvelope

_TEXT = {
    401: "No bearer token, or a token that is not valid.",
    403: "Authenticated, but not allowed (mutations need an admin).",
    404: "Unknown job or execution.",
    409: "The state of the job or execution does not allow this (see message).",
    422: "Invalid parameters (ranges, patterns, enums), or a trigger on a SyncJob whose spec is invalid.",
    503: "MongoDB or the Kubernetes API cannot be reached, or the SyncJob cache has not loaded yet.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorEnvelope, "description": _TEXT[code]} for code in codes}


READ = errors(401, 403, 422, 503)
READ_ONE = errors(401, 403, 404, 422, 503)
MUTATE = errors(401, 403, 404, 409, 422, 503)

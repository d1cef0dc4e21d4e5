"""One error model: every failure answers with the seed's envelope and the status code that says what happened.

FastAPI's own handlers answer `{"detail": ...}`; these replace them so 401/403/404/409/422/503 look alike.
Unreachable dependencies are 503 with a message naming them; nothing about a dependency's failure is swallowed into
an empty 200 (the incumbent's habit).

    HTTPException (401, 403, 404, 409 raised by the routes)       → that status
    RequestValidationError (bad query, path or body)             → 422, the first problems spelled out
    Unavailable / pymongo ConnectionFailure / urllib3 HTTPError  → 503
    kubernetes ApiException (the API's own request refused)      → 503, or 409/422 when the server says so
    anything else                                                 → 500, logged with its traceback
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kubernetes.client.exceptions import ApiException
from pymongo.errors import ConnectionFailure, PyMongoError
from starlette.exceptions import HTTPException as StarletteHTTPException
from urllib3.exceptions import HTTPError as Urllib3Error

from syncjob_api.core.timefmt import now_iso

log = logging.getLogger(__name__)


class Unavailable(Exception):
    """A dependency (MongoDB, the Kubernetes API, the SyncJob cache) cannot serve the request: 503."""


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"success": False, "data": None, "message": message, "timestamp": now_iso()}
    return JSONResponse(body, status_code=status, headers=headers)


def _loc(err: dict[str, Any]) -> str:
    parts = [str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body", "header")]
    return ".".join(parts) or "request"


def describe_validation(exc: RequestValidationError) -> str:
    problems = [f"{_loc(e)}: {e.get('msg', 'invalid')}" for e in exc.errors()[:5]]
    return "Invalid request: " + "; ".join(problems)


def describe_kube(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"Kubernetes API answered {exc.status} {exc.reason or ''}".strip()
    return f"Kubernetes API unreachable: {type(exc).__name__}"


def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))


def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, describe_validation(exc))


def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    return error_response(503, str(exc))


def _mongo(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, ConnectionFailure):
        log.warning("MongoDB unreachable during %s %s: %s", request.method, request.url.path, exc)
        return error_response(503, "MongoDB is unreachable; try again later")
    log.error("MongoDB refused a query during %s %s: %s", request.method, request.url.path, exc)
    return error_response(503, f"MongoDB error: {type(exc).__name__}")


def _kube_api(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiException)
    if exc.status in (409, 422):
        return error_response(exc.status, f"Kubernetes API refused the change: {exc.reason}")
    log.warning("Kubernetes API answered %s during %s %s", exc.status, request.method, request.url.path)
    return error_response(503, describe_kube(exc))


def _kube_transport(request: Request, exc: Exception) -> JSONResponse:
    log.warning("Kubernetes API unreachable during %s %s: %s", request.method, request.url.path, exc)
    return error_response(503, "Kubernetes API is unreachable; try again later")


def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.exception("Failed %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "Internal error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(Unavailable, _unavailable)
    app.add_exception_handler(PyMongoError, _mongo)
    app.add_exception_handler(ApiException, _kube_api)
    app.add_exception_handler(Urllib3Error, _kube_transport)
    app.add_exception_handler(Exception, _internal)

"""/api/scheduler/stream: live run progress as Server-Sent Events, for the dashboard and any other client.

A browser's EventSource cannot send an Authorization header, and a long-lived bearer token must not sit in a URL
(proxy and access logs keep URLs). So a client first asks for a **stream ticket** with its bearer token
(`POST /stream/ticket`, any authenticated reader): an HMAC-signed, 30-second ticket naming the user. It opens
`GET /stream/runs?ticket=...` with it (or with its Authorization header, for clients that can send one). A ticket
only opens a stream, only within its 30 seconds; a stream ends after STREAM_MAX_SECONDS (5 min) and the client
takes a new ticket to go on, so a revoked token stops streaming within minutes. The ticket key is random per
process unless STREAM_TICKET_SECRET is set (set it when several API replicas serve one Service without affinity).

The feed is one poller per API process, not one per client: while anyone listens it reads the running records
every 0.5 s with a projection (index `status, timestamp`), and for each run that stopped running it reads that
record once for its verdict. Each stream sends `snapshot` (all running runs) on connect, then `run` for every row
that changed and `end` (the finished row, with its verdict) for every run that stopped running; a comment line
every 15 s keeps proxies from closing an idle stream.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pymongo.errors import PyMongoError

from syncjob_api.api import responses
from syncjob_api.api.deps import Credentials, Ctx, CurrentUser, require_viewer
from syncjob_api.context import AppContext
from syncjob_api.core.timefmt import now_iso
from syncjob_api.dashboard_models import StreamTicket
from syncjob_api.models import Envelope
from syncjob_api.services import dashboard, executions
from syncjob_api.services.access import Scope

log = logging.getLogger(__name__)
router = APIRouter(prefix="/stream", tags=["stream"])

TICKET_SECONDS = 30
STREAM_MAX_SECONDS = float(os.environ.get("STREAM_MAX_SECONDS", "300"))
POLL_SECONDS = 0.5
_SECRET = os.environ.get("STREAM_TICKET_SECRET", "").encode() or secrets.token_bytes(32)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def issue_ticket(user: str, now: float | None = None, scope: Scope | None = None) -> tuple[str, float]:
    """A ticket naming the user and the namespaces it may read (signed, so the stream can trust them)."""
    expires = (now or time.time()) + TICKET_SECONDS
    scope = scope or Scope(None, legacy=True)
    claims = {"u": user, "exp": round(expires, 3), "lg": scope.legacy,
              "ns": None if scope.namespaces is None else sorted(scope.namespaces)}
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = _b64(hmac.new(_SECRET, body.encode(), hashlib.sha256).digest())
    return f"{body}.{sig}", expires


def check_ticket(ticket: str, now: float | None = None) -> str | None:
    """The user a ticket was issued to, or None when it is forged, malformed or expired."""
    found = ticket_claims(ticket, now)
    return None if found is None else found[0]


def ticket_claims(ticket: str, now: float | None = None) -> tuple[str, Scope] | None:
    """(user, scope) of a valid ticket; None when it is forged, malformed or expired."""
    body, _, sig = ticket.partition(".")
    want = _b64(hmac.new(_SECRET, body.encode(), hashlib.sha256).digest())
    if not sig or not hmac.compare_digest(sig, want):
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, TypeError):
        return None
    user = claims.get("u") if isinstance(claims, dict) else None
    if not isinstance(user, str) or float(claims.get("exp", 0)) < (now or time.time()):
        return None
    spaces = claims.get("ns")
    return user, Scope(None if spaces is None else frozenset(str(n) for n in spaces), legacy=bool(claims.get("lg")))


@router.post("/ticket", response_model=Envelope[StreamTicket], responses=responses.READ,
             summary="Get a stream ticket")
def stream_ticket(user: CurrentUser) -> Envelope[StreamTicket]:
    """A signed ticket, valid for 30 seconds, that opens one `GET /stream/runs` for this user (EventSource cannot
    send the Authorization header, and a bearer token does not belong in a URL)."""
    ticket, _expires = issue_ticket(user.user, scope=user.scope)
    return Envelope[StreamTicket](data=StreamTicket(ticket=ticket, expires_in=TICKET_SECONDS, user=user.user),
                                  message="stream ticket issued")


class RunFeed:
    """The running runs as last read, shared by every stream of one app; polls only while someone listens."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.version = 0
        self.rows: dict[str, dict[str, Any]] = {}
        self.ended: dict[str, tuple[float, dict[str, Any]]] = {}
        self.error: str | None = None
        self.listeners = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def subscribe(self) -> None:
        with self._lock:
            self.listeners += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="run-feed", daemon=True)
                self._thread.start()

    def unsubscribe(self) -> None:
        with self._lock:
            self.listeners -= 1

    def _run(self) -> None:
        idle_since: float | None = None
        while True:
            with self._lock:
                if self.listeners <= 0:
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since > 30:
                        self._thread = None
                        return
                else:
                    idle_since = None
            try:
                self.poll()
            except PyMongoError as exc:
                self.error = f"MongoDB unreachable: {type(exc).__name__}"
            time.sleep(POLL_SECONDS)

    def poll(self) -> None:
        coll = executions.collection(self.ctx.db)
        rows = {str(d["_id"]): dashboard.run_row(d, self.ctx.tz_for)
                for d in dashboard.running(self.ctx.db, dashboard.FEED_LIMIT)}
        gone = [rid for rid in self.rows if rid not in rows]
        now = time.monotonic()
        ended = {k: v for k, v in self.ended.items() if now - v[0] < 60}
        for rid in gone:
            doc = coll.find_one({"_id": rid}, dashboard.RUN_ROW_PROJECTION)
            if doc is None:  # deleted: the row ends without a verdict
                ended[rid] = (now, {**self.rows[rid], "status": "deleted"})
            else:
                ended[rid] = (now, dashboard.run_row(doc, self.ctx.tz_for))
        self.error = None
        if rows != self.rows or gone:
            self.rows, self.ended = rows, ended
            self.version += 1
        else:
            self.ended = ended


def feed_of(request: Request, ctx: AppContext) -> RunFeed:
    feed = getattr(request.app.state, "run_feed", None)
    if not isinstance(feed, RunFeed):
        feed = RunFeed(ctx)
        request.app.state.run_feed = feed
    return feed


def _event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


def _visible(rows: dict[str, dict[str, Any]], scope: Scope) -> dict[str, dict[str, Any]]:
    return {rid: row for rid, row in rows.items() if scope.sees(row.get("namespace"))}


async def _events(request: Request, feed: RunFeed, scope: Scope) -> AsyncIterator[bytes]:
    feed.subscribe()
    try:
        yield b"retry: 3000\n\n"
        # the first snapshot is read here, so a new stream does not wait for the poller's next round
        await asyncio.to_thread(feed.poll)
        sent = _visible(feed.rows, scope)
        yield _event("snapshot", {"runs": list(sent.values()), "server_time": now_iso()})
        started = last_beat = time.monotonic()
        seen = feed.version
        while time.monotonic() - started < STREAM_MAX_SECONDS:
            await asyncio.sleep(0.1)
            if await request.is_disconnected():
                return
            if feed.version != seen:
                seen = feed.version
                rows = _visible(feed.rows, scope)
                for rid, row in rows.items():
                    if sent.get(rid) != row:
                        yield _event("run", {"run": row, "server_time": now_iso()})
                for rid in [r for r in sent if r not in rows]:
                    final = feed.ended.get(rid)
                    yield _event("end", {"run": final[1] if final else {**sent[rid], "status": "finished"},
                                         "server_time": now_iso()})
                sent = rows
            if time.monotonic() - last_beat > 15:
                last_beat = time.monotonic()
                yield f": keep-alive {now_iso()}\n\n".encode()
        yield _event("expired", {"message": "stream lifetime reached: take a new ticket and reconnect"})
    finally:
        feed.unsubscribe()


SSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "An event stream: `snapshot` {runs, server_time}, then `run` {run, server_time} per "
                         "changed running run, `end` {run} per run that stopped running (its row with the verdict), "
                         "`expired` when the stream's lifetime is over.",
          "content": {"text/event-stream": {"schema": {"type": "string"}}}},
    **{k: v for k, v in responses.READ.items() if k != 200},
}


@router.get("/runs", responses=SSE_RESPONSES, response_class=StreamingResponse,
            summary="Live progress of running runs (Server-Sent Events)")
async def stream_runs(
    request: Request, ctx: Ctx, credentials: Credentials,
    ticket: Annotated[str | None, Query(max_length=400, description="A ticket from POST /stream/ticket; or send "
                                                                      "Authorization: Bearer.")] = None,
) -> StreamingResponse:
    """Every running run's progress (processed/total, current item, message, source, heartbeat) as it is written,
    within a second; then each run's verdict when it ends. Needs a ticket or a bearer token of any reader."""
    if ticket is not None:
        claims = ticket_claims(ticket)
        if claims is None:
            raise HTTPException(401, "Invalid or expired stream ticket: POST /api/scheduler/stream/ticket for a new "
                                     "one", headers={"WWW-Authenticate": "Bearer"})
        scope = claims[1]
    else:
        scope = (await asyncio.to_thread(require_viewer, request, ctx, credentials)).scope
    return StreamingResponse(_events(request, feed_of(request, ctx), scope), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

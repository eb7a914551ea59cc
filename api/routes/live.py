"""``GET /api/live``: Server-Sent Events of responder positions/status and case changes.

One :class:`gis.live.ChangeListener` per app (started with the first subscriber) reads the
database's ``live_changes`` log; every stream gets the events its principal may see (the
:func:`live_filter` hook), a ``heartbeat`` event every ``live_heartbeat_s``, and can resume
with ``Last-Event-ID`` from the listener's buffer (else it gets ``resync``: reload the state).
Streams end after ``live_max_stream_s`` (EventSource reconnects by itself) and as soon as the
server is asked to stop.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.routes.responders import AuthDep, Principal, SettingsDep
from gis.errors import InvalidInput
from gis.live import ChangeListener

router = APIRouter(prefix="/api", tags=["live"])

EVENT_TYPES = ("responder", "case")
EventFilter = Callable[[dict[str, Any]], bool]

_SHUTTING_DOWN = threading.Event()
_listener_lock = threading.Lock()


async def live_filter(principal: AuthDep) -> EventFilter:
    """Role scoping hook: which events this principal may see.

    Every event carries ``jurisdiction_id`` and ``department_id`` (cases also ``area_id``), so
    a scoped role is limited here: the public never sees responder events, staff with a
    department see that department's responders. Payloads never hold private fields.
    """

    def allow(event: dict[str, Any]) -> bool:
        return _visible(principal, event)

    return allow


async def live_redactor(principal: AuthDep) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """What of an event the principal may see (``redact``)."""
    return lambda event: redact(principal, event)


# Case fields for staff only (as in ``gis.casequery.STAFF_FIELDS``): which responder works a
# case is not public.
STAFF_CASE_FIELDS = ("responder_id",)


def redact(principal: Principal, event: dict[str, Any]) -> dict[str, Any]:
    """The event as ``principal`` may see it: staff-only case fields removed for non-staff."""
    if event.get("type") == "case" and not principal.is_staff:
        return {k: v for k, v in event.items() if k not in STAFF_CASE_FIELDS}
    return event


def _visible(principal: Principal, event: dict[str, Any]) -> bool:
    # Positions of on-duty staff are for staff only; the public sees case changes (whose
    # payloads hold no private fields) and nothing about where responders are.
    if event.get("type") == "responder" and not principal.is_staff:
        return False
    if principal.department_id is not None and event.get("type") == "responder":
        return event.get("department_id") in (None, principal.department_id)
    return True


def listener(app: FastAPI, buffer: int) -> ChangeListener:
    with _listener_lock:
        found = getattr(app.state, "live_listener", None)
        if found is None:
            found = ChangeListener(app.state.engine, buffer=buffer)
            app.state.live_listener = found
        return found


def close(app: FastAPI) -> None:
    """Stop the app's listener (called from the app's lifespan on shutdown)."""
    found = getattr(app.state, "live_listener", None)
    if found is not None:
        found.stop()


def _hook_server_exit() -> None:
    """End open streams as soon as uvicorn is told to stop: it waits for running responses
    before shutting down, and an event stream would otherwise hold it for minutes."""
    try:
        from uvicorn.server import Server
    except ImportError:  # pragma: no cover - another server
        return
    original = Server.handle_exit
    if getattr(original, "_gridgov_live", False):
        return

    def handle_exit(self: Any, sig: int, frame: Any) -> None:
        _SHUTTING_DOWN.set()
        original(self, sig, frame)

    handle_exit._gridgov_live = True  # type: ignore[attr-defined]
    Server.handle_exit = handle_exit  # type: ignore[method-assign]


_hook_server_exit()


def _sse(event: str, data: dict[str, Any], *, id: int | None = None) -> str:
    head = f"id: {id}\n" if id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, default=str, separators=(',', ':'))}\n\n"


def _types(value: str | None) -> set[str]:
    if not value:
        return set(EVENT_TYPES)
    wanted = {t.strip() for t in value.split(",") if t.strip()}
    unknown = wanted - set(EVENT_TYPES)
    if unknown:
        raise InvalidInput(f"unknown event type(s) {sorted(unknown)}; use: "
                           f"{', '.join(EVENT_TYPES)}", field="types")
    return wanted


@router.get("/live", response_class=StreamingResponse)
async def live(
    request: Request,
    settings: SettingsDep,
    allow: Annotated[EventFilter, Depends(live_filter)],
    shown: Annotated[Callable[[dict[str, Any]], dict[str, Any]], Depends(live_redactor)],
    types: Annotated[str | None, Query(description="responder,case (default both)")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Server-Sent Events: ``responder`` and ``case`` changes, ``heartbeat``, ``resync``."""
    wanted = _types(types)
    feed = listener(request.app, settings.live_buffer)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=10_000)
    overflow = asyncio.Event()

    def offer(event: dict[str, Any]) -> None:  # on the event loop
        try:
            queue.put_nowait(event)
        except asyncio.QueueFull:
            overflow.set()

    def push(event: dict[str, Any]) -> None:  # on the listener thread
        loop.call_soon_threadsafe(offer, event)

    resume = int(last_event_id) if last_event_id and last_event_id.isdigit() else None

    async def stream() -> AsyncIterator[str]:
        start = feed.last_seq
        token = await run_in_threadpool(feed.subscribe, push)
        sent = start if resume is None else resume
        try:
            yield "retry: 3000\n\n"
            yield _sse("hello", {"seq": start, "types": sorted(wanted),
                                 "heartbeat_s": settings.live_heartbeat_s,
                                 "listening": feed.listening}, id=start)
            # Events since `sent` that are already buffered (the resume backlog, and any that
            # arrived while subscribing); the queue then only adds newer ones.
            backlog = feed.since(sent) if sent <= feed.last_seq else None
            if backlog is None:
                sent = feed.last_seq
                yield _sse("resync", {"reason": "Last-Event-ID is not in the buffer"}, id=sent)
            else:
                for event in backlog:
                    sent = event["seq"]
                    if event.get("type") in wanted and allow(event):
                        yield _sse(event["type"], shown(event), id=event["seq"])
            started = last_beat = time.monotonic()
            while not _SHUTTING_DOWN.is_set():
                now = time.monotonic()
                if now - started >= settings.live_max_stream_s:
                    break
                try:
                    item: dict[str, Any] | None = await asyncio.wait_for(queue.get(), 1.0)
                except TimeoutError:
                    item = None
                if overflow.is_set():  # this client fell behind: drop the backlog, resync
                    while not queue.empty():
                        queue.get_nowait()
                    overflow.clear()
                    sent = feed.last_seq
                    yield _sse("resync", {"reason": "client too slow"}, id=sent)
                    continue
                if item is not None and item["seq"] > sent:
                    sent = item["seq"]
                    if item.get("type") in wanted | {"resync"} and allow(item):
                        yield _sse(item["type"], shown(item), id=item["seq"])
                if time.monotonic() - last_beat >= settings.live_heartbeat_s:
                    last_beat = time.monotonic()
                    yield _sse("heartbeat", {"seq": sent, "at": time.time(),
                                             "listening": feed.listening})
        finally:
            feed.unsubscribe(token)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

"""The case lifecycle: one state machine table, actions, supervision separation, escalation.

``TRANSITIONS`` is the only place that says which action is legal from which state, what state
it leads to and which roles may take it. ``apply_action`` enforces it, plus scope (an account
changes only cases inside its scope) and the separation of supervision from disposal (the
account that handled a case never verifies or closes it). Every change appends one
``case_events`` row (actor, time, from/to state, note, data) in the same transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, text

from gis.auth import Forbidden, Principal, Unauthorized, require_role, scope_sql
from gis.caseconfig import TERMINAL
from gis.casequery import get_case
from gis.dispatch import DispatchSettings
from gis.errors import Conflict, GridgovError, InvalidInput, NotFound
from gis.intake import hash_tracking
from gis.models import CASE_STATUSES

OPEN_STATES = frozenset(CASE_STATUSES) - set(TERMINAL)


@dataclass(frozen=True)
class Transition:
    sources: frozenset[str]
    target: str | None  # None: the state does not change
    roles: tuple[str, ...]
    summary: str


def _t(sources: set[str] | frozenset[str], target: str | None, roles: tuple[str, ...],
       summary: str) -> Transition:
    return Transition(frozenset(sources), target, roles, summary)


# action → (from states, to state, roles). ``verify`` leads to ``verified`` when it passes and to
# ``reopened`` when it fails. ``admin`` can do everything except break supervision separation.
TRANSITIONS: dict[str, Transition] = {
    "accept": _t({"reported"}, "accepted", ("call_taker", "supervisor", "dispatcher", "admin"),
                 "register the report (受理)"),
    "file": _t({"reported", "accepted"}, "filed",
               ("call_taker", "supervisor", "dispatcher", "admin"), "file the case (立案)"),
    "reject": _t({"reported", "accepted", "filed"}, "rejected",
                 ("call_taker", "supervisor", "admin"), "not a case (note says why)"),
    "redirect": _t({"reported", "accepted", "filed", "redirected", "dispatched", "reopened"},
                   "redirected", ("call_taker", "dispatcher", "handler", "admin"),
                   "hand over to another department"),
    "dispatch": _t({"filed", "redirected", "reopened", "dispatched"}, "dispatched",
                   ("dispatcher", "admin"), "send to a department and/or responder"),
    "start": _t({"dispatched"}, "in_progress", ("handler", "admin"), "work started"),
    "handle": _t({"dispatched", "in_progress"}, "handled", ("handler", "admin"),
                 "work done: feedback note and/or photo"),
    "verify": _t({"handled"}, "verified", ("grid_worker", "supervisor", "admin"),
                 "check the fix on site: pass → verified, fail → reopened"),
    "close": _t({"verified"}, "closed", ("supervisor", "admin"), "close (结案)"),
    "reopen": _t({"verified", "closed"}, "reopened", ("supervisor", "admin"),
                 "the problem is back"),
    "rate": _t({"closed"}, None,
               ("public", "reporter", "call_taker", "supervisor", "admin"),
               "satisfaction 1–5 (reporter's tracking token, or staff on a return call)"),
    "summon": _t(OPEN_STATES, None, ("supervisor", "dispatcher", "admin"),
                 "a street summons a department (吹哨报到)"),
    "respond": _t(OPEN_STATES, None, ("handler", "dispatcher", "admin"),
                  "the summoned department reports in (报到)"),
}
# Supervision is separate from disposal: whoever handled the case never takes these.
SUPERVISION_ACTIONS = frozenset({"verify", "close"})


def allowed_actions(status: str) -> list[str]:
    return [a for a, t in TRANSITIONS.items() if status in t.sources]


@dataclass
class ActionRequest:
    """One lifecycle step. Only the fields the action needs are read."""

    action: str
    note: str | None = None
    department: str | None = None
    responder_id: int | None = None
    result: str | None = None  # verify: pass | fail
    satisfaction: int | None = None
    tracking_token: str | None = None
    media: list[dict[str, Any]] = field(default_factory=list)


def _department(conn: Connection, code: str | None, what: str) -> tuple[int, str]:
    if not code:
        raise InvalidInput(f"{what} needs a department code", field="department")
    row = conn.execute(text("SELECT id, code FROM departments WHERE code = :c"),
                       {"c": code}).first()
    if row is None:
        raise InvalidInput(f"unknown department {code!r}", field="department")
    return int(row.id), str(row.code)


def _free_responder(conn: Connection, responder_id: int | None, case_id: int) -> None:
    """A responder becomes available again when none of its other cases is still being worked."""
    if responder_id is None:
        return
    conn.execute(text(
        "UPDATE responders SET status = 'available' WHERE id = :r AND status = 'busy'"
        " AND NOT EXISTS (SELECT 1 FROM cases WHERE responder_id = :r AND id <> :c"
        " AND status IN ('dispatched', 'in_progress'))"), {"r": responder_id, "c": case_id})


def _check_actor(conn: Connection, case: dict[str, Any], req: ActionRequest,
                 principal: Principal) -> None:
    tr = TRANSITIONS[req.action]
    if req.action == "rate" and principal.role in ("public", "reporter"):
        token_ok = (req.tracking_token is not None and case["tracking_sha256"] is not None
                    and hash_tracking(req.tracking_token) == case["tracking_sha256"])
        own = principal.role == "reporter" and case["reporter_id"] == principal.user_id
        if not (token_ok or own):
            if principal.is_public and req.tracking_token is None:
                raise Unauthorized("rating needs the case's tracking_token (given when it was"
                                   " reported) or the reporter's account", field="tracking_token")
            raise Forbidden("the tracking_token does not belong to this case",
                            field="tracking_token")
        return
    require_role(principal, tr.roles, f"{req.action} a case")
    if not case["in_scope"]:
        raise Forbidden(f"case {case['id']} is outside your scope ({principal.describe_scope()})",
                        field="id")


def apply_action(conn: Connection, case_id: int, req: ActionRequest, principal: Principal, *,
                 now: datetime | None = None,
                 dispatch_settings: DispatchSettings | None = None) -> dict[str, Any]:
    """Apply one lifecycle action. Returns ``{"case": ..., "event": ...}``.

    A ``dispatch`` naming a responder records in the event's ``data.eta`` the road ETA from
    the responder's position at that moment (see :func:`dispatch_eta`); ``dispatch_settings``
    (default: from the environment) gives the staleness limit and routing knobs.

    Raises: ``InvalidInput`` (unknown action, missing field), ``Unauthorized``/``Forbidden``
    (role, scope, supervision separation), ``Conflict`` (illegal from the current state; the
    message names the state and the actions allowed from it), ``NotFound``.
    """
    if req.action not in TRANSITIONS:
        raise InvalidInput(f"unknown action {req.action!r}; actions are:"
                           f" {', '.join(TRANSITIONS)}", field="action")
    at = (now or datetime.now(UTC)).astimezone(UTC)
    scope, params = scope_sql(principal)
    # FOR UPDATE: concurrent actions on one case are applied one after the other.
    found = conn.execute(text(
        f"SELECT c.id, c.status, c.department_id, c.responder_id, c.reporter_id,"
        f" c.tracking_sha256, c.satisfaction, c.jurisdiction_id, {scope} AS in_scope"
        f" FROM cases c WHERE c.id = :id FOR UPDATE"), {**params, "id": case_id},
    ).mappings().first()
    if found is None:
        raise NotFound(f"no case {case_id}", field="id")
    case = dict(found)
    _check_actor(conn, case, req, principal)
    status = case["status"]
    tr = TRANSITIONS[req.action]
    if status not in tr.sources:
        allowed = allowed_actions(status)
        raise Conflict(f"cannot {req.action} case {case_id}: it is {status}; allowed from"
                       f" {status}: {', '.join(allowed) or 'nothing (final state)'}",
                       field="action", extra={"state": status, "allowed_actions": allowed})
    if req.action in SUPERVISION_ACTIONS and principal.user_id is not None:
        handled = conn.execute(text(
            "SELECT 1 FROM case_events WHERE case_id = :c AND action = 'handle'"
            " AND actor_id = :u LIMIT 1"), {"c": case_id, "u": principal.user_id}).first()
        if handled:
            raise Forbidden(f"supervision is separate from disposal: {principal.name} handled"
                            f" case {case_id} and may not {req.action} it", field="actor")

    target = tr.target
    sets: dict[str, Any] = {}
    data: dict[str, Any] = {"actor": principal.as_actor()}
    note = (req.note or "").strip() or None
    if note is not None and len(note) > 10_000:
        raise InvalidInput("note is limited to 10,000 characters", field="note")

    if req.action in ("reject", "reopen") and note is None:
        raise InvalidInput(f"{req.action} needs a note saying why", field="note")
    if req.action == "redirect":
        dep_id, dep_code = _department(conn, req.department, "redirect")
        if dep_id == case["department_id"]:
            raise InvalidInput(f"case {case_id} is already with {dep_code}", field="department")
        sets.update(department_id=dep_id, responder_id=None)
        data.update(department=dep_code)
        _free_responder(conn, case["responder_id"], case_id)
    elif req.action == "dispatch":
        data.update(_dispatch(conn, case, req, sets, at=at,
                              settings=dispatch_settings or DispatchSettings()))
    elif req.action == "handle":
        if note is None and not req.media:
            raise InvalidInput("handle needs feedback: a note and/or a photo", field="note")
        if req.media:
            data["media"] = req.media
        _free_responder(conn, case["responder_id"], case_id)
    elif req.action == "verify":
        if req.result not in ("pass", "fail"):
            raise InvalidInput("verify needs result: pass or fail", field="result")
        data["result"] = req.result
        target = "verified" if req.result == "pass" else "reopened"
    elif req.action == "close":
        sets["closed_at"] = at
    elif req.action == "reopen":
        sets["closed_at"] = None
    elif req.action == "rate":
        if req.satisfaction is None or not 1 <= int(req.satisfaction) <= 5:
            raise InvalidInput("satisfaction must be an integer from 1 to 5",
                               field="satisfaction")
        if case["satisfaction"] is not None:
            raise Conflict(f"case {case_id} was already rated", field="satisfaction",
                           extra={"state": status, "allowed_actions": allowed_actions(status)})
        sets["satisfaction"] = int(req.satisfaction)
        data["satisfaction"] = int(req.satisfaction)
    elif req.action == "summon":
        dep_id, dep_code = _department(conn, req.department, "summon")
        conn.execute(text(
            "INSERT INTO case_summons (case_id, department_id, summoned_by, summoned_at, note)"
            " VALUES (:c, :d, :u, :at, :note)"),
            {"c": case_id, "d": dep_id, "u": principal.user_id, "at": at, "note": note})
        data.update(department=dep_code)
    elif req.action == "respond":
        dep = principal.department_id
        if req.department and principal.role != "handler":
            dep = _department(conn, req.department, "respond")[0]
        if dep is None:
            raise InvalidInput("respond needs the summoned department", field="department")
        if not _answer_summons(conn, case_id, dep, principal, at, data):
            raise Conflict(f"no open summons of that department on case {case_id}",
                           field="department",
                           extra={"state": status, "allowed_actions": allowed_actions(status)})
    if req.action != "respond" and principal.department_id is not None:
        # The first action of a summoned department's account is its response (报到).
        _answer_summons(conn, case_id, principal.department_id, principal, at, data)

    if target is not None:
        sets["status"] = target
    if sets:
        assignments = ", ".join(f"{k} = :{k}" for k in sets)
        conn.execute(text(f"UPDATE cases SET {assignments} WHERE id = :id"),
                     {**sets, "id": case_id})
    event = conn.execute(text(
        "INSERT INTO case_events (case_id, actor_id, action, from_state, to_state, note, data,"
        " at) VALUES (:c, :u, :action, :from, :to, :note, CAST(:data AS jsonb), :at)"
        " RETURNING id, at"),
        {"c": case_id, "u": principal.user_id, "action": req.action, "from": status,
         "to": target or status, "note": note, "at": at,
         "data": json.dumps(data, ensure_ascii=False, default=str)},
    ).one()
    return {
        "case": get_case(conn, case_id, principal, now=at),
        "event": {"id": event.id, "action": req.action, "from_state": status,
                  "to_state": target or status, "at": event.at.isoformat(), "note": note,
                  "data": data},
    }


def _dispatch(conn: Connection, case: dict[str, Any], req: ActionRequest,
              sets: dict[str, Any], *, at: datetime, settings: DispatchSettings
              ) -> dict[str, Any]:
    data: dict[str, Any] = {}
    dep_id = case["department_id"]
    if req.department:
        dep_id, data["department"] = _department(conn, req.department, "dispatch")
        sets["department_id"] = dep_id
    if req.responder_id is None and dep_id is None:
        raise InvalidInput("dispatch needs a department and/or a responder_id",
                           field="department")
    if req.responder_id is not None:
        resp = conn.execute(text(
            "SELECT id, name, status, department_id, jurisdiction_id FROM responders"
            " WHERE id = :r FOR UPDATE"), {"r": req.responder_id}).first()
        if resp is None or resp.jurisdiction_id != case["jurisdiction_id"]:
            raise InvalidInput(f"unknown responder_id {req.responder_id}", field="responder_id")
        if resp.status != "available" and resp.id != case["responder_id"]:
            raise Conflict(f"responder {resp.name} is {resp.status}, not available",
                           field="responder_id",
                           extra={"state": case["status"],
                                  "allowed_actions": allowed_actions(case["status"])})
        if req.department and resp.department_id not in (None, dep_id):
            raise InvalidInput(f"responder {resp.name} is not in department {req.department}",
                               field="responder_id")
        if case["responder_id"] not in (None, resp.id):
            _free_responder(conn, case["responder_id"], case["id"])
        conn.execute(text("UPDATE responders SET status = 'busy' WHERE id = :r"),
                     {"r": resp.id})
        sets["responder_id"] = resp.id
        data.update(responder_id=resp.id, responder=resp.name,
                    eta=dispatch_eta(conn, case["id"], resp.id, at=at, settings=settings))
    return data


def dispatch_eta(conn: Connection, case_id: int, responder_id: int, *, at: datetime,
                 settings: DispatchSettings) -> dict[str, Any]:
    """The road ETA of a responder to a case at the moment of dispatch, for the timeline.

    Always a dict, never an error: ``eta_s``/``distance_m`` (road mode, from
    :func:`gis.nearest.responder_eta`) and the age of the position used; when there is no
    fresh position (none, or older than ``stale_after_s``) or no route, ``eta_s`` is None and
    ``reason`` says why. The position itself is not copied into the case's history (privacy:
    positions of staff are kept only within the bounded retention).
    """
    from gis import nearest  # routing pulls in numpy/scipy: only when a responder is named

    row = conn.execute(text(
        "SELECT ST_X(p) AS lon, ST_Y(p) AS lat, r.position_at"
        " FROM cases c CROSS JOIN LATERAL (SELECT CASE WHEN GeometryType(c.geom) = 'POINT'"
        " THEN c.geom ELSE ST_PointOnSurface(c.geom) END AS p) g"
        " JOIN responders r ON r.id = :r WHERE c.id = :c"),
        {"c": case_id, "r": responder_id}).mappings().one()
    out: dict[str, Any] = {"mode": "road", "eta_s": None, "distance_m": None,
                           "position_at": None, "position_age_s": None}
    if row["position_at"] is None:
        return {**out, "reason": "no position: the responder has not reported one on duty"}
    age = (at - row["position_at"]).total_seconds()
    out.update(position_at=row["position_at"].isoformat(), position_age_s=round(max(age, 0), 1))
    if age > settings.stale_after_s:
        return {**out, "reason": f"no fresh position: the last one is {age:.0f} s old"
                                 f" (limit {settings.stale_after_s:g} s)"}
    if row["lon"] is None:
        return {**out, "reason": "the case has no location"}
    try:
        eta = nearest.responder_eta(conn, responder_id, row["lon"], row["lat"],
                                    settings=settings)
    except GridgovError as exc:
        return {**out, "reason": exc.detail}
    out.update(eta_s=eta["eta_s"], distance_m=eta["distance_m"],
               straight_m=eta.get("straight_m"))
    if eta["eta_s"] is None:
        out["reason"] = eta.get("reason") or "not reachable by road"
    return out


def _answer_summons(conn: Connection, case_id: int, department_id: int, principal: Principal,
                    at: datetime, data: dict[str, Any]) -> bool:
    rows = conn.execute(text(
        "UPDATE case_summons SET responded_at = :at, responded_by = :u"
        " WHERE case_id = :c AND department_id = :d AND responded_at IS NULL"
        " RETURNING id, summoned_at"),
        {"at": at, "u": principal.user_id, "c": case_id, "d": department_id}).all()
    if rows:
        data["summons_answered"] = [
            {"summon_id": r.id, "response_s": round((at - r.summoned_at).total_seconds(), 1)}
            for r in rows]
    return bool(rows)


def summons(conn: Connection, case_id: int) -> list[dict[str, Any]]:
    """Summons of a case with the measured response time (seconds, None while unanswered)."""
    rows = conn.execute(text(
        "SELECT s.id, d.code AS department, s.summoned_at, s.responded_at,"
        " EXTRACT(EPOCH FROM s.responded_at - s.summoned_at) AS response_s"
        " FROM case_summons s JOIN departments d ON d.id = s.department_id"
        " WHERE s.case_id = :c ORDER BY s.summoned_at, s.id"), {"c": case_id}).mappings()
    return [{**dict(r), "response_s": float(r["response_s"]) if r["response_s"] is not None
             else None} for r in rows]


_ESCALATE_SQL = """
WITH RECURSIVE due AS (
    SELECT c.id, c.area_id, c.status, c.escalation_level AS old,
           CAST(1 + floor(EXTRACT(EPOCH FROM (CAST(:now AS timestamptz) - c.due_at))
                / GREATEST(EXTRACT(EPOCH FROM (c.due_at - c.reported_at)), 3600)) AS integer)
             AS wanted
      FROM cases c
     WHERE c.due_at < CAST(:now AS timestamptz) AND c.status NOT IN ('closed', 'rejected')
       AND c.area_id IS NOT NULL
), todo AS (
    SELECT * FROM due WHERE wanted > old
), chain AS (
    SELECT t.id AS case_id, a.id AS area_id, a.parent_id, a.code, a.name, 0 AS up
      FROM todo t JOIN areas a ON a.id = t.area_id
    UNION ALL
    SELECT ch.case_id, p.id, p.parent_id, p.code, p.name, ch.up + 1
      FROM chain ch JOIN areas p ON p.id = ch.parent_id
), top AS (
    SELECT case_id, max(up) AS up FROM chain GROUP BY case_id
), target AS (
    SELECT t.id, t.old, t.status, LEAST(t.wanted, top.up) AS level
      FROM todo t JOIN top ON top.case_id = t.id
), upd AS (
    UPDATE cases c SET escalation_level = target.level
      FROM target
     WHERE c.id = target.id AND target.level > target.old AND c.escalation_level = target.old
    RETURNING c.id, target.old, target.level, c.status
), ev AS (
    INSERT INTO case_events (case_id, actor_id, action, from_state, to_state, note, data, at)
    SELECT upd.id, NULL, 'escalate', upd.status, upd.status,
           'overdue: escalated to ' || ch.name || ' (' || ch.code || ')',
           jsonb_build_object('level', lvl, 'area_code', ch.code, 'area_name', ch.name,
                              'actor', jsonb_build_object('role', 'system',
                                                          'name', 'escalation')),
           CAST(:now AS timestamptz)
      FROM upd
      CROSS JOIN LATERAL generate_series(upd.old + 1, upd.level) AS lvl
      JOIN chain ch ON ch.case_id = upd.id AND ch.up = lvl
    RETURNING case_id, data
)
SELECT case_id, CAST(data ->> 'level' AS integer) AS level, data ->> 'area_code' AS area_code,
       data ->> 'area_name' AS area_name
  FROM ev ORDER BY case_id, level
"""


def escalate_overdue(conn: Connection, now: datetime | None = None) -> list[dict[str, Any]]:
    """Escalate overdue open cases one level up the hierarchy per elapsed deadline period.

    A case past ``due_at`` (not closed or rejected) goes to level 1 (the grid's parent area);
    each further full deadline period overdue adds a level, up to the top of the hierarchy.
    Each level is reached once, with one ``escalate`` event naming the area: running this
    again at the same time changes nothing (idempotent). Returns the escalations made.
    """
    at = (now or datetime.now(UTC)).astimezone(UTC)
    rows = conn.execute(text(_ESCALATE_SQL), {"now": at}).mappings()
    return [dict(r) for r in rows]

"""KPIs: ``GET /api/kpis``, ``/api/kpis/series``, targets. Every table also as ``?format=csv``."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import Response

from api.deps import ConnDep, commit
from api.security import PrincipalDep, require
from gis import audit, kpis
from gis.auth import Forbidden, Principal, Unauthorized
from gis.errors import InvalidInput

router = APIRouter(prefix="/api", tags=["analysis"])

AdminDep = Annotated[Principal, Depends(require("admin", what="change KPI targets"))]
FormatQ = Annotated[str, Query(description="json (default) or csv", pattern="^(json|csv)$")]
# Roles that may see KPIs per responder (staff performance is not public).
RESPONDER_ROLES = ("analyst", "supervisor", "dispatcher", "admin")


def csv_response(rows: Iterable[dict[str, Any]], columns: Sequence[str], filename: str
                 ) -> Response:
    """A table as CSV (UTF-8 with BOM so spreadsheet programs read the Chinese names)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else
                         ";".join(map(str, row[c])) if isinstance(row.get(c), list) else row[c]
                         for c in columns])
    return Response("\ufeff" + buf.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


KPI_COLUMNS = ("rank", "key", "code", "name", "n", "n_due", "n_closed", "n_on_time",
               "closure_rate", "on_time_rate", "mean_ttc_h", "p90_ttc_h", "reopen_rate",
               "verify_pass_rate", "satisfaction", "n_rated", "cases_per_1000",
               "cases_per_responder", "population", "responders", "score", "targets_met")


def _query(level: str | None, by: str, period: str | None, since: date | None,
           until: date | None, category: str | None, area: str | None, basis: str,
           engine: str, rank_by: str | None) -> kpis.KpiQuery:
    return kpis.KpiQuery(level=level, by=by, period=period, since=since, until=until,
                         category=category, area=area, basis=basis, engine=engine,
                         rank_by=rank_by)


@router.get("/kpis")
def get_kpis(
    conn: ConnDep,
    principal: PrincipalDep,
    level: Annotated[str | None, Query(description="level name or rank; default the grids")]
    = None,
    by: Annotated[str, Query(description="area, department, category or responder")] = "area",
    period: Annotated[str | None, Query(
        description="2026, 2026-Q3, 2026-10, 2026-W40, 2026-10-05 or 30d")] = None,
    since: Annotated[date | None, Query(description="first day (local), inclusive")] = None,
    until: Annotated[date | None, Query(description="last day (local), exclusive")] = None,
    category: Annotated[str | None, Query(description="category code (its subtree)")] = None,
    area: Annotated[str | None, Query(description="only inside this area (code)")] = None,
    basis: Annotated[str, Query(description="reported (grid at report time) or current")]
    = "reported",
    engine: Annotated[str, Query(description="rollup (default) or cases (direct)")] = "rollup",
    rank_by: Annotated[str | None, Query(description="score (default), n or a KPI")] = None,
    format: FormatQ = "json",
) -> Any:
    """Closure, on-time, time to close, reopen, verification, satisfaction, cases per 1,000
    residents and per responder — per group, ranked, with the targets."""
    if by == "responder" and principal.is_public:
        raise Unauthorized("KPIs per responder need a staff token (Authorization: Bearer …)",
                           field="by")
    if by == "responder" and principal.role not in RESPONDER_ROLES:
        raise Forbidden(f"KPIs per responder are for {', '.join(RESPONDER_ROLES)}",
                        field="by")
    result = kpis.compute_kpis(conn, _query(level, by, period, since, until, category, area,
                                            basis, engine, rank_by))
    if format == "csv":
        return csv_response(result["rows"], KPI_COLUMNS,
                            f"kpis-{by}-{result['since']}-{result['until']}.csv")
    return result


SERIES_COLUMNS = ("period", "n", "n_due", "n_closed", "n_on_time", "closure_rate",
                  "on_time_rate", "mean_ttc_h", "p90_ttc_h", "reopen_rate", "verify_pass_rate",
                  "satisfaction", "n_rated")


@router.get("/kpis/series")
def get_series(
    conn: ConnDep,
    interval: Annotated[str, Query(description="day, week or month")] = "month",
    period: Annotated[str | None, Query()] = None,
    since: Annotated[date | None, Query()] = None,
    until: Annotated[date | None, Query()] = None,
    category: Annotated[str | None, Query()] = None,
    area: Annotated[str | None, Query(description="area code (default: everything)")] = None,
    format: FormatQ = "json",
) -> Any:
    """KPIs per day, week or month of the period."""
    result = kpis.kpi_series(conn, kpis.KpiQuery(period=period, since=since, until=until,
                                                 category=category, area=area),
                             interval=interval)
    if format == "csv":
        return csv_response(result["rows"], SERIES_COLUMNS,
                            f"kpi-series-{interval}-{result['since']}-{result['until']}.csv")
    return result


@router.get("/kpis/targets")
def get_targets(conn: ConnDep) -> dict:
    """Target, direction (higher/lower is better) and weight of every KPI."""
    return {"targets": kpis.targets(conn)}


@router.put("/kpis/targets/{kpi}")
def put_target(
    conn: ConnDep,
    principal: AdminDep,
    kpi: str,
    body: Annotated[dict[str, Any], Body(examples=[{"target": 0.95, "direction": "higher"}])],
) -> dict:
    """Change one KPI's target, direction or weight (admin)."""
    unknown = set(body) - {"target", "direction", "weight", "label"}
    if unknown:
        raise InvalidInput(f"unknown field {sorted(unknown)[0]!r}", field=sorted(unknown)[0])

    def number(name: str) -> float | None:
        v = body.get(name)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise InvalidInput(f"{name} must be a number", field=name)
        return float(v)

    row = kpis.set_target(conn, kpi, target=number("target"), direction=body.get("direction"),
                          weight=number("weight"), label=body.get("label"))
    audit.record(conn, principal, "kpi_target.update", target=kpi, details=body)
    commit(conn)
    return row

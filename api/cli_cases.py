"""``gridgov`` subcommands for cases: users, categories, routing rules, calendar, escalate, and
``import cases``. ``api/cli.py`` wires them in with ``add_parsers``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from gis import audit, db
from gis.errors import InvalidInput
from gis.settings import DatabaseSettings


def _print(obj: object) -> None:
    print(json.dumps(obj, indent=2, default=str, ensure_ascii=False))


@contextmanager
def _transaction() -> Iterator[Connection]:
    settings = DatabaseSettings()
    db.start_cluster(settings)
    engine = db.make_engine(settings)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def _jurisdiction(conn: Connection, code: str | None) -> int | None:
    if code is None:
        return None
    jid = conn.execute(text("SELECT id FROM jurisdictions WHERE code = :c"), {"c": code}).scalar()
    if jid is None:
        raise InvalidInput(f"unknown jurisdiction {code!r}", field="jurisdiction")
    return int(jid)


# --- users --------------------------------------------------------------------------------

def cmd_users(args: argparse.Namespace) -> int:
    from gis import auth

    expiry = timedelta(days=args.expires_days) if getattr(args, "expires_days", None) else None
    with _transaction() as conn:
        if args.action == "add":
            uid = auth.create_user(conn, args.name, args.role, area_codes=args.area or [],
                                   department=args.department,
                                   jurisdiction_id=_jurisdiction(conn, args.jurisdiction))
            token = auth.issue_token(conn, uid, expires_in=expiry, label="cli")
            audit.record(conn, None, "user.create", target=args.name, details=vars(args))
            user = auth.get_user(conn, uid)
            print(f"created {user['name']} ({user['role']}; scope: "
                  f"{', '.join(user['areas']) or 'all areas'}"
                  f"{'; department ' + user['department'] if user['department'] else ''}"
                  f"{'; expires in ' + str(args.expires_days) + ' days' if expiry else ''});"
                  " the token is shown once:", file=sys.stderr)
            print(token)
        elif args.action == "token":
            print(auth.issue_token(conn, auth.user_id_by_name(conn, args.name),
                                   expires_in=expiry, label="cli"))
            audit.record(conn, None, "user.token", target=args.name, details=vars(args))
        elif args.action == "revoke":
            count = auth.revoke_tokens(conn, auth.user_id_by_name(conn, args.name))
            audit.record(conn, None, "user.revoke", target=args.name, details={"revoked": count})
            print(f"revoked {count} token(s) of {args.name}")
        elif args.action == "disable":
            auth.set_active(conn, auth.user_id_by_name(conn, args.name), False)
            audit.record(conn, None, "user.disable", target=args.name)
            print(f"disabled {args.name}")
        else:
            _print(auth.list_users(conn))
    return 0


# --- categories ---------------------------------------------------------------------------

def cmd_categories(args: argparse.Namespace) -> int:
    from gis import category_admin
    from gis.categories import seed_defaults

    with _transaction() as conn:
        if args.action == "seed":
            seed_defaults(conn)
            print("default departments and categories seeded (existing codes untouched)")
            return 0
        if args.action == "list":
            rows = category_admin.list_categories(conn, kind=args.kind)
            if args.json:
                _print(rows)
            else:
                for r in rows:
                    deadline = (f"{r['deadline_value']:g} {r['deadline_unit']}"
                                if r["deadline_value"] is not None else "")
                    print(f"{'  ' * r['depth']}{r['code']:<9} {r['name'][:40]:<40}"
                          f" {r['department'] or '':<11} {deadline:<18} u{r['urgency']}"
                          f"{'' if r['active'] else '  (retired)'}")
            return 0
        if args.code is None:
            raise InvalidInput("categories set needs a CODE", field="code")
        fields: dict[str, Any] = {}
        for name in ("department", "deadline", "unit", "urgency", "name", "name_zh"):
            value = getattr(args, name)
            if value is not None:
                fields[name] = value
        if args.active is not None:
            fields["active"] = args.active
        row = category_admin.set_category(conn, args.code, parent=args.parent, **fields)
        audit.record(conn, None, "category.update", target=args.code, details=fields)
        _print(row)
    return 0


# --- routing rules and calendar -----------------------------------------------------------

def cmd_routing(args: argparse.Namespace) -> int:
    from gis import routing_rules
    from gis.areas import default_jurisdiction

    with _transaction() as conn:
        jid = _jurisdiction(conn, args.jurisdiction)
        if args.action == "set":
            if not (args.area and args.category and args.department):
                raise InvalidInput("routing set needs AREA CATEGORY DEPARTMENT", field="area")
            rid = routing_rules.set_rule(
                conn, jurisdiction_id=jid if jid is not None else default_jurisdiction(conn),
                area_code=args.area, category_code=args.category, department=args.department)
            audit.record(conn, None, "routing_rule.set", target=rid, details=vars(args))
            print(f"rule {rid}: {args.category} in {args.area} → {args.department}")
        elif args.action == "delete":
            routing_rules.delete_rule(conn, int(args.area))
            audit.record(conn, None, "routing_rule.delete", target=args.area)
        else:
            _print(routing_rules.list_rules(conn, jid))
    return 0


def cmd_calendar(args: argparse.Namespace) -> int:
    from gis import calendar
    from gis.areas import default_jurisdiction

    with _transaction() as conn:
        jid = _jurisdiction(conn, args.jurisdiction)
        jid = jid if jid is not None else default_jurisdiction(conn)
        try:
            days = [date.fromisoformat(d) for d in args.dates]
        except ValueError as exc:
            raise InvalidInput(f"dates must be YYYY-MM-DD: {exc}", field="date") from exc
        if args.action == "holiday":
            calendar.set_days(conn, jid, days, working=False, name=args.name)
        elif args.action == "workday":
            calendar.set_days(conn, jid, days, working=True, name=args.name)
        elif args.action == "clear":
            calendar.clear_days(conn, jid, days)
        if args.action in ("holiday", "workday", "clear"):
            audit.record(conn, None, f"calendar.{'clear' if args.action == 'clear' else 'set'}",
                         target=",".join(args.dates), details=vars(args))
        _print(calendar.list_days(conn, jid))
    return 0


# --- escalation and import ----------------------------------------------------------------

def cmd_escalate(args: argparse.Namespace) -> int:
    from gis.lifecycle import escalate_overdue

    now = datetime.fromisoformat(args.now) if args.now else None
    with _transaction() as conn:
        done = escalate_overdue(conn, now=now)
    by_level: dict[int, int] = {}
    for item in done:
        by_level[item["level"]] = by_level.get(item["level"], 0) + 1
    _print({"escalations": len(done), "cases": len({d["case_id"] for d in done}),
            "by_level": by_level, "first": done[:20]})
    return 0


def cmd_import_cases(args: argparse.Namespace) -> int:
    """``gridgov import cases FILE [--strict] [--crs] [--jurisdiction]`` with a progress bar."""
    from tqdm import tqdm

    from gis import bulk
    from gis.auth import Principal

    path = Path(args.file)
    if not path.is_file():
        raise InvalidInput(f"no such file: {path}", field="file")
    actor = Principal(role="admin", name="cli-import")
    phases: dict[str, float] = {}
    with _transaction() as conn, tqdm(total=bulk.count_rows(path), unit="row",
                                      desc=f"import {path.name}") as bar:
        report = bulk.import_cases(conn, bulk.read_file(path), principal=actor,
                                   jurisdiction_id=_jurisdiction(conn, args.jurisdiction),
                                   strict=args.strict, crs=args.crs, progress=bar,
                                   fast=getattr(args, "fast", None), timings=phases)
    errors = report.pop("errors")
    _print(report)
    # Which load path ran (gis.bulk.fast_load_refusal): the fast one needs a role that may set
    # session_replication_role; both leave the same data.
    print(f"load path: {'fast' if phases.get('fast path') else 'triggers'}", file=sys.stderr)
    for err in errors[:50]:
        print(f"  row {err['row']}: {err['field']}: {err['message']}", file=sys.stderr)
    if len(errors) > 50:
        print(f"  … and {len(errors) - 50} more", file=sys.stderr)
    return 0 if not errors else 1


def add_parsers(sub: Any) -> None:
    """Register the case subcommands on the ``gridgov`` parser."""
    from gis.models import ROLES

    p = sub.add_parser("users", help="accounts and bearer tokens")
    p.add_argument("action", choices=["add", "list", "token", "revoke", "disable"])
    p.add_argument("name", nargs="?")
    p.add_argument("--role", choices=list(ROLES))
    p.add_argument("--area", action="append", help="area code of the scope (repeatable)")
    p.add_argument("--department", default=None, help="department code")
    p.add_argument("--jurisdiction", default=None, help="jurisdiction code of --area")
    p.add_argument("--expires-days", type=float, default=365.0,
                   help="token lifetime in days (0: never expires)")
    p.set_defaults(func=_users_checked)

    p = sub.add_parser("categories", help="list or edit case categories")
    p.add_argument("action", choices=["list", "set", "seed"])
    p.add_argument("code", nargs="?")
    p.add_argument("--kind", choices=["component", "event"], default=None)
    p.add_argument("--json", action="store_true")
    p.add_argument("--department", default=None)
    p.add_argument("--deadline", type=float, default=None)
    p.add_argument("--unit", choices=["working_hours", "working_days", "hours", "days"])
    p.add_argument("--urgency", type=int, default=None)
    p.add_argument("--name", default=None)
    p.add_argument("--name-zh", dest="name_zh", default=None)
    p.add_argument("--parent", default=None, help="parent code, to add a new category")
    p.add_argument("--active", dest="active", action="store_true", default=None)
    p.add_argument("--retire", dest="active", action="store_false")
    p.set_defaults(func=cmd_categories)

    p = sub.add_parser("routing", help="category × area routing rules")
    p.add_argument("action", choices=["list", "set", "delete"])
    p.add_argument("area", nargs="?", help="area code (delete: rule id)")
    p.add_argument("category", nargs="?")
    p.add_argument("department", nargs="?")
    p.add_argument("--jurisdiction", default=None)
    p.set_defaults(func=cmd_routing)

    p = sub.add_parser("calendar", help="holidays and make-up working days")
    p.add_argument("action", choices=["list", "holiday", "workday", "clear"])
    p.add_argument("dates", nargs="*", help="YYYY-MM-DD")
    p.add_argument("--name", default=None)
    p.add_argument("--jurisdiction", default=None)
    p.set_defaults(func=cmd_calendar)

    p = sub.add_parser("escalate", help="escalate overdue cases one level up")
    p.add_argument("--now", default=None, help="ISO time (default now)")
    p.set_defaults(func=cmd_escalate)


def _users_checked(args: argparse.Namespace) -> int:
    if args.action != "list" and not args.name:
        raise InvalidInput(f"users {args.action} needs a NAME", field="name")
    if args.action == "add" and not args.role:
        raise InvalidInput("users add needs --role", field="role")
    if args.expires_days == 0:
        args.expires_days = None
    return cmd_users(args)

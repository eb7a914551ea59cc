"""Deleting everything one jurisdiction owns, children before parents (``demo --reload``).

The tables are found in the catalogue rather than listed here, because other modules keep
adding tables that hang off jurisdictions, areas, cases or responders: every table with a
``jurisdiction_id`` column loses that jurisdiction's rows, and every row elsewhere that points
at one of them through a foreign key without ``ON DELETE CASCADE``/``SET NULL`` goes first.
Table and column names reaching SQL come from the catalogue, never from input.

Case histories are append-only (a trigger refuses DELETE on ``case_events``). A reload is an
explicit reset of demo data, so that trigger is switched off for the delete only, inside the
caller's transaction: if anything fails, the whole reset rolls back, trigger included.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

APPEND_ONLY_FUNCTION = "gridgov_append_only"


@dataclass(frozen=True)
class _ForeignKey:
    child: str
    parent: str
    child_cols: tuple[str, ...]
    parent_cols: tuple[str, ...]
    on_delete: str  # a no action, r restrict, c cascade, n set null, d set default


def _owned_tables(conn: Connection) -> set[str]:
    rows = conn.execute(text(
        "SELECT c.relname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
        " WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'"
        " AND a.attname = 'jurisdiction_id' AND NOT a.attisdropped"
    )).scalars()
    return set(rows) - {"jurisdictions"}


def _foreign_keys(conn: Connection) -> list[_ForeignKey]:
    rows = conn.execute(text(
        """
        SELECT ch.relname, pa.relname, c.confdeltype,
               array_agg(ac.attname ORDER BY k.ord), array_agg(ap.attname ORDER BY k.ord)
          FROM pg_constraint c
          JOIN pg_class ch ON ch.oid = c.conrelid
          JOIN pg_class pa ON pa.oid = c.confrelid
          CROSS JOIN LATERAL unnest(c.conkey, c.confkey) WITH ORDINALITY AS k(ck, pk, ord)
          JOIN pg_attribute ac ON ac.attrelid = c.conrelid AND ac.attnum = k.ck
          JOIN pg_attribute ap ON ap.attrelid = c.confrelid AND ap.attnum = k.pk
         WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace
         GROUP BY c.oid, ch.relname, pa.relname, c.confdeltype
        """
    )).all()
    return [_ForeignKey(r[0], r[1], tuple(r[3]), tuple(r[4]), str(r[2])) for r in rows]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def delete_jurisdiction(conn: Connection, jurisdiction_id: int) -> dict[str, int]:
    """Delete a jurisdiction and every row that belongs to it; returns rows deleted per table.

    Runs in the caller's transaction and never commits.
    """
    owned = _owned_tables(conn)
    fks = _foreign_keys(conn)
    # Condition selecting the doomed rows of each table; grown from the owned tables to the
    # tables that point at them through a foreign key the database will not resolve itself.
    where: dict[str, list[str]] = {t: ["jurisdiction_id = :j"] for t in owned}
    changed = True
    while changed:
        changed = False
        for fk in fks:
            if fk.parent not in where or fk.on_delete in ("c", "n", "d"):
                continue
            if fk.child == fk.parent or fk.child in owned:
                continue
            parent_rows = " OR ".join(f"({w})" for w in where[fk.parent])
            cols = ", ".join(_quote(c) for c in fk.child_cols)
            pcols = ", ".join(_quote(c) for c in fk.parent_cols)
            cond = f"({cols}) IN (SELECT {pcols} FROM {_quote(fk.parent)} WHERE {parent_rows})"
            if cond not in where.setdefault(fk.child, []):
                where[fk.child].append(cond)
                changed = True

    # Children first: a table is deleted once nothing still to delete points at it.
    pending = set(where)
    parents_of = {t: {fk.parent for fk in fks if fk.child == t and fk.parent != t
                      and fk.parent in pending and fk.on_delete not in ("c", "n", "d")}
                  for t in pending}
    order: list[str] = []
    while pending:
        ready = sorted(t for t in pending
                       if not any(t in parents_of[c] for c in pending if c != t))
        if not ready:  # a cycle between tables: let the database sort it out statement-wise
            ready = sorted(pending)
        for t in ready:
            order.append(t)
            pending.discard(t)

    deleted: dict[str, int] = {}
    for table in order:
        condition = " OR ".join(f"({w})" for w in where[table])
        guarded = _append_only_triggers(conn, table)
        if guarded and not conn.execute(
                text(f"SELECT EXISTS (SELECT 1 FROM {_quote(table)} WHERE {condition})"),
                {"j": jurisdiction_id}).scalar():
            continue
        for trigger in guarded:
            conn.execute(text(f"ALTER TABLE {_quote(table)} DISABLE TRIGGER {_quote(trigger)}"))
        result = conn.execute(text(f"DELETE FROM {_quote(table)} WHERE {condition}"),
                              {"j": jurisdiction_id})
        for trigger in guarded:
            conn.execute(text(f"ALTER TABLE {_quote(table)} ENABLE TRIGGER {_quote(trigger)}"))
        if result.rowcount:
            deleted[table] = int(result.rowcount)
    conn.execute(text("DELETE FROM jurisdictions WHERE id = :j"), {"j": jurisdiction_id})
    return deleted


def _append_only_triggers(conn: Connection, table: str) -> list[str]:
    return list(conn.execute(text(
        "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " JOIN pg_proc p ON p.oid = t.tgfoid WHERE c.relname = :t AND p.proname = :f"
        " AND c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal"
    ), {"t": table, "f": APPEND_ONLY_FUNCTION}).scalars())

"""dispatch: change markers for cached data, live-feed notifications

Revision ID: 0002_dispatch
Revises: 0001
Create Date: 2026-11-23 09:00:00

- ``data_versions``: one row per dataset whose in-memory caches must know when it changed (the
  routing graph is cached per jurisdiction). A statement-level trigger stamps the row with
  ``nextval('data_version_seq')``: sequences never roll back, so a version seen once is never
  seen again for different data, even when the writing transaction is rolled back.
- ``gridgov_live`` notifications (LISTEN/NOTIFY) for responder position/status changes and case
  changes, sent by statement triggers (transition tables) so every writer (API, imports, other
  modules) feeds the live map with one NOTIFY per ~7 kB of changed rows; bulk loads send one
  note.
  NOTIFY is transactional: listeners only ever hear about committed changes. Payloads carry no
  free text (no names, descriptions or reporter contacts).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002_dispatch'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


UP = [
    "CREATE SEQUENCE data_version_seq",
    """
    CREATE FUNCTION gridgov_bump_data_version() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO data_versions (name, version, changed_at)
        VALUES (TG_TABLE_NAME, nextval('data_version_seq'), now())
        ON CONFLICT (name) DO UPDATE
            SET version = EXCLUDED.version, changed_at = EXCLUDED.changed_at;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER road_edges_data_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON road_edges
    FOR EACH STATEMENT EXECUTE FUNCTION gridgov_bump_data_version()
    """,
    "INSERT INTO data_versions (name, version) VALUES ('road_edges', nextval('data_version_seq'))",
    # One helper sends a statement's changes packed into NOTIFY payloads of at most ~7000
    # bytes (the limit is 8000; items hold only ids, numbers, codes and times, no free text,
    # so one item is well under 1 kB), or a single "bulk" note when one statement changed more
    # than `bulk` rows (case imports, synthetic cities): the listener turns that into a resync
    # instead of flooding every browser.
    """
    CREATE FUNCTION gridgov_live_send(kind text, items json[], bulk integer) RETURNS void
    LANGUAGE plpgsql AS $$
    DECLARE
        n integer := coalesce(array_length(items, 1), 0);
        head text := '{"type":' || to_json(kind)::text || ',"items":[';
        buf text := '';
        piece text;
    BEGIN
        IF n = 0 THEN
            RETURN;
        ELSIF n > bulk THEN
            PERFORM pg_notify('gridgov_live', json_build_object(
                'type', kind, 'op', 'bulk', 'count', n)::text);
            RETURN;
        END IF;
        FOR i IN 1 .. n LOOP
            piece := items[i]::text;
            IF buf <> '' AND octet_length(buf) + octet_length(piece) > 7000 THEN
                PERFORM pg_notify('gridgov_live', head || buf || ']}');
                buf := '';
            END IF;
            buf := CASE WHEN buf = '' THEN piece ELSE buf || ',' || piece END;
        END LOOP;
        PERFORM pg_notify('gridgov_live', head || buf || ']}');
    END $$
    """,
    """
    CREATE FUNCTION gridgov_responder_item(r responders, op text, changes text[]) RETURNS json
    LANGUAGE sql STABLE AS $$
        SELECT json_build_object(
            'op', op, 'changes', changes, 'id', r.id, 'jurisdiction_id', r.jurisdiction_id,
            'department_id', r.department_id, 'kind', r.kind, 'status', r.status,
            'lon', ST_X(r.geom), 'lat', ST_Y(r.geom), 'position_at', r.position_at)
    $$
    """,
    """
    CREATE FUNCTION gridgov_notify_responders() RETURNS trigger LANGUAGE plpgsql
    -- Transition tables have no statistics (estimated at 1 row): without this the old/new
    -- join of a 5,000-row batch is a nested loop of 25 million comparisons.
    SET enable_nestloop = off AS $$
    DECLARE
        items json[];
    BEGIN
        IF TG_OP = 'INSERT' THEN
            SELECT array_agg(gridgov_responder_item(n, 'insert', ARRAY['created']))
              INTO items FROM new_rows n;
        ELSIF TG_OP = 'DELETE' THEN
            SELECT array_agg(gridgov_responder_item(o, 'delete', ARRAY['deleted']))
              INTO items FROM old_rows o;
        ELSE
            SELECT array_agg(gridgov_responder_item(n, 'update', x.changes)) INTO items
              FROM new_rows n JOIN old_rows o ON o.id = n.id
             CROSS JOIN LATERAL (SELECT array_remove(ARRAY[
                        CASE WHEN n.position_at IS DISTINCT FROM o.position_at
                                  OR n.geom IS DISTINCT FROM o.geom THEN 'position' END,
                        CASE WHEN n.status IS DISTINCT FROM o.status THEN 'status' END,
                        CASE WHEN n.name IS DISTINCT FROM o.name
                                  OR n.department_id IS DISTINCT FROM o.department_id
                                  OR n.skills IS DISTINCT FROM o.skills
                                  OR n.kind IS DISTINCT FROM o.kind THEN 'details' END
                    ], NULL) AS changes) x
             WHERE cardinality(x.changes) > 0;
        END IF;
        -- above the largest position batch (20,000): a gateway's batch is always streamed
        PERFORM gridgov_live_send('responder', items, 50000);
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER responders_live_insert AFTER INSERT ON responders
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION gridgov_notify_responders()
    """,
    """
    CREATE TRIGGER responders_live_update AFTER UPDATE ON responders
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION gridgov_notify_responders()
    """,
    """
    CREATE TRIGGER responders_live_delete AFTER DELETE ON responders
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION gridgov_notify_responders()
    """,
    """
    CREATE FUNCTION gridgov_case_item(c cases, op text) RETURNS json
    LANGUAGE sql STABLE AS $$
        SELECT json_build_object(
            'op', op, 'id', c.id, 'jurisdiction_id', c.jurisdiction_id, 'status', c.status,
            'category_id', c.category_id, 'urgency', c.urgency, 'area_id', c.area_id,
            'department_id', c.department_id, 'responder_id', c.responder_id,
            'escalation_level', c.escalation_level, 'reported_at', c.reported_at,
            'due_at', c.due_at, 'closed_at', c.closed_at,
            'lon', ST_X(p.pt), 'lat', ST_Y(p.pt))
          FROM (SELECT CASE WHEN GeometryType(c.geom) = 'POINT' THEN c.geom
                            ELSE ST_PointOnSurface(c.geom) END AS pt) p
    $$
    """,
    """
    CREATE FUNCTION gridgov_notify_cases() RETURNS trigger LANGUAGE plpgsql
    SET enable_nestloop = off AS $$
    DECLARE
        items json[];
    BEGIN
        IF TG_OP = 'INSERT' THEN
            SELECT array_agg(gridgov_case_item(n, 'insert')) INTO items FROM new_rows n;
        ELSIF TG_OP = 'DELETE' THEN
            SELECT array_agg(gridgov_case_item(o, 'delete')) INTO items FROM old_rows o;
        ELSE
            SELECT array_agg(gridgov_case_item(n, 'update')) INTO items
              FROM new_rows n JOIN old_rows o ON o.id = n.id
             WHERE n.status IS DISTINCT FROM o.status
                OR n.responder_id IS DISTINCT FROM o.responder_id
                OR n.department_id IS DISTINCT FROM o.department_id
                OR n.area_id IS DISTINCT FROM o.area_id
                OR n.urgency IS DISTINCT FROM o.urgency
                OR n.due_at IS DISTINCT FROM o.due_at
                OR n.closed_at IS DISTINCT FROM o.closed_at
                OR n.escalation_level IS DISTINCT FROM o.escalation_level
                OR n.geom IS DISTINCT FROM o.geom;
        END IF;
        PERFORM gridgov_live_send('case', items, 5000);
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER cases_live_insert AFTER INSERT ON cases
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION gridgov_notify_cases()
    """,
    """
    CREATE TRIGGER cases_live_update AFTER UPDATE ON cases
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION gridgov_notify_cases()
    """,
    """
    CREATE TRIGGER cases_live_delete AFTER DELETE ON cases
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION gridgov_notify_cases()
    """,
]

DOWN = [
    "DROP TRIGGER IF EXISTS cases_live_delete ON cases",
    "DROP TRIGGER IF EXISTS cases_live_update ON cases",
    "DROP TRIGGER IF EXISTS cases_live_insert ON cases",
    "DROP FUNCTION IF EXISTS gridgov_notify_cases()",
    "DROP FUNCTION IF EXISTS gridgov_case_item(cases, text)",
    "DROP TRIGGER IF EXISTS responders_live_delete ON responders",
    "DROP TRIGGER IF EXISTS responders_live_update ON responders",
    "DROP TRIGGER IF EXISTS responders_live_insert ON responders",
    "DROP FUNCTION IF EXISTS gridgov_notify_responders()",
    "DROP FUNCTION IF EXISTS gridgov_responder_item(responders, text, text[])",
    "DROP FUNCTION IF EXISTS gridgov_live_send(text, json[], integer)",
    "DROP TRIGGER IF EXISTS road_edges_data_version ON road_edges",
    "DROP FUNCTION IF EXISTS gridgov_bump_data_version()",
]


def upgrade() -> None:
    op.create_table('data_versions',
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_data_versions'))
    )
    for statement in UP:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWN:
        op.execute(statement)
    op.drop_table('data_versions')
    op.execute("DROP SEQUENCE IF EXISTS data_version_seq")

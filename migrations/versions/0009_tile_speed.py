"""tile speed (issue 5): area geometry stored in tile pixels, and a narrow copy of cases

Revision ID: 0009_tile_speed
Revises: 0008_intake_speed
Create Date: 2026-11-23 02:40:00

Two things a cold tile used to compute or fetch on every request (docs/map.md, "Benchmark"):

- ``areas.geom_px12``, ``geom_px13``, ``geom_px14``: the area as ``ST_AsMVTGeom`` draws it at
  z12, z13 and z14 — simplified with the tile simplification of those zooms, snapped to the
  integer pixel grid of the whole world at that zoom (4096 units per tile) and validated by
  wagyu — as *stored generated* columns (``gridgov_tile_pixels``). A tile then draws every area whose
  pixels lie inside its clip box with a translation by the tile's origin instead of the
  per-polygon affine, snap and wagyu pass (most of a dense z12 grid tile's SQL); areas that
  cross the clip box still go through ``ST_AsMVTGeom``. Being generated, the columns can never
  be stale: every INSERT, UPDATE and COPY computes them, and the tile-cache triggers (which
  watch ``geom``) see every change exactly as before. Their GiST indexes (every geometry column
  has one) are partial like ``geom_3857``'s.
- ``case_tiles``: the columns a case tile reads (id, category id and code, urgency, status,
  reported and due time, geometry) of every case, filled in spatial order (``ORDER BY geom``:
  PostGIS sorts geometries along a space-filling curve) and kept exact by statement triggers on
  ``cases`` (insert, changed rows on update, delete, truncate) and a row trigger on a category
  code change. A dense z14 tile (10,000 points) read ~8,500 scattered heap pages of ``cases``
  (cases arrive in time order) and now reads ~150, with no join to ``categories``. New cases
  are appended in arrival order (each statement's rows sorted in space, so a bulk load stays
  clustered); ``gridgov_rebuild_case_tiles()`` rewrites the table in spatial order again (and
  repairs it after a load that bypassed triggers).
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0009_tile_speed'
down_revision: str | None = '0008_intake_speed'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EARTH_HALF = 20037508.342789244  # gis.tiles.EARTH_HALF
# zoom -> simplification in tile units at that zoom (layers/registry.py, area layers)
PIXEL_ZOOMS = {12: 1.0, 13: 1.0, 14: 0.5}

# Tolerance in metres computed exactly as LayerSpec.tolerance_m (same IEEE operations), and
# ST_AsMVTGeom over the world square at 4096 << z units: the pixels of every tile at zoom z
# at once, in one frame (a tile's are these minus its origin, x * 4096 and y * 4096).
# The PostGIS calls are schema-qualified ({pg}): the function computes stored generated
# columns, and pg_restore fills those with an empty search_path (a backup would not restore).
TILE_PIXELS = f"""
CREATE FUNCTION gridgov_tile_pixels(g geometry, z integer, tolerance_units double precision)
RETURNS geometry LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT {{pg}}.ST_AsMVTGeom(
        {{pg}}.ST_Simplify({{pg}}.ST_Transform(g, 3857),
                    tolerance_units * (2 * {EARTH_HALF}::float8 / (1::bigint << z)) / 4096,
                    true),
        {{pg}}.ST_MakeEnvelope(-{EARTH_HALF}, -{EARTH_HALF}, {EARTH_HALF}, {EARTH_HALF}, 3857),
        4096 << z, 0, false)
$$
"""

CASE_COLUMNS = "id, category_id, urgency, status, reported_at, due_at, geom"
# The same columns of cases ``c`` with the category's code, for INSERT INTO case_tiles.
TILE_COLUMNS = CASE_COLUMNS + ", category"
CASE_ROWS = ("c.id, c.category_id, c.urgency, c.status, c.reported_at, c.due_at, c.geom,"
             " cat.code")

CASE_TILES_TRIGGER = f"""
CREATE FUNCTION gridgov_case_tiles() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM case_tiles;
    ELSIF TG_OP = 'INSERT' THEN
        -- In spatial order within the statement: a bulk load (one COPY of a million cases)
        -- lands as clustered as the initial fill; one row costs nothing to sort.
        INSERT INTO case_tiles ({TILE_COLUMNS})
        SELECT {CASE_ROWS} FROM new_rows c LEFT JOIN categories cat ON cat.id = c.category_id
         ORDER BY c.geom;
    ELSIF TG_OP = 'DELETE' THEN
        DELETE FROM case_tiles c USING old_rows o WHERE c.id = o.id;
    ELSE
        -- Only rows whose tile columns changed are written (most updates of a case are
        -- assignments and notes that a tile does not show). EXECUTE plans the join of the
        -- two transition tables for this statement's row counts: PL/pgSQL would otherwise
        -- keep the plan made for the session's first (small) update, a nested loop that
        -- turns a 50,000-row UPDATE into 2.5·10⁹ comparisons.
        EXECUTE $q$
        DELETE FROM case_tiles c USING old_rows o
         WHERE c.id = o.id AND NOT EXISTS (SELECT 1 FROM new_rows n WHERE n.id = o.id)
        $q$;
        EXECUTE $q$
        INSERT INTO case_tiles ({TILE_COLUMNS})
        SELECT {CASE_ROWS}
          FROM new_rows c LEFT JOIN old_rows o ON o.id = c.id
          LEFT JOIN categories cat ON cat.id = c.category_id
         WHERE o.id IS NULL
            OR (c.category_id, c.urgency, c.status, c.reported_at, c.due_at)
               IS DISTINCT FROM (o.category_id, o.urgency, o.status, o.reported_at, o.due_at)
            OR NOT (c.geom = o.geom)
        ON CONFLICT (id) DO UPDATE SET
            category_id = EXCLUDED.category_id, urgency = EXCLUDED.urgency,
            status = EXCLUDED.status, reported_at = EXCLUDED.reported_at,
            due_at = EXCLUDED.due_at, geom = EXCLUDED.geom, category = EXCLUDED.category
        $q$;
    END IF;
    RETURN NULL;
END $$
"""

REBUILD_CASE_TILES = f"""
CREATE FUNCTION gridgov_rebuild_case_tiles() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    written bigint;
BEGIN
    DELETE FROM case_tiles;
    INSERT INTO case_tiles ({TILE_COLUMNS})
    SELECT {CASE_ROWS} FROM cases c LEFT JOIN categories cat ON cat.id = c.category_id
     ORDER BY c.geom;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END $$
"""

CATEGORY_CODE_TRIGGER = """
CREATE FUNCTION gridgov_case_tiles_category() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE case_tiles SET category = NEW.code WHERE category_id = NEW.id;
    RETURN NULL;
END $$
"""

EVENTS = (("insert", "INSERT", "REFERENCING NEW TABLE AS new_rows"),
          ("update", "UPDATE", "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"),
          ("delete", "DELETE", "REFERENCING OLD TABLE AS old_rows"),
          ("truncate", "TRUNCATE", ""))


def _postgis_schema() -> str:
    """The schema PostGIS is installed in, quoted for SQL."""
    return str(op.get_bind().exec_driver_sql(
        "SELECT quote_ident(extnamespace::regnamespace::text) FROM pg_extension"
        " WHERE extname = 'postgis'").scalar_one())


def upgrade() -> None:
    op.execute(TILE_PIXELS.format(pg=_postgis_schema()))
    for z, units in PIXEL_ZOOMS.items():
        op.execute(f"ALTER TABLE areas ADD COLUMN geom_px{z} geometry GENERATED ALWAYS AS"
                   f" (gridgov_tile_pixels(geom, {z}, {units})) STORED")
        op.execute(f"CREATE INDEX ix_areas_geom_px{z} ON areas USING gist (geom_px{z})"
                   " WHERE valid_to IS NULL")
    op.execute("ANALYZE areas")

    op.execute("""
        CREATE TABLE case_tiles (
            id bigint NOT NULL,
            category_id integer NOT NULL,
            urgency smallint NOT NULL,
            status varchar(16) NOT NULL,
            reported_at timestamptz NOT NULL,
            due_at timestamptz,
            geom geometry(Geometry, 4326) NOT NULL,
            category varchar(16),
            CONSTRAINT pk_case_tiles PRIMARY KEY (id)
        )""")
    op.execute("COMMENT ON TABLE case_tiles IS 'tile columns of cases in spatial order,"
               " kept by triggers (migration 0009_tile_speed)'")
    op.execute(f"INSERT INTO case_tiles ({TILE_COLUMNS}) SELECT {CASE_ROWS} FROM cases c"
               " LEFT JOIN categories cat ON cat.id = c.category_id ORDER BY c.geom")
    op.execute("CREATE INDEX ix_case_tiles_geom ON case_tiles USING gist (geom)")
    op.execute("ANALYZE case_tiles")
    op.execute(CASE_TILES_TRIGGER)
    op.execute(REBUILD_CASE_TILES)
    for name, event, refs in EVENTS:
        op.execute(f"CREATE TRIGGER cases_case_tiles_{name} AFTER {event} ON cases {refs}"
                   " FOR EACH STATEMENT EXECUTE FUNCTION gridgov_case_tiles()")
    op.execute(CATEGORY_CODE_TRIGGER)
    op.execute("CREATE TRIGGER categories_case_tiles AFTER UPDATE OF code ON categories"
               " FOR EACH ROW WHEN (OLD.code IS DISTINCT FROM NEW.code)"
               " EXECUTE FUNCTION gridgov_case_tiles_category()")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS categories_case_tiles ON categories")
    op.execute("DROP FUNCTION IF EXISTS gridgov_case_tiles_category()")
    for name, _, _ in EVENTS:
        op.execute(f"DROP TRIGGER IF EXISTS cases_case_tiles_{name} ON cases")
    op.execute("DROP FUNCTION IF EXISTS gridgov_rebuild_case_tiles()")
    op.execute("DROP FUNCTION IF EXISTS gridgov_case_tiles()")
    op.execute("DROP TABLE IF EXISTS case_tiles")
    for z in PIXEL_ZOOMS:
        op.execute(f"DROP INDEX IF EXISTS ix_areas_geom_px{z}")
        op.execute(f"ALTER TABLE areas DROP COLUMN IF EXISTS geom_px{z}")
    op.execute("DROP FUNCTION IF EXISTS gridgov_tile_pixels(geometry, integer, double precision)")

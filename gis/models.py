"""The data model (DESIGN.md), as SQLAlchemy 2 declarative classes with GeoAlchemy2 geometry.

Storage is WGS84 (SRID 4326); metric work happens in the jurisdiction's local projection.
The Alembic migrations in ``migrations/versions`` create exactly these tables; a test compares
the two so they cannot drift.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

CASE_STATUSES = (
    "reported", "accepted", "filed", "rejected", "redirected", "dispatched", "in_progress",
    "handled", "verified", "reopened", "closed",
)
CHANNELS = ("patrol", "hotline", "app", "video", "sensor", "open311", "walk-in", "import")
RESPONDER_STATUSES = ("available", "busy", "off")
ROLES = (
    "reporter", "grid_worker", "call_taker", "dispatcher", "handler", "supervisor", "planner",
    "analyst", "admin",
)


def _geom(kind: str) -> Any:
    # Spatial indexes are declared explicitly (below and in the migration) so that Alembic
    # creates and drops exactly what the model says.
    return Geometry(kind, srid=4326, spatial_index=False)


def _geom_3857(kind: str) -> Any:
    # Vector tiles draw in Web Mercator: a stored generated copy of an area's ``geom`` spares
    # every tile request a transform per polygon (migration 0006_tile_geoms). Deferred: the ORM
    # never needs it.
    return mapped_column(Geometry(kind, srid=3857, spatial_index=False),
                         Computed("ST_Transform(geom, 3857)", persisted=True), deferred=True)


def _geom_px(z: int, tolerance_units: float) -> Any:
    # The area in the pixels of zoom z as vector tiles draw it (migration 0009_tile_speed,
    # gis/tiles.py PixelGeom). Deferred: the ORM never needs it.
    return mapped_column(Geometry(srid=-1, spatial_index=False),
                         Computed(f"gridgov_tile_pixels(geom, {z}, {tolerance_units})",
                                  persisted=True), deferred=True)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Jurisdiction(Base):
    """A city or county running gridgov; the shard key when scaled out (docs/scaling.md)."""

    __tablename__ = "jurisdictions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(12), unique=True)
    name: Mapped[str] = mapped_column(Text)
    local_srid: Mapped[int] = mapped_column(Integer, comment="metric CRS for areas and distances")
    timezone: Mapped[str] = mapped_column(Text, server_default="UTC")


class AreaLevel(Base):
    """One level of a jurisdiction's hierarchy (rank 0 = top), with its size targets."""

    __tablename__ = "area_levels"
    __table_args__ = (UniqueConstraint("jurisdiction_id", "rank"),
                      UniqueConstraint("jurisdiction_id", "name", name="uq_area_levels_name"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id", ondelete="CASCADE"))
    rank: Mapped[int] = mapped_column(SmallInteger)
    name: Mapped[str] = mapped_column(Text)
    code_digits: Mapped[int] = mapped_column(SmallInteger, comment="digits this level adds")
    target_households: Mapped[int | None] = mapped_column(Integer)
    target_population: Mapped[int | None] = mapped_column(Integer)
    target_area_m2: Mapped[float | None] = mapped_column(Float)
    tolerance: Mapped[float] = mapped_column(Float, server_default="0.1")


class Area(Base):
    """A versioned polygon of the hierarchy. ``valid_to IS NULL`` means in force now."""

    __tablename__ = "areas"
    __table_args__ = (
        CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name="valid_period"),
        CheckConstraint("households >= 0 AND population >= 0", name="counts_nonnegative"),
        CheckConstraint("ST_IsValid(geom) AND NOT ST_IsEmpty(geom)", name="geom_valid"),
        Index("ix_areas_geom", "geom", postgresql_using="gist"),
        Index("ix_areas_geom_3857", "geom_3857", postgresql_using="gist",
              postgresql_where=text("valid_to IS NULL")),
        Index("ix_areas_geom_px12", "geom_px12", postgresql_using="gist",
              postgresql_where=text("valid_to IS NULL")),
        Index("ix_areas_geom_px13", "geom_px13", postgresql_using="gist",
              postgresql_where=text("valid_to IS NULL")),
        Index("ix_areas_geom_px14", "geom_px14", postgresql_using="gist",
              postgresql_where=text("valid_to IS NULL")),
        Index("uq_areas_current_code", "jurisdiction_id", "code", unique=True,
              postgresql_where=text("valid_to IS NULL")),
        Index("ix_areas_level_current", "jurisdiction_id", "level",
              postgresql_where=text("valid_to IS NULL")),
        Index("ix_areas_code", "code"),
        Index("ix_areas_parent", "parent_id"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"))
    level: Mapped[int] = mapped_column(SmallInteger, comment="area_levels.rank")
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(Text)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"))
    grid_type: Mapped[str | None] = mapped_column(Text)
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())
    valid_to: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    area_m2: Mapped[float] = mapped_column(Float, server_default="0")
    households: Mapped[int] = mapped_column(Integer, server_default="0")
    population: Mapped[int] = mapped_column(Integer, server_default="0")
    geom: Mapped[Any] = mapped_column(_geom("MULTIPOLYGON"))
    geom_3857: Mapped[Any] = _geom_3857("MULTIPOLYGON")
    geom_px12: Mapped[Any] = _geom_px(12, 1.0)
    geom_px13: Mapped[Any] = _geom_px(13, 1.0)
    geom_px14: Mapped[Any] = _geom_px(14, 0.5)

    __mapper_args__ = {"version_id_col": version}


class AreaPart(Base):
    """``ST_Subdivide`` pieces of every area version, for fast indexed point lookup."""

    __tablename__ = "area_parts"
    __table_args__ = (
        Index("ix_area_parts_geom", "geom", postgresql_using="gist"),
        Index("ix_area_parts_area", "area_id"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    area_id: Mapped[int] = mapped_column(ForeignKey("areas.id", ondelete="CASCADE"))
    level: Mapped[int] = mapped_column(SmallInteger)
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    valid_to: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    geom: Mapped[Any] = mapped_column(_geom("POLYGON"))


class Department(Base):
    __tablename__ = "departments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str | None] = mapped_column(Text, comment="government, utility, contractor...")


class ResponsibilityZone(Base):
    """A layer outside the tree: enforcement duty area, river reach, street chief, contractor."""

    __tablename__ = "responsibility_zones"
    __table_args__ = (Index("ix_responsibility_zones_geom", "geom", postgresql_using="gist"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"))
    kind: Mapped[str] = mapped_column(Text)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(Text)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    organisation: Mapped[str | None] = mapped_column(Text)
    category_codes: Mapped[list[str] | None] = mapped_column(
        ARRAY(Text), comment="categories this zone takes over (NULL = all)")
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())
    valid_to: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    geom: Mapped[Any] = mapped_column(_geom("GEOMETRY"))


class Building(Base):
    """Population base: counts only (households, residents), never people."""

    __tablename__ = "buildings"
    __table_args__ = (
        CheckConstraint("households >= 0 AND residents >= 0", name="counts_nonnegative"),
        Index("ix_buildings_geom", "geom", postgresql_using="gist"),
        Index("ix_buildings_pt", "pt", postgresql_using="gist"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"))
    source_id: Mapped[str | None] = mapped_column(Text)
    use: Mapped[str | None] = mapped_column(Text)
    levels: Mapped[int | None] = mapped_column(SmallInteger)
    households: Mapped[int] = mapped_column(Integer, server_default="0")
    residents: Mapped[int] = mapped_column(Integer, server_default="0")
    geom: Mapped[Any] = mapped_column(_geom("GEOMETRY"))
    pt: Mapped[Any] = mapped_column(_geom("POINT"), comment="a point inside the footprint")


class Category(Base):
    """Hierarchical case category: components (部件) and events (事件), domain → major → minor."""

    __tablename__ = "categories"
    __table_args__ = (
        CheckConstraint("kind IN ('component', 'event')", name="kind"),
        CheckConstraint("deadline_unit IS NULL OR deadline_unit IN "
                        "('working_hours', 'working_days', 'hours', 'days')", name="deadline_unit"),
        CheckConstraint("urgency BETWEEN 1 AND 4", name="urgency"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"))
    depth: Mapped[int] = mapped_column(SmallInteger, comment="0 domain, 1 major, 2 minor")
    name: Mapped[str] = mapped_column(Text)
    name_zh: Mapped[str | None] = mapped_column(Text)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    deadline_value: Mapped[float | None] = mapped_column(Float)
    deadline_unit: Mapped[str | None] = mapped_column(String(16))
    urgency: Mapped[int] = mapped_column(SmallInteger, server_default="2")
    active: Mapped[bool] = mapped_column(Boolean, server_default="true")


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_in("role", ROLES), name="role"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    role: Mapped[str] = mapped_column(String(16))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    scope_area_ids: Mapped[list[int] | None] = mapped_column(
        ARRAY(BigInteger), comment="roots of the area subtrees this account may see (NULL = all)")
    active: Mapped[bool] = mapped_column(Boolean, server_default="true")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())


class ApiToken(Base):
    """Bearer tokens, stored only as a SHA-256 hash."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Component(Base):
    """A city asset (部件): point or line, 16-digit code, owner department, state."""

    __tablename__ = "components"
    __table_args__ = (Index("ix_components_geom", "geom", postgresql_using="gist"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"))
    code: Mapped[str | None] = mapped_column(String(20), unique=True)
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"))
    kind: Mapped[str] = mapped_column(Text, comment="hydrant, street_light, bin...")
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    state: Mapped[str] = mapped_column(Text, server_default="ok")
    source_id: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[dict | None] = mapped_column(JSONB)
    geom: Mapped[Any] = mapped_column(_geom("GEOMETRY"))


class Facility(Base):
    """A typed public facility with capacity, hours and service radius/minutes."""

    __tablename__ = "facilities"
    __table_args__ = (
        Index("ix_facilities_geom", "geom", postgresql_using="gist"),
        Index("ix_facilities_type", "type"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"))
    type: Mapped[str] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(Text)
    capacity: Mapped[int | None] = mapped_column(Integer)
    hours: Mapped[str | None] = mapped_column(Text)
    service_radius_m: Mapped[float | None] = mapped_column(Float)
    service_minutes: Mapped[float | None] = mapped_column(Float)
    source_id: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[dict | None] = mapped_column(JSONB)
    geom: Mapped[Any] = mapped_column(_geom("POINT"))


class Responder(Base):
    """On-duty staff or a vehicle; only its last position and a bounded on-duty history."""

    __tablename__ = "responders"
    __table_args__ = (
        CheckConstraint(_in("status", RESPONDER_STATUSES), name="status"),
        CheckConstraint("kind IN ('staff', 'vehicle')", name="kind"),
        Index("ix_responders_geom", "geom", postgresql_using="gist"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"))
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16), server_default="staff")
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    skills: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    status: Mapped[str] = mapped_column(String(16), server_default="off")
    home_area_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"))
    position_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    geom: Mapped[Any | None] = mapped_column(_geom("POINT"), nullable=True)


class ResponderPosition(Base):
    __tablename__ = "responder_positions"
    __table_args__ = (Index("ix_responder_positions_at", "responder_id", "recorded_at"),
                      Index("ix_responder_positions_geom", "geom", postgresql_using="gist"))
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    responder_id: Mapped[int] = mapped_column(ForeignKey("responders.id", ondelete="CASCADE"))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    geom: Mapped[Any] = mapped_column(_geom("POINT"))


class Case(Base):
    """A reported problem. ``area_id`` is the grid in force at report time and never changes on
    a redraw unless a publish moves the open case (with an event)."""

    __tablename__ = "cases"
    __table_args__ = (
        CheckConstraint(_in("status", CASE_STATUSES), name="status"),
        CheckConstraint(_in("channel", CHANNELS), name="channel"),
        CheckConstraint("satisfaction IS NULL OR satisfaction BETWEEN 1 AND 5",
                        name="satisfaction"),
        CheckConstraint("length(description) <= 10000", name="description_length"),
        Index("ix_cases_geom", "geom", postgresql_using="gist"),
        Index("ix_cases_area", "area_id"),
        Index("ix_cases_status", "status"),
        Index("ix_cases_reported_at", "reported_at"),
        Index("ix_cases_category", "category_id"),
        Index("ix_cases_responder", "responder_id"),
        Index("uq_cases_idempotency", "idempotency_key", unique=True,
              postgresql_where=text("idempotency_key IS NOT NULL")),
        # INCLUDE: KPIs read the open cases not yet due from the index alone (0004).
        Index("ix_cases_open_due", "due_at",
              postgresql_include=["reported_at", "jurisdiction_id", "area_id", "category_id",
                                  "department_id"],
              postgresql_where=text("status NOT IN ('closed', 'rejected')")),
        Index("ix_cases_duplicate_of", "duplicate_of",
              postgresql_where=text("duplicate_of IS NOT NULL")),
        Index("ix_cases_reporter", "reporter_id",
              postgresql_where=text("reporter_id IS NOT NULL")),
        Index("ix_cases_tracking", "tracking_sha256",
              postgresql_where=text("tracking_sha256 IS NOT NULL")),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"))
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"))
    channel: Mapped[str] = mapped_column(String(16))
    urgency: Mapped[int] = mapped_column(SmallInteger, server_default="2")
    description: Mapped[str] = mapped_column(Text, server_default="")
    media: Mapped[list | None] = mapped_column(JSONB)
    reporter_contact: Mapped[dict | None] = mapped_column(JSONB, comment="private")
    area_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    responder_id: Mapped[int | None] = mapped_column(ForeignKey("responders.id"))
    component_id: Mapped[int | None] = mapped_column(ForeignKey("components.id"))
    status: Mapped[str] = mapped_column(String(16), server_default="reported")
    reported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                  server_default=func.now())
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    escalation_level: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    satisfaction: Mapped[int | None] = mapped_column(SmallInteger)
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    idempotency_fingerprint: Mapped[str | None] = mapped_column(
        String(64), comment="SHA-256 of the request that used idempotency_key")
    reporter_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    tracking_sha256: Mapped[str | None] = mapped_column(
        String(64), comment="SHA-256 of the reporter's tracking token")
    routed_by: Mapped[str | None] = mapped_column(
        Text, comment="which rule chose the department: component, zone, rule, category")
    geom: Mapped[Any] = mapped_column(_geom("GEOMETRY"))


class CaseEvent(Base):
    """Append-only history of a case; a trigger refuses UPDATE and DELETE."""

    __tablename__ = "case_events"
    __table_args__ = (Index("ix_case_events_case", "case_id", "at"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict | None] = mapped_column(JSONB)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RoadNode(Base):
    __tablename__ = "road_nodes"
    __table_args__ = (Index("ix_road_nodes_geom", "geom", postgresql_using="gist"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"))
    geom: Mapped[Any] = mapped_column(_geom("POINT"))


class RoadEdge(Base):
    """Routable edge for pgRouting: costs in seconds; ``reverse_cost < 0`` means one-way."""

    __tablename__ = "road_edges"
    __table_args__ = (
        Index("ix_road_edges_geom", "geom", postgresql_using="gist"),
        Index("ix_road_edges_source", "source"),
        Index("ix_road_edges_target", "target"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"))
    source: Mapped[int] = mapped_column(ForeignKey("road_nodes.id"))
    target: Mapped[int] = mapped_column(ForeignKey("road_nodes.id"))
    cost: Mapped[float] = mapped_column(Float, comment="seconds, source → target")
    reverse_cost: Mapped[float] = mapped_column(Float, comment="seconds, target → source; <0 none")
    length_m: Mapped[float] = mapped_column(Float)
    maxspeed_kmh: Mapped[float] = mapped_column(Float)
    oneway: Mapped[bool] = mapped_column(Boolean, server_default="false")
    highway: Mapped[str | None] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(Text)
    source_id: Mapped[str | None] = mapped_column(Text)
    component: Mapped[int | None] = mapped_column(Integer, comment="connected component id")
    geom: Mapped[Any] = mapped_column(_geom("LINESTRING"))


class Plan(Base):
    """A planner's draft: a copy of an area subtree (``root_area_id``; NULL = the whole
    jurisdiction) edited in ``plan_areas`` and published as a new boundary version.
    ``version`` counts the operations applied (undo and redo included)."""

    __tablename__ = "plans"
    __table_args__ = (CheckConstraint("status IN ('draft', 'published', 'discarded')",
                                      name="status"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"))
    name: Mapped[str] = mapped_column(Text)
    root_area_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"))
    status: Mapped[str] = mapped_column(String(16), server_default="draft")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    check_result: Mapped[dict | None] = mapped_column(JSONB)
    version: Mapped[int] = mapped_column(Integer, server_default="0",
                                         comment="operations applied so far")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())
    published_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class PlanArea(Base):
    """One area of a plan. ``version`` grows with every change (optimistic locking: an edit
    names the version it saw); counts are cached from the buildings inside."""

    __tablename__ = "plan_areas"
    __table_args__ = (Index("ix_plan_areas_geom", "geom", postgresql_using="gist"),
                      Index("ix_plan_areas_plan", "plan_id"),
                      Index("ix_plan_areas_parent", "plan_id", "parent_key"))
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    source_area_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"))
    parent_key: Mapped[int | None] = mapped_column(BigInteger, comment="plan_areas.id of parent")
    level: Mapped[int] = mapped_column(SmallInteger)
    code: Mapped[str | None] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(Text)
    locked: Mapped[bool] = mapped_column(Boolean, server_default="false")
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    grid_type: Mapped[str | None] = mapped_column(Text)
    households: Mapped[int] = mapped_column(Integer, server_default="0")
    population: Mapped[int] = mapped_column(Integer, server_default="0")
    area_m2: Mapped[float] = mapped_column(Float, server_default="0")
    geom: Mapped[Any] = mapped_column(_geom("MULTIPOLYGON"))


class PlanOp(Base):
    """The operation log of a plan, for undo/redo: rows of ``plan_areas`` before and after
    (geometry as hex WKB). Undone operations stay until a new operation replaces them."""

    __tablename__ = "plan_ops"
    __table_args__ = (UniqueConstraint("plan_id", "seq", name="uq_plan_ops_seq"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict | None] = mapped_column(JSONB)
    summary: Mapped[dict | None] = mapped_column(JSONB)
    before: Mapped[list] = mapped_column(JSONB)
    after: Mapped[list] = mapped_column(JSONB)
    undone: Mapped[bool] = mapped_column(Boolean, server_default="false")
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DataVersion(Base):
    """Change marker of a dataset (``road_edges``...), stamped by a statement trigger from a
    sequence, so in-memory caches such as the routing graph rebuild exactly when it changed."""

    __tablename__ = "data_versions"
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())


class CalendarDay(Base):
    """A date that breaks the weekday rule: a holiday (``working`` false) or a make-up working
    day (调休, ``working`` true), per jurisdiction."""

    __tablename__ = "calendar_days"
    jurisdiction_id: Mapped[int] = mapped_column(
        ForeignKey("jurisdictions.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    working: Mapped[bool] = mapped_column(Boolean)
    name: Mapped[str | None] = mapped_column(Text)


class RoutingRule(Base):
    """Category × area routing: cases of ``category_code`` (or its subtree) located in the area
    subtree of ``area_code`` go to ``department_id``. Codes, not ids, so rules survive redraws."""

    __tablename__ = "routing_rules"
    __table_args__ = (UniqueConstraint("jurisdiction_id", "area_code", "category_code",
                                       name="uq_routing_rules_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(
        ForeignKey("jurisdictions.id", ondelete="CASCADE"))
    area_code: Mapped[str] = mapped_column(String(32))
    category_code: Mapped[str] = mapped_column(String(16))
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"))
    note: Mapped[str | None] = mapped_column(Text)


class CaseSummon(Base):
    """吹哨报到: a street summons a department to a case; the department's first response is
    recorded so response time can be measured."""

    __tablename__ = "case_summons"
    __table_args__ = (Index("ix_case_summons_case", "case_id"),
                      Index("ix_case_summons_open", "department_id",
                            postgresql_where=text("responded_at IS NULL")))
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"))
    summoned_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    summoned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                  server_default=func.now())
    responded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    responded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    note: Mapped[str | None] = mapped_column(Text)


class TileInvalidation(Base):
    """Where map data changed: written by statement triggers (migration 0002_tiles), read by the
    tile cache (``gis/tilecache.py``) to evict exactly the tiles that show the change."""

    __tablename__ = "tile_invalidations"
    __table_args__ = (Index("ix_tile_invalidations_txid", "txid"),
                      Index("ix_tile_invalidations_at", "at"))
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    txid: Mapped[int] = mapped_column(
        BigInteger, server_default=text("(pg_current_xact_id())::text::bigint"),
        comment="writing transaction (xid8 as bigint)")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                         server_default=text("clock_timestamp()"),
                                         comment="time of the (last) write")
    table_name: Mapped[str] = mapped_column(Text)
    lon_min: Mapped[float | None] = mapped_column(Float, comment="lon/lat box; NULL = everything")
    lat_min: Mapped[float | None] = mapped_column(Float)
    lon_max: Mapped[float | None] = mapped_column(Float)
    lat_max: Mapped[float | None] = mapped_column(Float)
    n_rows: Mapped[int | None] = mapped_column(Integer,
                                               comment="changed boxes folded into this row")


class LiveChange(Base):
    """The live feed's change log: payloads appended by triggers (migration 0008_intake_speed)
    instead of ``NOTIFY``, read by ``gis.live.ChangeListener`` by transaction visibility."""

    __tablename__ = "live_changes"
    __table_args__ = (Index("ix_live_changes_txid", "txid"),)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    txid: Mapped[int] = mapped_column(
        BigInteger, server_default=text("(pg_current_xact_id())::text::bigint"),
        comment="writing transaction (xid8 as bigint)")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                         server_default=text("clock_timestamp()"))
    payload: Mapped[str] = mapped_column(
        Text, comment="one live-feed note: {type, items} or {type, op: bulk, count}")


class TileCaseCell(Base):
    """Case counts per tile-pyramid cell (levels 12/14/16), category (0 = all) and open/closed,
    kept exact by triggers on ``cases``; aggregated case tiles read it."""

    __tablename__ = "tile_case_cells"
    cz: Mapped[int] = mapped_column(SmallInteger, primary_key=True,
                                    comment="cell level (tile zoom)")
    cx: Mapped[int] = mapped_column(Integer, primary_key=True)
    cy: Mapped[int] = mapped_column(Integer, primary_key=True)
    category_id: Mapped[int] = mapped_column(Integer, primary_key=True,
                                             comment="0 = all categories")
    open: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    n: Mapped[int] = mapped_column(Integer)


class CaseTile(Base):
    """The columns a case tile reads, in spatial order, kept exact by triggers on ``cases`` and
    ``categories`` (migration 0009_tile_speed); case tiles read this, not ``cases``."""

    __tablename__ = "case_tiles"
    __table_args__ = (Index("ix_case_tiles_geom", "geom", postgresql_using="gist"),
                      {"comment": "tile columns of cases in spatial order, kept by triggers"
                                  " (migration 0009_tile_speed)"})
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    category_id: Mapped[int] = mapped_column(Integer)
    urgency: Mapped[int] = mapped_column(SmallInteger)
    status: Mapped[str] = mapped_column(String(16))
    reported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    geom: Mapped[Any] = mapped_column(_geom("GEOMETRY"))
    category: Mapped[str | None] = mapped_column(String(16))


class KpiDaily(Base):
    """Daily case rollup per report day (jurisdiction's local date), grid in force at report
    time, category and department (0 = none), kept exact by statement triggers on ``cases`` and
    ``case_events`` (migration 0002_analysis); ``gis/kpis.py`` reads it. ``ttc_s`` holds the
    exact time to close (seconds) of each closed case, so means and percentiles stay exact."""

    __tablename__ = "kpi_daily"
    __table_args__ = (Index("ix_kpi_daily_area", "area_id", "day"),)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    area_id: Mapped[int] = mapped_column(ForeignKey("areas.id", ondelete="CASCADE"),
                                         primary_key=True)
    category_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    department_id: Mapped[int] = mapped_column(Integer, primary_key=True, comment="0 = none")
    n: Mapped[int] = mapped_column(Integer, server_default="0", comment="cases reported")
    n_due: Mapped[int] = mapped_column(Integer, server_default="0",
                                       comment="with a deadline, not rejected")
    n_closed: Mapped[int] = mapped_column(Integer, server_default="0")
    n_on_time: Mapped[int] = mapped_column(Integer, server_default="0")
    ttc_s: Mapped[list[int]] = mapped_column(ARRAY(Integer), server_default="{}",
                                             comment="time to close of each closed case")
    n_rated: Mapped[int] = mapped_column(Integer, server_default="0")
    sat_sum: Mapped[int] = mapped_column(Integer, server_default="0")
    n_handled: Mapped[int] = mapped_column(Integer, server_default="0",
                                           comment="cases handled at least once")
    n_reopened: Mapped[int] = mapped_column(Integer, server_default="0",
                                            comment="cases reopened at least once")
    n_verify: Mapped[int] = mapped_column(Integer, server_default="0",
                                          comment="verify actions")
    n_verify_pass: Mapped[int] = mapped_column(Integer, server_default="0")


class KpiArea(Base):
    """``kpi_daily`` summed per area and local day (``monthly`` false) or month (true, ``period``
    its first day), with the sum, a histogram in fixed bins (``h00``… , edges
    ``gridgov_kpi_ttc_edges()``) and the sorted list of the times to close, so a level × period
    query finds the exact p90 in two passes (migration 0006_kpi_fast, ``gis/kpis.py``)."""

    __tablename__ = "kpi_area"
    __table_args__ = (Index("ix_kpi_area_area", "area_id"),)
    monthly: Mapped[bool] = mapped_column(
        Boolean, primary_key=True,
        comment="false: period is a local day; true: the first day of a month")
    period: Mapped[date] = mapped_column(Date, primary_key=True)
    area_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("areas.id", ondelete="CASCADE"),
                                         primary_key=True)
    n: Mapped[int] = mapped_column(Integer, server_default="0")
    n_due: Mapped[int] = mapped_column(Integer, server_default="0")
    n_closed: Mapped[int] = mapped_column(Integer, server_default="0")
    n_on_time: Mapped[int] = mapped_column(Integer, server_default="0")
    n_rated: Mapped[int] = mapped_column(Integer, server_default="0")
    sat_sum: Mapped[int] = mapped_column(Integer, server_default="0")
    n_handled: Mapped[int] = mapped_column(Integer, server_default="0")
    n_reopened: Mapped[int] = mapped_column(Integer, server_default="0")
    n_verify: Mapped[int] = mapped_column(Integer, server_default="0")
    n_verify_pass: Mapped[int] = mapped_column(Integer, server_default="0")
    ttc_sum: Mapped[int] = mapped_column(BigInteger, server_default="0",
                                         comment="sum of the times to close (s)")
    # h00 … h39: closed cases per time-to-close bin (40 plain columns: sums stay cheap)
    for _bin in range(40):
        locals()[f"h{_bin:02d}"] = mapped_column(Integer, server_default="0", nullable=False)
    del _bin
    ttc_s: Mapped[list[int]] = mapped_column(
        ARRAY(Integer), server_default="{}",
        comment="time to close of each closed case, sorted")


class KpiAreaQuarter(Base):
    """``kpi_area``'s rows for calendar quarters (migration 0010_kpi_speed): a long period
    reads one row per area and whole quarter instead of three month rows (``gis/kpis.py``)."""

    __tablename__ = "kpi_area_quarter"
    __table_args__ = (Index("ix_kpi_area_quarter_area", "area_id"),)
    period: Mapped[date] = mapped_column(Date, primary_key=True,
                                         comment="first day of the quarter (local report days)")
    area_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("areas.id", ondelete="CASCADE"),
                                         primary_key=True)
    for _column in ("n", "n_due", "n_closed", "n_on_time", "n_rated", "sat_sum", "n_handled",
                    "n_reopened", "n_verify", "n_verify_pass"):
        locals()[_column] = mapped_column(Integer, server_default="0", nullable=False)
    ttc_sum: Mapped[int] = mapped_column(BigInteger, server_default="0",
                                         comment="sum of the times to close (s)")
    for _column in (f"h{i:02d}" for i in range(40)):
        locals()[_column] = mapped_column(Integer, server_default="0", nullable=False)
    del _column
    ttc_s: Mapped[list[int]] = mapped_column(
        ARRAY(Integer), server_default="{}",
        comment="time to close of each closed case, sorted")


class KpiTarget(Base):
    """Configurable target and direction of each KPI (evaluation model, DOMAIN.md)."""

    __tablename__ = "kpi_targets"
    __table_args__ = (CheckConstraint("direction IN ('higher', 'lower')", name="direction"),
                      CheckConstraint("weight >= 0", name="weight"))
    kpi: Mapped[str] = mapped_column(String(32), primary_key=True)
    label: Mapped[str] = mapped_column(Text)
    target: Mapped[float | None] = mapped_column(Float)
    direction: Mapped[str] = mapped_column(String(8))
    weight: Mapped[float] = mapped_column(Float, server_default="1",
                                          comment="weight in the composite score (0 = none)")
    unit: Mapped[str | None] = mapped_column(Text)


class AuditLog(Base):
    """Append-only log of administrative actions (``gis/audit.py``); a trigger refuses UPDATE,
    DELETE and TRUNCATE (migration 0004_audit)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),
                      Index("ix_audit_log_actor", "actor_name", "at"),
                      Index("ix_audit_log_action", "action", "at"))
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    actor_id: Mapped[int | None] = mapped_column(
        BigInteger, comment="users.id at the time (no foreign key: the log outlives accounts)")
    actor_name: Mapped[str] = mapped_column(Text)
    actor_role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict | None] = mapped_column(JSONB)
    request_id: Mapped[str | None] = mapped_column(String(64))

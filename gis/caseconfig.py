"""Settings and constants shared by intake, lifecycle, queries and bulk import of cases."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Cases in these states are finished: never overdue, never escalated, never duplicates' targets.
TERMINAL = ("closed", "rejected")
INTAKE_CHANNELS = ("patrol", "hotline", "app", "video", "sensor", "walk-in", "open311")

# Which roles may report through which channel. Anyone (also the public) may report through the
# app or Open311; the other channels are staff desks or staff-run integrations.
CHANNEL_ROLES: dict[str, tuple[str, ...]] = {
    "app": ("public", "reporter", "grid_worker", "call_taker", "dispatcher", "handler",
            "supervisor", "planner", "analyst", "admin"),
    "open311": ("public", "reporter", "call_taker", "dispatcher", "supervisor", "admin"),
    "patrol": ("grid_worker", "supervisor", "admin"),
    "hotline": ("call_taker", "dispatcher", "supervisor", "admin"),
    "walk-in": ("call_taker", "supervisor", "admin"),
    "video": ("call_taker", "dispatcher", "supervisor", "admin"),
    "sensor": ("call_taker", "dispatcher", "supervisor", "admin"),
}


class CaseSettings(BaseSettings):
    """Case handling knobs (``GRIDGOV_CASES_*``)."""

    model_config = SettingsConfigDict(env_prefix="GRIDGOV_CASES_", extra="ignore")

    duplicate_radius_m: float = Field(
        default=50.0, gt=0, description="a new case this close to an open case of the same"
        " category is linked to it as a duplicate")
    duplicate_window_h: float = Field(
        default=72.0, gt=0, description="…if that case was reported within this many hours")
    nearby_radius_m: float = Field(
        default=250.0, gt=0, description="default radius of GET /api/cases/nearby"
        " (FixMyStreet suggests duplicates within 250 m)")
    nearby_window_days: float = Field(default=30.0, gt=0)
    zone_line_tolerance_m: float = Field(
        default=15.0, ge=0, description="a line zone (river reach, road) covers points this"
        " close to it")
    description_max_chars: int = 10_000
    idempotency_key_max: int = 100
    page_default: int = 100
    page_max: int = 1000

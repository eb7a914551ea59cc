"""Domain errors. ``api/errors.py`` maps each class to one HTTP status, once."""

from __future__ import annotations


class GridgovError(Exception):
    """Base class; ``field`` names the offending input when there is one."""

    def __init__(self, detail: str, *, field: str | None = None, extra: dict | None = None):
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = extra or {}


class InvalidInput(GridgovError):
    """The caller sent something malformed or out of range (HTTP 422)."""


class NotFound(GridgovError):
    """The thing asked for does not exist (HTTP 404)."""


class Conflict(GridgovError):
    """The request clashes with the current state (HTTP 409)."""


class DatabaseUnavailable(GridgovError):
    """The database cannot be reached (HTTP 503)."""


class SetupError(GridgovError):
    """The machine lacks something gridgov needs (PostGIS, PostgreSQL binaries...)."""


class ImportFailed(GridgovError):
    """An import was rejected; ``problems`` lists what is wrong with each feature."""

    def __init__(self, detail: str, problems: list[dict]):
        super().__init__(detail, extra={"problems": problems})
        self.problems = problems

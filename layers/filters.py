"""Parsing of the map filters (``status``, ``category``, ``since``, ``until``) into bound values.

Every value is checked against a closed vocabulary or a strict pattern here, before anything
is built; a bad value is an ``InvalidInput`` naming the parameter, with the value in the
message (truncated, and never echoed into SQL: values are bound parameters).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from gis.errors import InvalidInput

FilterKind = Literal["status", "code_prefix", "choice", "time_from", "time_to"]

_CODE = re.compile(r"^[A-Za-z0-9]{1,20}$")
_WORD = re.compile(r"^[a-z0-9_]{1,40}$")
MAX_VALUES = 50


def _show(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")


@dataclass(frozen=True)
class FilterSpec:
    """How one query parameter of a layer is validated.

    ``status``: a comma list of ``values`` or of ``aliases`` (names for a group of values);
    ``code_prefix``: comma list of category codes, matching the code and its sub-codes;
    ``choice``: comma list of lower-case words (``values`` if given, else any word);
    ``time_from``/``time_to``: an ISO 8601 date or date-time (naive = UTC).
    """

    kind: FilterKind
    values: tuple[str, ...] = ()
    aliases: Mapping[str, tuple[str, ...]] | None = None

    def parse(self, name: str, raw: str) -> Any:
        if self.kind in ("time_from", "time_to"):
            return parse_time(name, raw)
        items = [v.strip() for v in raw.split(",")]
        if not raw.strip() or any(not v for v in items):
            raise InvalidInput(f"{name} must be a comma-separated list, got {_show(raw)}",
                               field=name)
        if len(items) > MAX_VALUES:
            raise InvalidInput(f"{name} takes at most {MAX_VALUES} values", field=name)
        if self.kind == "code_prefix":
            for v in items:
                if not _CODE.match(v):
                    raise InvalidInput(f"{name} codes are letters and digits, got {_show(v)}",
                                       field=name)
            return tuple(sorted({v.upper() + "%" for v in items}))
        if self.kind == "choice":
            for v in items:
                if not _WORD.match(v) or (self.values and v not in self.values):
                    allowed = ", ".join(self.values) if self.values else "lower-case words"
                    raise InvalidInput(f"unknown {name} {_show(v)}; allowed: {allowed}",
                                       field=name)
            return tuple(sorted(set(items)))
        expanded: set[str] = set()
        aliases = self.aliases or {}
        for v in items:
            if v in aliases:
                expanded.update(aliases[v])
            elif v in self.values:
                expanded.add(v)
            else:
                allowed = ", ".join([*aliases, *self.values])
                raise InvalidInput(f"unknown {name} {_show(v)}; allowed: {allowed}", field=name)
        return tuple(sorted(expanded))


def parse_time(name: str, raw: str) -> datetime:
    """ISO 8601 date or date-time → an aware datetime (naive and dates are UTC)."""
    text = raw.strip()
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput(f"{name} must be an ISO 8601 date or date-time, got {_show(raw)}",
                           field=name) from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_filters(specs: Mapping[str, FilterSpec], raw: Mapping[str, str | None],
                  *, layer: str) -> dict[str, Any]:
    """Validate the filter parameters given for ``layer`` → ``{name: bound value}``."""
    values: dict[str, Any] = {}
    for name, text in raw.items():
        if text is None:
            continue
        spec = specs.get(name)
        if spec is None:
            supported = ", ".join(sorted(specs)) or "none"
            raise InvalidInput(f"layer {layer!r} cannot be filtered by {name}"
                               f" (its filters: {supported})", field=name)
        values[name] = spec.parse(name, text)
    since, until = values.get("since"), values.get("until")
    if since is not None and until is not None and since >= until:
        raise InvalidInput("until must be later than since", field="until")
    return values


def filter_key(values: Mapping[str, Any]) -> str:
    """A canonical string of parsed filter values (cache keys, links)."""
    parts = []
    for name in sorted(values):
        value = values[name]
        if isinstance(value, datetime):
            shown = value.astimezone(UTC).isoformat()
        elif isinstance(value, Sequence) and not isinstance(value, str):
            shown = ",".join(value)
        else:
            shown = str(value)
        parts.append(f"{name}={shown}")
    return "&".join(parts)

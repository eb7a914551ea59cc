"""Cases: the public face of intake, lifecycle, queries and bulk import.

The work is split by concept:

- ``gis.intake`` — one report → one located, routed, dated case (idempotent, duplicates linked);
- ``gis.routing_rules`` — which department (component > zone > category × area > category);
- ``gis.calendar`` — working hours, days and holidays; deadlines;
- ``gis.lifecycle`` — the state machine table, actions, supervision separation, escalation;
- ``gis.casequery`` — reading cases as the caller may see them, nearby duplicates, history;
- ``gis.bulk`` — set-based import of historical cases with per-row errors;
- ``gis.auth`` — accounts, roles, tokens, scope.

Open311 and the pages reuse ``create_case``, ``list_cases``, ``get_case`` and ``apply_action``.
"""

from __future__ import annotations

from gis.caseconfig import CHANNEL_ROLES, TERMINAL, CaseSettings
from gis.casequery import CaseFilter, case_events, get_case, list_cases, nearby
from gis.intake import IntakeResult, Report, create_case, deadline_for
from gis.lifecycle import (
    TRANSITIONS,
    ActionRequest,
    allowed_actions,
    apply_action,
    escalate_overdue,
    summons,
)

__all__ = [
    "CHANNEL_ROLES", "TERMINAL", "TRANSITIONS", "ActionRequest", "CaseFilter", "CaseSettings",
    "IntakeResult", "Report", "allowed_actions", "apply_action", "case_events", "create_case",
    "deadline_for", "escalate_overdue", "get_case", "list_cases", "nearby", "summons",
]

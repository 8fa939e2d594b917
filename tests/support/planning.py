"""The plan of a whole state at once, as the engine composes it from the pure planners (tests only)."""

from __future__ import annotations

from collections.abc import Sequence

from shared.desired import Desired
from shared.plan import Action, Observed, plan_additions, plan_narrowing, plan_uploads


def plan_all(
    desired: Desired, observed: Observed, selected: Sequence[str], *, narrow: bool = True
) -> tuple[tuple[Action, ...], tuple[str, ...]]:
    """Every action a full-scope run would take from `observed` (additions, then narrowing computed on
    the state after them, as the engine does), and the conflicts it reports."""
    uploads = plan_uploads(desired, observed.certificates, observed.owner)
    actions = list(uploads.actions)
    conflicts = list(uploads.conflicts)
    for gateway in sorted(selected):
        gateway_plan = plan_additions(
            gateway, desired, observed.gateway_cas.get(gateway, {}), uploads, observed.certificates
        )
        actions.extend(gateway_plan.actions)
        conflicts.extend(gateway_plan.conflicts)
    if narrow and desired.complete and observed.complete:
        actions.extend(plan_narrowing(desired, observed.after(actions), selected).actions)
    return tuple(actions), tuple(conflicts)

"""The timer trigger's schedule as the Functions host reads it, checked before the host does.

A typo in AUDIT_SCHEDULE otherwise shows only in the host's own log, as a function that never runs:
checked with the other settings, it gets a message that names it. Pure: no I/O, nothing from ``azure.*``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

_MONTHS: Final = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# NCRONTAB with seconds: second minute hour day month day-of-week, each (name, lowest, highest, words).
_FIELDS: Final[tuple[tuple[str, int, int, Mapping[str, int]], ...]] = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day", 1, 31, {}),
    ("month", 1, 12, {month: number for number, month in enumerate(_MONTHS, 1)}),
    ("day-of-week", 0, 6, {day: number for number, day in enumerate(_DAYS)}),
)
_ITEM = re.compile(r"^(?P<range>\*|(?P<low>[0-9a-z]+)(?:-(?P<high>[0-9a-z]+))?)(?:/(?P<step>[0-9]+))?$", re.ASCII)
_TIMESPAN = re.compile(r"^(?:\d+\.)?\d{1,2}:\d{2}:\d{2}$", re.ASCII)
# The plans whose timer trigger refuses a TimeSpan schedule (hh:mm:ss): every one but App Service plans.
_TIMESPAN_REFUSED_ON: Final = frozenset({"dynamic", "flexconsumption", "elasticpremium"})


def schedule_problem(schedule: str, hosting_sku: str) -> str:
    """Why the host would refuse `schedule` on a plan of `hosting_sku` (WEBSITE_SKU; "" when unknown),
    or "" when it takes it."""
    if _TIMESPAN.match(schedule):
        if hosting_sku.lower() in _TIMESPAN_REFUSED_ON or not hosting_sku:
            return (
                f"{schedule!r} is a TimeSpan, which the timer trigger takes only on an App Service plan "
                f"(this app's plan: {hosting_sku or 'unknown'}); write a six-field NCRONTAB expression like 0 0 */6 * * *"
            )
        return ""
    problem = ncrontab_problem(schedule)
    return f"must be a six-field NCRONTAB expression (like 0 0 */6 * * *): {problem}" if problem else ""


def ncrontab_problem(expression: str) -> str:
    """Why `expression` is not a six-field NCRONTAB schedule ("" when it is one)."""
    fields = expression.split()
    if len(fields) != len(_FIELDS):
        return f"{len(fields)} field(s) in {expression!r}, not 6"
    for text, (what, low, high, words) in zip(fields, _FIELDS, strict=True):
        for item in text.lower().split(","):
            match = _ITEM.match(item)
            if not match:
                return f"the {what} field {text!r} is not *, a number, a range or a step"
            bounds = [match[part] for part in ("low", "high") if match[part] is not None]
            unknown = [value for value in bounds if not value.isdigit() and value not in words]
            if unknown:
                return f"the {what} field {text!r} holds {unknown[0]!r}, which is neither a number nor a {what} name"
            values = [words[value] if value in words else int(value) for value in bounds]
            if any(not low <= value <= high for value in values):
                return f"the {what} field {text!r} is outside {low}-{high}"
            if len(values) == 2 and values[0] > values[1]:
                return f"the {what} field {text!r} is a range that runs backwards"
            if match["step"] is not None and not 1 <= int(match["step"]) <= high - low + 1:
                return f"the {what} field {text!r} has a step outside 1-{high - low + 1}"
    return ""

"""What a step of a run has to say besides its result: problems (the report's errors) and warnings.

Each read and each write step returns its `Notes` with its value; the report gathers them once, at
the end (`shared.engine`), instead of every step writing into a shared report as it goes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """Something the run could not read or write: an error of its report. `retryable`: a later run
    (an event's redelivery) may succeed; otherwise a setting, a role or the input must change first."""

    message: str
    retryable: bool


@dataclass(frozen=True)
class Notes:
    """A step's problems and warnings, in the order it met them."""

    problems: tuple[Problem, ...] = ()
    warnings: tuple[str, ...] = ()

    @classmethod
    def problem(cls, message: str, *, retryable: bool) -> Notes:
        return cls(problems=(Problem(message, retryable),))

    @classmethod
    def warning(cls, *messages: str) -> Notes:
        return cls(warnings=messages)

    def __add__(self, other: Notes) -> Notes:
        return Notes(self.problems + other.problems, self.warnings + other.warnings)

    def __bool__(self) -> bool:
        return bool(self.problems or self.warnings)


NO_NOTES = Notes()  # a step with nothing to say (frozen: one value serves every default)


def gathered(notes: Iterable[Notes]) -> Notes:
    """Several steps' notes as one, in the order given."""
    total = NO_NOTES
    for each in notes:
        total = total + each
    return total

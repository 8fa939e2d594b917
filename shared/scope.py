"""What a run is asked: which bound certificates it looks at (`Scope`) and how far it may write (`Mode`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Mode(enum.StrEnum):
    """How far a run may write."""

    DRY_RUN = "dry-run"
    ADDITIONS = "additions"  # add missing trust, never take any away
    FULL = "full"  # also remove what nothing needs (full-scope runs only)


@dataclass(frozen=True)
class Scope:
    """Which bound certificates a run looks at. No names: every one (full scope, removals allowed)."""

    certificates: frozenset[str] | None = None

    @property
    def is_full(self) -> bool:
        return self.certificates is None

    def __str__(self) -> str:
        if self.certificates is None:
            return "full"
        # No certificate: a trust bundle's event, which reads the bundles alone.
        return "certificates " + ", ".join(sorted(self.certificates)) if self.certificates else "trust bundles"

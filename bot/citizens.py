"""Moved to :mod:`handoff.citizens` (the citizen's use case is a service, not an adapter);
these names stay importable for the benchmark, which imports them from here."""

from handoff.citizens import CitizenService, Incoming

__all__ = ["CitizenService", "Incoming"]

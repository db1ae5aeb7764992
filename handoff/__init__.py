"""Routing flagged cases to people: duty, cards, claims (see ``HandoffService``)."""

from handoff.hours import OpeningHours
from handoff.service import HandoffFailed, HandoffService

__all__ = ["HandoffFailed", "HandoffService", "OpeningHours"]

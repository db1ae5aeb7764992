"""The vocabulary of the conversation: what comes in (events), what goes out (actions),
and the state a citizen's screening carries between messages.

Everything here is plain data, so the same flow runs in the console, in tests and on
Telegram, and a session can be stored as JSON and restored after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Any

# --- events: what the citizen did ---------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """A slash command, already stripped of '/' and mapped to its canonical English name
    (krise -> crisis, slett -> delete)."""

    name: str
    arg: str = ""


@dataclass(frozen=True)
class Button:
    """An inline keyboard press; ``data`` is the callback data the flow put on the button."""

    data: str


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Unsupported:
    """A sticker, photo, voice note, document or anything else that is not text."""

    kind: str


Event = Command | Button | Text | Unsupported


@dataclass(frozen=True)
class Context:
    """Facts about the world the pure flow may not look up itself."""

    now: datetime
    team_on_duty: bool = False
    next_staffed: datetime | None = None  # when the team is next staffed, if not on duty
    min_age: int = 18
    retention_days: int = 90
    with_therapist: bool = False  # a therapist holds the case: free text goes to them
    handed_over: bool = False  # the team has the case (a card exists): free text is kept for them
    first_aid_given: bool = False  # the adapter already sent ScreeningFlow.first_aid for this text
    opening: tuple[str, str] = ("08:00", "15:30")  # the team's earliest opening, latest closing


# --- actions: what the adapter must do ------------------------------------------------------


class Priority(IntEnum):
    """Routing outcome. Ordered, so max() gives the most urgent."""

    NONE = 0  # nothing to route (yet)
    SELF_HELP = 1  # finished, no risk, wants no contact
    ROUTINE = 2
    PRIORITY = 3
    URGENT = 4
    ACUTE = 5  # an act under way or just happened: top of the queue, the shortest escalation

    @property
    def hands_over_at_once(self) -> bool:
        return self >= Priority.PRIORITY


@dataclass(frozen=True)
class Option:
    label: str
    data: str


@dataclass(frozen=True)
class Say:
    """One message to the citizen. ``urgent`` messages jump the outbound queue (and overtake
    the chat's own backlog); a ``replaceable`` one (a question or a re-prompt) is dropped
    while still queued if a newer message to the same chat makes it stale."""

    text: str
    options: tuple[tuple[Option, ...], ...] = ()
    urgent: bool = False
    replaceable: bool = False


@dataclass(frozen=True)
class Alert:
    """Open or update the case for the therapists. ``priority`` is the routing so far;
    the handoff layer decides whether this posts a new card or edits the existing one."""

    priority: Priority
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Forget:
    """Delete everything stored about this citizen (after /delete was confirmed, or
    after a decline or an under-age answer, where nothing may be kept)."""


@dataclass(frozen=True)
class Note:
    """Something the citizen wrote for the therapist: relayed at once when a therapist holds
    the case, otherwise kept (encrypted) and shown at the claim. ``media`` names a photo,
    voice note or document to be copied instead of text."""

    text: str = ""
    media: str | None = None
    risk: str | None = None  # the risk category the detector found in it, if any


@dataclass(frozen=True)
class RiskText:
    """Free text that the risk detector flagged (issue 4); kept for the therapist."""

    category: str


Action = Say | Alert | Forget | Note | RiskText


# --- state ----------------------------------------------------------------------------------


@dataclass
class Session:
    """A citizen's screening: the machine state plus everything answered so far.

    ``answers`` maps question id -> int (a choice's value) or str (free text).
    ``history`` is the order questions were answered in, for "change previous answer".
    """

    state: str = "new"
    lang: str = "nb"
    answers: dict[str, Any] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)
    alerted: Priority = Priority.NONE
    paused: bool = False
    confirming_delete: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # A crisis step the questionnaire waits for (see flows/crisis.py): "safe_now",
    # "someone_with", "resume" after an act under way, or "ask" for the direct question.
    holding: str | None = None
    # What the crisis steps learnt, for the therapists' card: safe_now / someone_with (bool),
    # signal ("denied", "confirmed", "unanswered"), about_other (bool), acute (bool).
    crisis: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "lang": self.lang,
            "answers": dict(self.answers),
            "history": list(self.history),
            "alerted": int(self.alerted),
            "paused": self.paused,
            "confirming_delete": self.confirming_delete,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "holding": self.holding,
            "crisis": dict(self.crisis),
        }

    def copy(self) -> Session:
        """A copy with answers and history of its own (as ``from_dict(to_dict())``, cheaper)."""
        return Session(
            state=self.state,
            lang=self.lang,
            answers=dict(self.answers),
            history=list(self.history),
            alerted=Priority(self.alerted),
            paused=bool(self.paused),
            confirming_delete=bool(self.confirming_delete),
            started_at=self.started_at,
            finished_at=self.finished_at,
            holding=self.holding,
            crisis=dict(self.crisis),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Session:
        def when(key: str) -> datetime | None:
            value = data.get(key)
            return datetime.fromisoformat(value) if value else None

        return cls(
            state=data.get("state", "new"),
            lang=data.get("lang", "nb"),
            answers=dict(data.get("answers", {})),
            history=list(data.get("history", [])),
            alerted=Priority(data.get("alerted", 0)),
            paused=bool(data.get("paused", False)),
            confirming_delete=bool(data.get("confirming_delete", False)),
            started_at=when("started_at"),
            finished_at=when("finished_at"),
            holding=data.get("holding"),
            crisis=dict(data.get("crisis") or {}),
        )


@dataclass(frozen=True)
class Reply:
    """What the flow returns for one event: the new session and the actions to carry out,
    in order. A ``Forget`` among the actions means nothing of this session may be kept."""

    session: Session
    actions: tuple[Action, ...]

    @property
    def forget(self) -> bool:
        return any(isinstance(action, Forget) for action in self.actions)

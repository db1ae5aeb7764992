"""A course of treatment with routine outcome monitoring, as plain domain code (no database).

A :class:`Course` holds the baseline (the intake screening's PHQ-9/GAD-7, unless it is older
than 4 weeks when the course starts: then the first measure), the measures, the booked
session times, the cadence (before each booked session, or every N days), the invitations
sent and the status. Everything that depends on time takes ``now`` as an argument, so the
scheduler, the tests and a replay all see the same rules:

* a measure is due the day before a booked session (24 hours before it), or when the
  interval has passed since the last measure or invitation; never while another is open,
  never when one was sent or answered in the 3 days before that session;
* one gentle reminder, halfway between the invitation and its deadline (at most 24 hours
  after it), and none once the deadline (the session) has passed;
* nothing is sent in the quiet hours (21:00-08:00 local time): it waits for the morning.

:func:`therapist_view` is what the therapist reads after a measure, :func:`outcome_text` the
course's outcome at the end (the commands are read by ``handoff/course_commands.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, tzinfo
from types import MappingProxyType
from typing import Any, Literal
from zoneinfo import ZoneInfo

from flows.outcomes import INSTRUMENTS, Change, Outcome, OutcomeRules, Scores, load_rules, outcome
from flows.questionnaire import Script, load_script

__all__ = [
    "END_REASONS",
    "Course",
    "CourseOutcome",
    "Due",
    "Invitation",
    "Measure",
    "outcome_text",
    "therapist_view",
]

OSLO = ZoneInfo("Europe/Oslo")
LEAD = timedelta(hours=24)  # a measure goes out this long before the session
FRESH = timedelta(days=3)  # a measure this close before a session speaks for it
MANUAL_DEADLINE = timedelta(days=3)  # an unscheduled measure stays open this long
QUIET = (time(21, 0), time(8, 0))  # local: nothing is sent between these

#: why a course ended -> the words in the record
END_REASONS: Mapping[str, str] = MappingProxyType(
    {
        "finished": "avsluttet som planlagt",
        "dropped_out": "falt fra",
        "referred_on": "henvist videre",
        "moved": "flyttet",
    }
)


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


# --- measures ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measure:
    """One measurement: the totals, item 9, the work situation (the screening's ``work``
    choice, when asked) and the item answers for the record."""

    at: datetime
    phq9: int
    gad7: int
    item9: int
    work: int | None = None
    answers: Mapping[str, int] = field(default_factory=dict)
    source: Literal["intake", "measure"] = "measure"
    occasion_id: str | None = None

    @property
    def scores(self) -> Scores:
        return Scores(self.phq9, self.gad7)

    @classmethod
    def from_answers(
        cls,
        at: datetime,
        answers: Mapping[str, Any],
        *,
        source: Literal["intake", "measure"] = "measure",
        occasion_id: str | None = None,
        script: Script | None = None,
    ) -> Measure:
        """From item answers (a screening's or an occasion's): both instruments must be complete."""
        script = script or load_script()
        totals = {}
        for iid in INSTRUMENTS:
            instrument = script.instruments[iid]
            if not instrument.complete(answers):
                raise ValueError(f"{iid} is not complete")
            totals[iid] = instrument.total(answers) or 0
        items = {q.id for iid in INSTRUMENTS for q in script.instruments[iid].scored_items}
        work = answers.get("work")
        return cls(
            at=at,
            phq9=totals["phq9"],
            gad7=totals["gad7"],
            item9=int(answers["phq9_9"]),
            work=work if isinstance(work, int) else None,
            answers=MappingProxyType({k: int(v) for k, v in answers.items() if k in items}),
            source=source,
            occasion_id=occasion_id,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "phq9": self.phq9,
            "gad7": self.gad7,
            "item9": self.item9,
            "work": self.work,
            "answers": dict(self.answers),
            "source": self.source,
            "occasion_id": self.occasion_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measure:
        return cls(
            at=datetime.fromisoformat(data["at"]),
            phq9=int(data["phq9"]),
            gad7=int(data["gad7"]),
            item9=int(data["item9"]),
            work=data.get("work"),
            answers=MappingProxyType(dict(data.get("answers", {}))),
            source=data.get("source", "measure"),
            occasion_id=data.get("occasion_id"),
        )


@dataclass
class Invitation:
    """A measure sent to the citizen: for a session or interval ``slot``, or by hand (None)."""

    occasion_id: str
    sent_at: datetime
    deadline: datetime
    slot: datetime | None = None
    reminded_at: datetime | None = None
    answered_at: datetime | None = None
    declined_at: datetime | None = None
    expired_at: datetime | None = None

    def is_open(self, now: datetime) -> bool:
        closed = self.answered_at or self.declined_at or self.expired_at
        return closed is None and now < self.deadline

    def to_dict(self) -> dict[str, Any]:
        return {k: _iso(getattr(self, k)) for k in _INVITATION_TIMES} | {"occasion_id": self.occasion_id}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Invitation:
        times = {k: _when(data.get(k)) for k in _INVITATION_TIMES}
        return cls(occasion_id=data["occasion_id"], **times)  # type: ignore[arg-type]


_INVITATION_TIMES = ("sent_at", "deadline", "slot", "reminded_at", "answered_at", "declined_at", "expired_at")


@dataclass(frozen=True)
class Due:
    """Something the scheduler should send now."""

    kind: Literal["measure", "reminder"]
    deadline: datetime
    slot: datetime | None = None
    occasion_id: str | None = None  # the invitation a reminder is for
    ask_work: bool = False


@dataclass(frozen=True)
class CourseOutcome:
    """The outcome of a course: first and last measure, and the NHS Talking Therapies
    verdicts when both are there (``outcome`` None otherwise)."""

    baseline: Measure | None
    final: Measure | None
    outcome: Outcome | None
    measures: int
    sessions: int
    finished_treatment: bool  # at least min_sessions sessions
    end_reason: str | None

    @property
    def paired(self) -> bool:
        return self.outcome is not None


# --- the course ---------------------------------------------------------------------------------


@dataclass
class Course:
    """A course of treatment for one case, held by one therapist."""

    case_id: int
    label: str  # the case label (K-4F7Q): the only name the course has in texts
    therapist_id: int
    started_at: datetime
    intake: Measure | None = None
    measures: list[Measure] = field(default_factory=list)
    sessions: list[datetime] = field(default_factory=list)
    every: timedelta | None = None  # None: before each booked session
    invitations: list[Invitation] = field(default_factory=list)
    status: Literal["active", "ended"] = "active"
    ended_at: datetime | None = None
    end_reason: str | None = None
    first_contact_at: datetime | None = None  # the case was created
    assessment_at: datetime | None = None  # the assessment conversation (default: the start)

    @classmethod
    def start(
        cls,
        case_id: int,
        label: str,
        therapist_id: int,
        now: datetime,
        *,
        intake: Measure | None = None,
        first_contact_at: datetime | None = None,
        assessment_at: datetime | None = None,
    ) -> Course:
        return cls(
            case_id=case_id,
            label=label,
            therapist_id=therapist_id,
            started_at=now,
            intake=intake,
            first_contact_at=first_contact_at,
            assessment_at=assessment_at or now,
        )

    # --- baseline and final ---

    def intake_is_baseline(self, rules: OutcomeRules | None = None) -> bool:
        """The intake counts as baseline when it is no older than 4 weeks at the start."""
        if self.intake is None:
            return False
        limit = timedelta(days=(rules or load_rules()).baseline_max_age_days)
        return self.started_at - self.intake.at <= limit

    def baseline(self, rules: OutcomeRules | None = None) -> Measure | None:
        if self.intake_is_baseline(rules):
            return self.intake
        return self.measures[0] if self.measures else None

    def final(self, rules: OutcomeRules | None = None) -> Measure | None:
        """The last measure after the baseline (None while there is none)."""
        baseline = self.baseline(rules)
        later = [m for m in self.measures if m is not baseline]
        return later[-1] if later else None

    def sessions_held(self, until: datetime | None = None) -> int:
        """Booked sessions up to ``until`` (the end, or all); with none booked (an interval
        cadence), the measures answered during the course stand in for the sessions."""
        until = until or self.ended_at or datetime.max.replace(tzinfo=UTC)
        booked = sum(1 for s in self.sessions if s <= until)
        return booked if self.sessions else len(self.measures)

    # --- the therapist's changes ---

    def book(self, at: datetime) -> None:
        self._active()
        if at not in self.sessions:
            self.sessions.append(_aware(at))
            self.sessions.sort()

    def set_every(self, every: timedelta | None) -> None:
        self._active()
        if every is not None and every < timedelta(days=1):
            raise ValueError("the interval must be at least a day")
        self.every = every

    def end(self, reason: str, now: datetime) -> CourseOutcome:
        self._active()
        if reason not in END_REASONS:
            raise ValueError(f"reason must be one of {list(END_REASONS)}")
        self.status, self.ended_at, self.end_reason = "ended", now, reason
        for invitation in self.invitations:
            if invitation.is_open(now):
                invitation.expired_at = now
        return self.outcome()

    def _active(self) -> None:
        if self.status != "active":
            raise ValueError("the course has ended")

    # --- invitations and answers ---

    def invite(
        self, occasion_id: str, now: datetime, slot: datetime | None = None, deadline: datetime | None = None
    ) -> Invitation:
        """Record a measure sent (by the scheduler for ``slot``, or by hand with ``/measure``)."""
        self._active()
        if deadline is None:
            upcoming = [s for s in self.sessions if now < s <= now + timedelta(days=7)]
            deadline = upcoming[0] if upcoming else now + MANUAL_DEADLINE
        invitation = Invitation(occasion_id, sent_at=now, deadline=deadline, slot=slot)
        self.invitations.append(invitation)
        return invitation

    def invitation(self, occasion_id: str) -> Invitation:
        return next(i for i in self.invitations if i.occasion_id == occasion_id)

    def remind(self, occasion_id: str, now: datetime) -> None:
        self.invitation(occasion_id).reminded_at = now

    def decline(self, occasion_id: str, now: datetime) -> None:
        self.invitation(occasion_id).declined_at = now

    def expire(self, occasion_id: str, now: datetime) -> None:
        self.invitation(occasion_id).expired_at = now

    def record(self, measure: Measure) -> None:
        """A measure answered (its invitation, if any, is then answered too)."""
        self.measures.append(measure)
        self.measures.sort(key=lambda m: m.at)
        for invitation in self.invitations:
            if invitation.occasion_id == measure.occasion_id and measure.occasion_id is not None:
                invitation.answered_at = measure.at

    def wants_work(self, slot: datetime | None = None, rules: OutcomeRules | None = None) -> bool:
        """Ask the work question at the start (no baseline work answer yet) and before the
        last booked session of a course with two or more."""
        baseline = self.baseline(rules)
        if baseline is None or baseline.work is None:
            return not any(m.work is not None for m in self.measures)
        return slot is not None and len(self.sessions) >= 2 and slot == self.sessions[-1]

    # --- what the scheduler should do now ---

    def expired(self, now: datetime) -> list[Invitation]:
        """Invitations whose deadline has passed unanswered: to be closed (``MeasureFlow.expire``)."""
        return [
            i
            for i in self.invitations
            if not (i.answered_at or i.declined_at or i.expired_at) and now >= i.deadline
        ]

    def due(self, now: datetime, tz: tzinfo = OSLO) -> list[Due]:
        """What should be sent at ``now``: reminders for open invitations, and a new measure
        when the cadence calls for one and none is open."""
        now = _aware(now)
        local = now.astimezone(tz).time()
        if self.status != "active" or local >= QUIET[0] or local < QUIET[1]:
            return []
        due: list[Due] = []
        open_ = [i for i in self.invitations if i.is_open(now)]
        for invitation in open_:
            wait = min(timedelta(hours=24), (invitation.deadline - invitation.sent_at) / 2)
            if invitation.reminded_at is None and now >= invitation.sent_at + wait:
                due.append(Due("reminder", invitation.deadline, invitation.slot, invitation.occasion_id))
        if open_:
            return due
        slot = self._next_slot(now)
        if slot is not None:
            start, deadline = slot
            due.append(Due("measure", deadline, start, ask_work=self.wants_work(start)))
        return due

    def _next_slot(self, now: datetime) -> tuple[datetime, datetime] | None:
        if self.every is not None:
            times = [self.started_at, *(i.sent_at for i in self.invitations)]
            times += [m.at for m in self.measures if m.source == "measure"]
            slot = max(times) + self.every
            if now < slot:
                return None
            return slot, slot + min(self.every / 2, MANUAL_DEADLINE)
        for session in self.sessions:
            if not session - LEAD <= now < session:
                continue
            recent = [i.sent_at for i in self.invitations] + [m.at for m in self.measures]
            if any(session - FRESH <= t < session for t in recent):
                continue
            return session, session
        return None

    # --- the outcome ---

    def outcome(self, rules: OutcomeRules | None = None) -> CourseOutcome:
        rules = rules or load_rules()
        baseline, final = self.baseline(rules), self.final(rules)
        result = outcome(baseline.scores, final.scores, rules) if baseline and final else None
        sessions = self.sessions_held()
        return CourseOutcome(
            baseline=baseline,
            final=final,
            outcome=result,
            measures=len(self.measures),
            sessions=sessions,
            finished_treatment=sessions >= rules.min_sessions,
            end_reason=self.end_reason,
        )

    # --- storage ---

    def to_dict(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "label": self.label,
            "therapist_id": self.therapist_id,
            "started_at": self.started_at.isoformat(),
            "intake": self.intake.to_dict() if self.intake else None,
            "measures": [m.to_dict() for m in self.measures],
            "sessions": [s.isoformat() for s in self.sessions],
            "every_days": self.every.total_seconds() / 86400 if self.every else None,
            "invitations": [i.to_dict() for i in self.invitations],
            "status": self.status,
            "ended_at": _iso(self.ended_at),
            "end_reason": self.end_reason,
            "first_contact_at": _iso(self.first_contact_at),
            "assessment_at": _iso(self.assessment_at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Course:
        every = data.get("every_days")
        return cls(
            case_id=int(data["case_id"]),
            label=str(data["label"]),
            therapist_id=int(data["therapist_id"]),
            started_at=datetime.fromisoformat(data["started_at"]),
            intake=Measure.from_dict(data["intake"]) if data.get("intake") else None,
            measures=[Measure.from_dict(m) for m in data.get("measures", [])],
            sessions=[datetime.fromisoformat(s) for s in data.get("sessions", [])],
            every=timedelta(days=every) if every else None,
            invitations=[Invitation.from_dict(i) for i in data.get("invitations", [])],
            status=data.get("status", "active"),
            ended_at=_when(data.get("ended_at")),
            end_reason=data.get("end_reason"),
            first_contact_at=_when(data.get("first_contact_at")),
            assessment_at=_when(data.get("assessment_at")),
        )


# --- texts for the therapist ----------------------------------------------------------------------


def _day(when: datetime, tz: tzinfo) -> str:
    return _aware(when).astimezone(tz).strftime("%d.%m.%Y")


def _score(iid: str, total: int, script: Script) -> str:
    instrument = script.instruments[iid]
    return f"{instrument.name} {total} ({instrument.band(total).label['nb'].lower()})"


def _change(moved: Change, name: str) -> str:
    sign = "+" if moved.delta > 0 else ("−" if moved.delta < 0 else "±")
    verdict = {
        "improved": "pålitelig bedring",
        "deteriorated": "pålitelig forverring",
        "unchanged": "ikke pålitelig endring",
    }[moved.direction]
    return f"{name} {sign}{abs(moved.delta)} ({verdict})"


def _changes(before: Measure, after: Measure, rules: OutcomeRules, script: Script) -> str:
    moved = [
        _change(
            Change(iid, before.scores[iid], after.scores[iid], rules[iid].reliable_change), rules[iid].name
        )
        for iid in INSTRUMENTS
    ]
    return ", ".join(moved)


def _work(value: int | None, script: Script) -> str:
    if value is None:
        return "ikke spurt"
    choice = script.question("work").choice_for_value(value)
    return choice.label("nb") if choice else str(value)


def therapist_view(
    course: Course,
    measure: Measure,
    *,
    tz: tzinfo = OSLO,
    rules: OutcomeRules | None = None,
    script: Script | None = None,
) -> str:
    """What the therapist reads when a measure is in: totals with bands, item 9, the change
    since the baseline and since the last measure with the reliable-change verdicts, work."""
    rules, script = rules or load_rules(), script or load_script()
    item9 = script.question("phq9_9").choice_for_value(measure.item9)
    lines = [
        f"Sak {course.label}: ny måling {_aware(measure.at).astimezone(tz):%d.%m.%Y kl. %H:%M}",
        f"{_score('phq9', measure.phq9, script)} · {_score('gad7', measure.gad7, script)}",
        f"PHQ-9 spørsmål 9 (tanker om død/selvskading): {item9.label('nb') if item9 else '–'}"
        + (" – VARSLET" if measure.item9 >= 1 else ""),
    ]
    baseline = course.baseline(rules)
    earlier = [m for m in course.measures if m.at < measure.at]
    if baseline is not None and baseline is not measure:
        where = "kartleggingen" if baseline.source == "intake" else "første måling"
        lines.append(
            f"Siden start ({where} {_day(baseline.at, tz)}): {_changes(baseline, measure, rules, script)}"
        )
    else:
        lines.append("Dette er startmålingen (baseline).")
    if earlier and earlier[-1] is not baseline:
        lines.append(
            f"Siden forrige ({_day(earlier[-1].at, tz)}): {_changes(earlier[-1], measure, rules, script)}"
        )
    if measure.work is not None:
        start = baseline.work if baseline is not None and baseline is not measure else None
        lines.append(
            f"Arbeid: {_work(measure.work, script)}"
            + (f" (ved start: {_work(start, script)})" if start is not None else "")
        )
    lines.append(
        f"Pålitelig endring: PHQ-9 ≥ {rules['phq9'].reliable_change}, "
        f"GAD-7 ≥ {rules['gad7'].reliable_change} poeng. "
        f"Klinisk nivå: PHQ-9 ≥ {rules['phq9'].caseness}, GAD-7 ≥ {rules['gad7'].caseness}."
    )
    return "\n".join(lines)


def _yes(value: bool | None) -> str:
    return "ikke aktuelt (under klinisk nivå ved start)" if value is None else ("ja" if value else "nei")


def outcome_text(
    course: Course, *, tz: tzinfo = OSLO, rules: OutcomeRules | None = None, script: Script | None = None
) -> str:
    """The course's outcome for the therapist at ``/course end``: baseline and final totals,
    measures and sessions, and the NHS Talking Therapies verdicts."""
    rules, script = rules or load_rules(), script or load_script()
    result = course.outcome(rules)
    if course.ended_at is None:
        head = f"Sak {course.label}: forløpet pågår"
    else:
        head = f"Sak {course.label}: forløpet er {END_REASONS.get(course.end_reason or '', '–')}"
        head += f" ({_day(course.ended_at, tz)})"
    lines = [head]
    for name, m in (("Start", result.baseline), ("Slutt", result.final)):
        if m is None:
            lines.append(f"{name}: ingen måling")
        else:
            where = "kartlegging" if m.source == "intake" else "måling"
            scores = f"{_score('phq9', m.phq9, script)}, {_score('gad7', m.gad7, script)}"
            lines.append(f"{name} ({where} {_day(m.at, tz)}): {scores}")
    held = "samtaler" if course.ended_at is not None else "samtaler avtalt"
    lines.append(f"Målinger: {result.measures} · {held}: {result.sessions}")
    if result.outcome is None:
        lines.append("Utfall: kan ikke beregnes uten både start- og sluttmåling.")
    else:
        o = result.outcome
        lines += [
            f"Endring: {_changes(result.baseline, result.final, rules, script)}",  # type: ignore[arg-type]
            f"Klinisk nivå ved start: {'ja' if o.caseness_at_start else 'nei'}",
            f"Bedring (under klinisk nivå på begge ved slutt): {_yes(o.recovered)}",
            f"Pålitelig bedring: {'ja' if o.reliably_improved else 'nei'}",
            f"Pålitelig bedring og under klinisk nivå: {_yes(o.reliably_recovered)}",
            f"Pålitelig forverring: {'ja' if o.reliably_deteriorated else 'nei'}",
        ]
        if not result.finished_treatment:
            lines.append(f"(Færre enn {rules.min_sessions} samtaler: telles ikke som fullført behandling.)")
    works = [m.work for m in (result.baseline, result.final) if m is not None]
    if any(w is not None for w in works) and result.baseline and result.final:
        lines.append(
            f"Arbeid: ved start {_work(result.baseline.work, script)}, "
            f"ved slutt {_work(result.final.work, script)}"
        )
    return "\n".join(lines)

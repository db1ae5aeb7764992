"""One measurement occasion between sessions: PHQ-9 and GAD-7 through the chat.

The citizen's side of routine outcome monitoring (issue 33), in the same form as the
screening: the published items from ``phq9.toml`` and ``gad7.toml``, buttons lowest score
first, typed labels or numbers accepted, progress over the whole measure ("3 av 16"), and
the ways out. It is introduced as part of their help ("før neste samtale med Kari"), can be
paused or declined without pressure (the therapist is told), and is as safe as the
screening: PHQ-9 item 9 of 1 or more, or risk in anything typed, alerts the course's
therapist at once and gives the citizen the crisis numbers.

The states and transitions are a declarative table handed to ``transitions``, as in
``flows/conversation.py``; ``MeasureFlow.handle`` turns one event into the new
:class:`Occasion` and the actions to carry out. Pure: no I/O, no clock (the time comes in
the ``Context``). ``/slett`` and ``/minedata`` are the adapter's to route before this flow.
"""

from __future__ import annotations

import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib.resources import files
from types import MappingProxyType
from typing import Any, Literal

from transitions import Machine

from flows import messages, risk_text
from flows.model import (
    Alert,
    Button,
    Command,
    Context,
    Event,
    Note,
    Option,
    Priority,
    RiskText,
    Say,
    Text,
    Unsupported,
)
from flows.outcomes import INSTRUMENTS, OutcomeRules, load_rules
from flows.questionnaire import Question, Script, load_script
from flows.routing import load_routing

__all__ = [
    "CLOSED",
    "DECLINED",
    "DONE",
    "EXPIRED",
    "INVITED",
    "WORK",
    "Completed",
    "MeasureFlow",
    "MeasureReply",
    "Occasion",
    "TellTherapist",
    "mt",
]

INVITED = "invited"
WORK = "work"  # the screening's question on work situation, at the start and end of a course
DONE = "done"
DECLINED = "declined"
EXPIRED = "expired"  # the session it was for has passed, unanswered
CLOSED = (DONE, DECLINED, EXPIRED)
ITEM9 = "phq9_9"
PREFIX = "m"  # callback data: m:<occasion id>:<what>

_YES = {"ja", "j", "yes", "y", "ok", "start", "jo"}
_NO = {"nei", "n", "no", "nei takk", "no thanks", "ikke denne gangen", "not this time"}


@cache
def _catalogue() -> Mapping[str, Mapping[str, Any]]:
    return tomllib.loads(files("flows").joinpath("data/measure_messages.toml").read_text("utf-8"))


def mt(key: str, lang: str, **values: Any) -> str:
    """A text from ``measure_messages.toml`` in ``lang`` (bokmål if missing), filled in."""
    entry = _catalogue()[key]
    template = entry.get(lang) or entry["nb"]
    return template.format(**values) if values else template


# --- state and actions ------------------------------------------------------------------------


@dataclass
class Occasion:
    """One measurement occasion: where the citizen is and what they have answered.

    Serialises to a plain dict (``to_dict``) to be stored encrypted like a screening.
    ``id`` is put on every button, so a button from an earlier occasion cannot answer this one.
    """

    id: str
    therapist: str  # the name the citizen knows their therapist by
    lang: str = "nb"
    state: str = INVITED
    answers: dict[str, int] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)
    ask_work: bool = False
    session_at: datetime | None = None  # the session it is for, if booked (local time)
    paused: bool = False
    alerted: Priority = Priority.NONE
    started_at: datetime | None = None
    finished_at: datetime | None = None
    declined_at: datetime | None = None

    @staticmethod
    def new_id() -> str:
        return secrets.token_hex(4)

    def to_dict(self) -> dict[str, Any]:
        def when(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": self.id,
            "therapist": self.therapist,
            "lang": self.lang,
            "state": self.state,
            "answers": dict(self.answers),
            "history": list(self.history),
            "ask_work": self.ask_work,
            "session_at": when(self.session_at),
            "paused": self.paused,
            "alerted": int(self.alerted),
            "started_at": when(self.started_at),
            "finished_at": when(self.finished_at),
            "declined_at": when(self.declined_at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Occasion:
        def when(key: str) -> datetime | None:
            value = data.get(key)
            return datetime.fromisoformat(value) if value else None

        return cls(
            id=str(data["id"]),
            therapist=str(data["therapist"]),
            lang=data.get("lang", "nb"),
            state=data.get("state", INVITED),
            answers={str(k): int(v) for k, v in data.get("answers", {}).items()},
            history=list(data.get("history", [])),
            ask_work=bool(data.get("ask_work", False)),
            session_at=when("session_at"),
            paused=bool(data.get("paused", False)),
            alerted=Priority(data.get("alerted", 0)),
            started_at=when("started_at"),
            finished_at=when("finished_at"),
            declined_at=when("declined_at"),
        )

    def copy(self) -> Occasion:
        return Occasion.from_dict(self.to_dict())


@dataclass(frozen=True)
class Completed:
    """The citizen answered every item: the totals for the course and the therapist."""

    phq9: int
    gad7: int
    item9: int
    work: int | None
    answers: Mapping[str, int]


@dataclass(frozen=True)
class TellTherapist:
    """Something the course's therapist should know that is not a risk: the citizen paused
    or declined (told plainly, so nobody chases the citizen about it)."""

    what: Literal["paused", "declined"]
    answered: int  # how many items were answered by then


MeasureAction = Say | Alert | Note | RiskText | Completed | TellTherapist


@dataclass(frozen=True)
class MeasureReply:
    occasion: Occasion
    actions: tuple[MeasureAction, ...]

    @property
    def completed(self) -> Completed | None:
        return next((a for a in self.actions if isinstance(a, Completed)), None)


class _Cursor:
    state: str

    def __init__(self) -> None:
        self.state = INVITED


# --- the flow --------------------------------------------------------------------------------


class MeasureFlow:
    """Build once per process; ``invite``, ``handle``, ``remind`` and ``expire`` are then
    cheap and side-effect free."""

    def __init__(self, script: Script | None = None, rules: OutcomeRules | None = None) -> None:
        self.script = script or load_script()
        self.rules = rules or load_rules()
        self.items: tuple[Question, ...] = tuple(
            q for iid in INSTRUMENTS for q in self.script.instruments[iid].scored_items
        )
        self.work: Question = self.script.question(WORK)
        self.questions: Mapping[str, Question] = MappingProxyType({q.id: q for q in (*self.items, self.work)})
        routing = {r.reason: r for r in load_routing().rules}
        self.safety = tuple(routing[reason] for reason in self.rules.alert_rules)
        self.machine = Machine(
            model=None,
            states=[INVITED, *self.questions, *CLOSED],
            transitions=self.transition_table(),
            auto_transitions=False,
            send_event=False,
            initial=None,
        )
        self._cursor = _Cursor()
        self.machine.add_model(self._cursor, initial=INVITED)
        self._triggers = {s: frozenset(self.machine.get_triggers(s)) for s in self.machine.states}

    def transition_table(self) -> list[dict[str, Any]]:
        ids = [q.id for q in self.items]
        open_states = [INVITED, *ids, WORK]
        table: list[dict[str, Any]] = [
            {"trigger": "begin", "source": INVITED, "dest": ids[0]},
            {"trigger": "decline", "source": open_states, "dest": DECLINED},
            {"trigger": "expire", "source": open_states, "dest": EXPIRED},
            {"trigger": "next", "source": ids[-1], "dest": WORK, "conditions": ["asks_work"]},
            {"trigger": "next", "source": ids[-1], "dest": DONE},
            {"trigger": "next", "source": WORK, "dest": DONE},
            {"trigger": "back", "source": WORK, "dest": ids[-1]},
        ]
        for before, after in zip(ids, ids[1:], strict=False):
            table.append({"trigger": "next", "source": before, "dest": after})
            table.append({"trigger": "back", "source": after, "dest": before})
        return table

    def move(self, state: str, trigger: str, ask_work: bool = False) -> str | None:
        """The state ``trigger`` leads to from ``state``, or None if it leads nowhere."""
        if trigger not in self._triggers.get(state, ()):
            return None
        cursor = self._cursor
        self.machine.set_state(state, model=cursor)
        cursor.asks_work = lambda: ask_work  # type: ignore[attr-defined]
        moved = cursor.trigger(trigger)  # type: ignore[attr-defined]
        return cursor.state if moved else None

    def count(self, occasion: Occasion) -> int:
        """Questions in this occasion: 16, or 17 with the work question."""
        return len(self.items) + (1 if occasion.ask_work else 0)

    def position(self, occasion: Occasion, question_id: str) -> int:
        if question_id == WORK:
            return len(self.items) + 1
        return next(i for i, q in enumerate(self.items, start=1) if q.id == question_id)

    # --- entry points ---

    def invite(self, occasion: Occasion, ctx: Context) -> MeasureReply:
        """The introduction the scheduler (or ``/measure``) sends to open an occasion."""
        turn = _Turn(self, occasion.copy(), ctx)
        turn.prompt()
        return turn.reply()

    def remind(self, occasion: Occasion, ctx: Context) -> MeasureReply:
        """The one gentle reminder; nothing if the occasion is closed."""
        turn = _Turn(self, occasion.copy(), ctx)
        if occasion.state not in CLOSED:
            lang = occasion.lang
            turn.say(mt("reminder", lang, therapist=occasion.therapist))
            turn.options = turn.invitation_buttons(started=occasion.state != INVITED)
        return turn.reply()

    def expire(self, occasion: Occasion, ctx: Context) -> MeasureReply:
        """Close an unanswered occasion (its session has passed). Says nothing."""
        turn = _Turn(self, occasion.copy(), ctx)
        turn.s.state = self.move(turn.s.state, "expire") or turn.s.state
        return turn.reply()

    def handle(self, occasion: Occasion, event: Event, ctx: Context) -> MeasureReply:
        turn = _Turn(self, occasion.copy(), ctx)  # the caller's occasion stays as it was
        turn.run(event)
        return turn.reply()

    def choice_rows(self, occasion: Occasion, question: Question) -> tuple[tuple[Option, ...], ...]:
        return tuple(
            (Option(f"{n}. {c.label(occasion.lang)}", f"{PREFIX}:{occasion.id}:a:{question.id}:{c.value}"),)
            for n, c in enumerate(question.choices, start=1)
        )


class _Turn:
    """One event's worth of work: collects the parts of the single reply message."""

    def __init__(self, flow: MeasureFlow, occasion: Occasion, ctx: Context) -> None:
        self.flow = flow
        self.s = occasion
        self.ctx = ctx
        self.lang = occasion.lang
        self.parts: list[str] = []
        self.options: tuple[tuple[Option, ...], ...] = ()
        self.actions: list[MeasureAction] = []
        self.urgent = False

    def reply(self) -> MeasureReply:
        actions = list(self.actions)
        if self.parts:
            say = Say("\n\n".join(self.parts), self.options, urgent=self.urgent)
            actions.insert(0, say) if self.urgent else actions.append(say)
        return MeasureReply(self.s, tuple(actions))

    def say(self, *parts: str) -> None:
        self.parts.extend(parts)

    @property
    def therapist(self) -> str:
        return self.s.therapist

    # --- dispatch ---

    def run(self, event: Event) -> None:
        if isinstance(event, Text):
            self.check_free_text(event.text)
        if isinstance(event, Command):
            self.command(event)
            return
        state = self.s.state
        if state in CLOSED:
            self.closed()
        elif isinstance(event, Button):
            self.button(event.data)
        elif isinstance(event, Unsupported):
            self.say(mt("reprompt_unsupported", self.lang))
            self.prompt()
        elif state == INVITED:
            self.intro_text(event)
        else:
            self.typed(self.flow.questions[state], event)

    def command(self, command: Command) -> None:
        name, lang = command.name, self.lang
        if name == "crisis":
            self.urgent = True
            self.say(messages.crisis(lang))
        elif name == "help":
            self.say(mt("help", lang, therapist=self.therapist))
            self.prompt()
        elif self.s.state in CLOSED:
            self.closed()
        elif name == "start":
            if self.s.state == INVITED:
                self.begin()
            else:
                self.s.paused = False
                self.say(mt("resumed", lang))
                self.prompt()
        elif name == "stop":
            self.pause()
        elif name == "back":
            self.back()
        else:  # "repeat" and anything else: the current question again
            self.prompt()

    def button(self, data: str) -> None:
        prefix = f"{PREFIX}:{self.s.id}:"
        if not data.startswith(prefix):
            self.say(mt("reprompt_stale", self.lang))
            self.prompt()
            return
        what = data[len(prefix) :]
        if what == "start":
            self.begin() if self.s.state == INVITED else self.resume()
        elif what == "later":
            self.pause()
        elif what == "no":
            self.decline()
        elif what == "back":
            self.back()
        elif what.startswith(f"a:{self.s.state}:"):
            question = self.flow.questions[self.s.state]
            raw = what.rsplit(":", 1)[1]
            choice = next((c for c in question.choices if str(c.value) == raw), None)
            if choice is None:
                self.say(mt("reprompt_stale", self.lang))
                self.prompt()
            else:
                self.answer(question, choice.value)
        else:
            self.say(mt("reprompt_stale", self.lang))
            self.prompt()

    def intro_text(self, event: Event) -> None:
        word = event.text.strip().casefold().rstrip(".!") if isinstance(event, Text) else ""
        if word in _YES:
            self.begin()
        elif word in _NO:
            self.decline()
        elif not self.parts:
            self.say(mt("reprompt_intro", self.lang))
            self.prompt()

    def typed(self, question: Question, event: Event) -> None:
        assert isinstance(event, Text)
        choice = question.choice_for(event.text.strip(), self.lang)
        if choice is None:
            if not self.parts:
                self.say(mt("reprompt_choice", self.lang))
            self.prompt()
        else:
            self.answer(question, choice.value)

    # --- moving ---

    def begin(self) -> None:
        self.s.paused = False
        self.s.state = self.flow.move(INVITED, "begin") or self.s.state
        self.s.started_at = self.s.started_at or self.ctx.now
        self.prompt()

    def resume(self) -> None:
        self.s.paused = False
        self.say(mt("resumed", self.lang))
        self.prompt()

    def pause(self) -> None:
        if not self.s.paused:
            self.s.paused = True
            self.actions.append(TellTherapist("paused", self.answered))
        self.say(mt("paused", self.lang))
        self.options = self.invitation_buttons(started=True)

    def decline(self) -> None:
        self.s.state = self.flow.move(self.s.state, "decline") or self.s.state
        self.s.paused = False
        self.s.declined_at = self.ctx.now
        self.actions.append(TellTherapist("declined", self.answered))
        self.say(mt("declined", self.lang, therapist=self.therapist))

    def back(self) -> None:
        previous = self.flow.move(self.s.state, "back")
        if previous is None:
            if self.s.state != INVITED:
                self.say(mt("no_previous", self.lang))
        else:
            self.s.state = previous
        self.prompt()

    def answer(self, question: Question, value: int) -> None:
        self.s.paused = False
        self.s.answers[question.id] = value
        self.s.history = [q for q in self.s.history if q != question.id] + [question.id]
        self.check_items(question)
        self.s.state = self.flow.move(self.s.state, "next", self.s.ask_work) or DONE
        if self.s.state == DONE:
            self.finish()
        else:
            self.prompt()

    @property
    def answered(self) -> int:
        return sum(1 for q in self.flow.items if q.id in self.s.answers)

    def finish(self) -> None:
        lang, answers = self.lang, self.s.answers
        self.s.finished_at = self.ctx.now
        totals = {iid: self.flow.script.instruments[iid].total(answers) or 0 for iid in INSTRUMENTS}
        self.actions.append(
            Completed(
                phq9=totals["phq9"],
                gad7=totals["gad7"],
                item9=answers[ITEM9],
                work=answers.get(WORK),
                answers=MappingProxyType({k: v for k, v in answers.items() if k != WORK}),
            )
        )
        lines = [mt("done", lang, therapist=self.therapist)]
        for iid in INSTRUMENTS:
            instrument = self.flow.script.instruments[iid]
            band = instrument.band(totals[iid]).label[lang].lower()
            what = mt(f"summary_{iid}", lang)
            lines.append(
                mt("summary_score", lang, what=what, band=band, total=totals[iid], max=instrument.max_score)
            )
        self.say("\n".join(lines), mt("not_diagnosis", lang), mt("progress_hint", lang))

    def closed(self) -> None:
        if self.parts:
            return
        key = {DONE: "closed_done", DECLINED: "closed_declined", EXPIRED: "closed_expired"}[self.s.state]
        self.say(mt(key, self.lang))

    # --- safety ---

    def check_items(self, question: Question) -> None:
        """Alert at once when this answer matches a safety rule (PHQ-9 item 9 of 1 or more):
        every time, also when the occasion has alerted before, so the therapist always sees
        the item itself (the handoff layer updates an open alert rather than repeating it)."""
        matched = [
            r
            for r in self.flow.safety
            if any(c.item == question.id for c in r.when) and r.matches(self.s.answers, {})
        ]
        if matched:
            self.alert(max(r.priority for r in matched), tuple(r.reason for r in matched))

    def check_free_text(self, text: str) -> None:
        verdict = risk_text.judge(text)
        action = getattr(verdict, "action", "none")
        if not (getattr(verdict, "risk", False) or action in ("alert", "ask")):
            return
        category = getattr(verdict, "category", None) or "possible"
        acute = bool(getattr(verdict, "acute", False)) or action == "alert"
        self.actions.append(RiskText(category))
        self.actions.append(Note(text=text[:4000], risk=category))
        lang = self.lang
        if not self.ctx.first_aid_given:
            self.say(mt("risk_text", lang))
        self.alert(Priority.URGENT if acute else Priority.PRIORITY, (f"text_{category}",))
        if action == "ask" and not acute:
            self.say(mt("risk_ask", lang, therapist=self.therapist))
        if getattr(verdict, "about", "self") not in ("self", None):
            self.say(mt("about_other", lang))
        if getattr(verdict, "poisoning", False):
            self.say(mt("poisoning", lang))

    def alert(self, priority: Priority, reasons: tuple[str, ...]) -> None:
        """Tell the therapist at once (``Alert``, at the highest priority of the occasion so
        far); the citizen is told who knows, with the crisis numbers, before anything else."""
        first = not self.s.alerted.hands_over_at_once
        self.s.alerted = max(self.s.alerted, priority)
        self.actions.append(Alert(self.s.alerted, reasons))
        self.urgent = True
        key = "alert_on_duty" if self.ctx.team_on_duty else "alert_off_duty"
        self.say(mt(key, self.lang, therapist=self.therapist))
        if not self.ctx.first_aid_given:
            self.say(messages.crisis(self.lang))
        if first and self.s.state not in (*CLOSED, INVITED):
            self.say(mt("may_continue", self.lang))

    # --- asking ---

    def invitation_buttons(self, started: bool) -> tuple[tuple[Option, ...], ...]:
        lang, oid = self.lang, self.s.id
        go = mt("continue" if started else "start", lang)
        rows = [(Option(go, f"{PREFIX}:{oid}:start"),)]
        if not started:
            rows.append((Option(mt("later", lang), f"{PREFIX}:{oid}:later"),))
        rows.append((Option(mt("no_thanks", lang), f"{PREFIX}:{oid}:no"),))
        return tuple(rows)

    def before(self) -> str:
        lang, when = self.lang, self.s.session_at
        if when is None:
            return mt("before_next", lang, therapist=self.therapist)
        catalogue = _catalogue()
        text = mt(
            "session_when",
            lang,
            weekday=catalogue["weekday"][lang][when.weekday()],
            day=when.day,
            month=when.month,
            month_name=catalogue["month_name"][lang][when.month - 1],
            time=when.strftime("%H:%M"),
        )
        return mt("before_session", lang, therapist=self.therapist, when=text)

    def prompt(self) -> None:
        state, lang = self.s.state, self.lang
        if state in CLOSED:
            self.closed()
        elif state == INVITED:
            count = self.flow.count(self.s)
            self.say(mt("intro", lang, before=self.before(), count=count, therapist=self.therapist))
            self.options = self.invitation_buttons(started=False)
        else:
            self.ask(self.flow.questions[state])

    def ask(self, question: Question) -> None:
        lang = self.lang
        lines = [
            mt("progress", lang, index=self.flow.position(self.s, question.id), count=self.flow.count(self.s))
        ]
        if question.id == WORK:
            lines.append(mt("work_lead", lang))
        elif question.stem:
            lines.append(question.stem[lang])
        lines += [question.prompt(lang), mt("ways_out", lang)]
        self.say("\n\n".join(lines))
        rows = list(self.flow.choice_rows(self.s, question))
        if self.flow.move(question.id, "back") is not None:
            rows.append((Option(mt("back", lang), f"{PREFIX}:{self.s.id}:back"),))
        self.options = tuple(rows)

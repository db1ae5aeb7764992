"""The introductory screening as a finite-state machine.

The states and transitions are declared once, as a table built from the screening script
(``data/screening.toml``), and handed to ``transitions``. Skipped questions are conditional
transitions: from each question, ``next`` goes to the first later question whose ``ask_if``
holds, and ``back`` mirrors it. The machine only knows *where* the citizen is;
``ScreeningFlow.handle`` turns one event into the new session and the actions to carry out.

Pure: no I/O, no clock (the time comes in the ``Context``), no randomness.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from transitions import Machine

from flows import crisis, messages, risk_text
from flows.messages import text as t
from flows.model import (
    Alert,
    Button,
    Command,
    Context,
    Event,
    Forget,
    Note,
    Option,
    Priority,
    Reply,
    RiskText,
    Say,
    Session,
    Text,
    Unsupported,
)
from flows.questionnaire import Question, Script, load_script
from flows.routing import Assessment, assess

if TYPE_CHECKING:
    from flows.risk_text import RiskJudgement

BEFORE_SCREENING = ("new", "consent", "age")
ENDED = ("declined", "too_young")
DONE = "done"
MAX_TEXT = 1000
NO_CONTACT = 3  # contact_mode value "I do not want to be contacted now"
CONTACT_TIMES = "contact_times"  # told the team's hours, so only times it can keep are chosen
RISK_ITEM = "phq9_9"
# the risk flags the closing summary names, gently (flows/data/messages.toml summary_flag_*)
SUMMARY_FLAGS = (
    "suicidal_thoughts",
    "suicide_plans",
    "earlier_attempt",
    "self_harm",
    "harm_others",
    "phq9_item9",
)  # thoughts of death or self-harm: every answer to it goes on the card

_YES = {"ja", "j", "yes", "y", "jo", "ok"}
_NO = {"nei", "n", "no", "nei takk", "no thanks"}
_PHONE = re.compile(r"^\+?[0-9\s\-().]{8,20}$")


class _Cursor:
    """The model ``transitions`` moves: it holds nothing but the state name."""

    state: str

    def __init__(self) -> None:
        self.state = "new"


class ScreeningFlow:
    """Build once per process; ``handle`` is then cheap and side-effect free."""

    def __init__(self, script: Script | None = None) -> None:
        self.script = script or load_script()
        self.questions: tuple[Question, ...] = self.script.questions
        self.machine = Machine(
            model=None,
            states=["new", "consent", "age", *[q.id for q in self.questions], DONE, *ENDED],
            transitions=self.transition_table(),
            auto_transitions=False,
            send_event=False,
            initial=None,
        )
        self._cursor = _Cursor()
        self._choice_rows: dict[tuple[str, str], tuple[tuple[Option, ...], ...]] = {}
        self.machine.add_model(self._cursor, initial="new")
        self._triggers = {state: frozenset(self.machine.get_triggers(state)) for state in self.machine.states}
        # questions with an earlier question that is always asked: "back" from them never fails
        self._back_always = frozenset(
            q.id for i, q in enumerate(self.questions) if any(e.ask_if is None for e in self.questions[:i])
        )

    # --- the declarative table ------------------------------------------------------------

    def transition_table(self) -> list[dict[str, Any]]:
        qs = self.questions
        table: list[dict[str, Any]] = [
            {"trigger": "begin", "source": ["new", *ENDED], "dest": "consent"},
            {"trigger": "agree", "source": "consent", "dest": "age"},
            {"trigger": "decline", "source": "consent", "dest": "declined"},
            {"trigger": "minor", "source": "age", "dest": "too_young"},
        ]
        table += self._forward("adult", "age", qs)
        for i, question in enumerate(qs):
            table += self._forward("next", question.id, qs[i + 1 :])
            table += self._backward(question.id, qs[:i])
        return table

    def _forward(self, trigger: str, source: str, later: tuple[Question, ...]) -> list[dict]:
        """``trigger`` from ``source`` to the first of ``later`` that is asked, else done."""
        rows = []
        for candidate in later:
            rows.append(self._row(trigger, source, candidate))
            if candidate.ask_if is None:
                return rows
        rows.append({"trigger": trigger, "source": source, "dest": DONE})
        return rows

    def _backward(self, source: str, earlier: tuple[Question, ...]) -> list[dict]:
        rows = []
        for candidate in reversed(earlier):
            rows.append(self._row("back", source, candidate))
            if candidate.ask_if is None:
                break
        return rows

    def _row(self, trigger: str, source: str, dest: Question) -> dict[str, Any]:
        row: dict[str, Any] = {"trigger": trigger, "source": source, "dest": dest.id}
        if dest.ask_if is not None:
            row["conditions"] = [self._is_asked(dest)]
        return row

    def _is_asked(self, question: Question) -> Callable[..., bool]:
        condition = question.ask_if
        assert condition is not None

        def is_asked(answers: Mapping[str, Any]) -> bool:
            # the totals only for a condition on a total: the rest look at one answer
            scores = self.script.scores(answers) if condition.score is not None else {}
            return condition.holds(answers, scores)

        is_asked.__name__ = f"asks_{question.id}"
        return is_asked

    def move(self, state: str, trigger: str, answers: Mapping[str, Any]) -> str | None:
        """The state ``trigger`` leads to from ``state``, or None if it leads nowhere.

        One cursor model is registered once and repositioned for each question (adding and
        removing a model per move costs more than the rest of the flow together); the flow
        runs on one thread, the event loop's."""
        if trigger not in self._triggers.get(state, ()):
            return None
        cursor = self._cursor
        self.machine.set_state(state, model=cursor)
        moved = cursor.trigger(trigger, answers=answers)  # type: ignore[attr-defined]
        return cursor.state if moved else None

    def has_previous(self, state: str, answers: Mapping[str, Any]) -> bool:
        """Whether "back" leads anywhere from ``state`` (for the Back button, on every
        question): known without running the machine unless only conditional questions
        come before."""
        return state in self._back_always or self.move(state, "back", answers) is not None

    # --- handling one event ----------------------------------------------------------------

    def handle(self, session: Session, event: Event, ctx: Context) -> Reply:
        turn = _Turn(self, session.copy(), ctx)  # the caller's session stays as it was
        turn.run(event)
        return turn.reply()

    def first_aid(self, event: Event, lang: str) -> Say | None:
        """The reply to a risk text that needs nothing stored: warmth and the crisis numbers.

        An adapter sends it before any database work, so a person in crisis gets the numbers
        within milliseconds even when the store is slow or down; it then passes
        ``Context(first_aid_given=True)`` and the flow's own reply leaves these parts out."""
        if not isinstance(event, Text):
            return None
        text = crisis.first_aid(risk_text.judge(event.text), lang)
        return None if text is None else Say(text, urgent=True)

    def risk_in(self, event: Event) -> bool:
        """Whether the event is a text the detector finds a sign of risk in (a human must
        hear of it even when nothing could be stored)."""
        return isinstance(event, Text) and risk_text.judge(event.text).risk

    def choice_rows(self, question: Question, lang: str) -> tuple[tuple[Option, ...], ...]:
        """A question's answer buttons, one per row, marked 1, 2, 3 (or A, B, C where the
        answers are numbers themselves), made once per language."""
        key = (question.id, lang)
        rows = self._choice_rows.get(key)
        if rows is None:
            rows = self._choice_rows[key] = tuple(
                (Option(f"{question.marker(n)}. {choice.label(lang)}", f"a:{question.id}:{choice.value}"),)
                for n, choice in enumerate(question.choices, start=1)
            )
        return rows

    def is_question(self, state: str) -> bool:
        return state not in (*BEFORE_SCREENING, DONE, *ENDED)


class _Turn:
    """One event's worth of work: collects the text parts of the single reply message."""

    def __init__(self, flow: ScreeningFlow, session: Session, ctx: Context) -> None:
        self.flow = flow
        self.s = session
        self.ctx = ctx
        self.lang = session.lang
        self.parts: list[str] = []
        self.options: tuple[tuple[Option, ...], ...] = ()
        self.actions: list[Any] = []
        self.urgent = False
        self.only_prompts = True  # the message being written holds nothing but a question
        self.said: list[Say] = []  # messages finished before the one being written

    # --- the result ---

    def reply(self) -> Reply:
        self.end_message()
        urgent = [say for say in self.said if say.urgent]
        rest = [say for say in self.said if not say.urgent]
        return Reply(self.s, (*urgent, *self.actions, *rest))

    def say(self, *parts: str, prompt: bool = False) -> None:
        """Add to the message being written; ``prompt`` marks a question or a re-prompt,
        which a newer message may make stale."""
        self.parts.extend(parts)
        if not prompt:
            self.only_prompts = False

    def end_message(self) -> None:
        """Finish the message being written: what is said after this is a message of its
        own (a crisis reply, then the next question)."""
        if self.parts:
            replaceable = self.only_prompts and not self.urgent
            self.said.append(Say("\n\n".join(self.parts), self.options, self.urgent, replaceable))
        self.parts, self.options, self.urgent, self.only_prompts = [], (), False, True

    # --- dispatch ---

    def run(self, event: Event) -> None:
        if self.ctx.with_therapist and isinstance(event, Text | Unsupported):
            self.to_therapist(event)
            return
        if isinstance(event, Command):
            self.command(event)
            return
        if isinstance(event, Button) and event.data == crisis.TALK:
            self.talk_to_therapist()
            return
        if isinstance(event, Text) and self.check_free_text(event.text):
            return  # the crisis reply is the whole turn: the questionnaire waits
        if self.s.holding is not None and not (isinstance(event, Button) and event.data.startswith("del:")):
            self.hold(event)
            return
        if self.s.confirming_delete and not (isinstance(event, Button) and event.data.startswith("del:")):
            self.s.confirming_delete = False
        if isinstance(event, Button) and event.data.startswith("del:"):
            self.confirm_delete(event.data == "del:yes")
            return
        self.s.paused = False
        state = self.s.state
        if state in ("new", *ENDED):
            self.begin()
        elif state == "consent":
            self.consent(event)
        elif state == "age":
            self.age(event)
        elif state == DONE:
            self.after_screening(event)
        elif isinstance(event, Unsupported):
            self.say(t("reprompt_unsupported", self.lang), prompt=True)
            self.prompt()
        else:
            self.answer(self.flow.script.question(state), event)

    def command(self, command: Command) -> None:
        name, lang = command.name, self.lang
        if name == "crisis":
            self.urgent = True
            self.say(messages.crisis(lang))
            self.options = crisis.crisis_options(lang)
        elif name == "help":
            self.say(t("help", lang))
            self.prompt()
        elif name == "start":
            if self.s.state in ("new", *ENDED):
                self.begin()
            elif self.s.state == DONE:
                self.say(t("done_again", lang))
            else:
                self.s.paused = False
                self.s.holding = None  # /start after a crisis step: the citizen chose to go on
                self.say(t("resumed", lang))
                self.prompt()
        elif name == "stop":
            if self.s.state not in ("new", *ENDED):
                self.s.paused = True
            self.say(t("paused", lang), messages.crisis(lang))
        elif name == "delete":
            if not holds_data(self.s):
                self.say(t("nothing_to_delete", lang))
            else:
                self.s.confirming_delete = True
                self.say(t("delete_confirm", lang))
                self.options = (
                    (Option(t("delete_yes", lang), "del:yes"),),
                    (Option(t("delete_no", lang), "del:no"),),
                )
        elif name == "back":
            self.prompt() if self.s.holding is not None else self.back()
        else:  # "repeat" and unknown commands: ask the current question again
            self.prompt()

    def to_therapist(self, event: Text | Unsupported) -> None:
        """A therapist is in the conversation: what the citizen writes is for them."""
        if isinstance(event, Unsupported):
            self.actions.append(Note(media=event.kind))
            return
        judged = risk_text.judge(event.text)
        self.actions.append(Note(text=event.text, risk=_risk_label(judged)))
        if not judged.risk:
            return
        self.actions.append(RiskText(judged.category or "possible"))
        if judged.action == "ask":
            # the therapist reads it at once, marked, and asks in their own words
            self.actions.append(Alert(self.s.alerted, _reasons(judged)))
            return
        priority = Priority.ACUTE if judged.acute else Priority.URGENT
        self.s.alerted = max(self.s.alerted, priority)
        self.actions.append(Alert(self.s.alerted, _reasons(judged)))
        self.urgent = True
        if not self.ctx.first_aid_given:
            self.say(crisis.first_aid(judged, self.lang) or "")
        self.say(t("risk_in_relay", self.lang))

    def after_screening(self, event: Event) -> None:
        """Free text after the screening is kept for the team once they have the case."""
        if isinstance(event, Text) and self.ctx.handed_over and event.text.strip():
            if not any(isinstance(a, Note) for a in self.actions):  # a risk text is kept already
                self.actions.append(Note(text=event.text[:4000]))
            if not self.parts:
                self.say(t("message_kept", self.lang))
        elif not self.parts:
            self.say(t("done_again", self.lang))

    def confirm_delete(self, yes: bool) -> None:
        if yes and self.s.confirming_delete:
            self.s = Session(lang=self.lang)
            self.say(t("deleted", self.lang))
            self.actions.append(Forget())
            return
        self.s.confirming_delete = False
        self.s.paused = False
        if not yes:
            self.say(t("delete_kept", self.lang))
        self.prompt()

    # --- before the screening ---

    def begin(self) -> None:
        self.s = Session(lang=self.lang, alerted=self.s.alerted, crisis=self.s.crisis)
        self.s.state = self.flow.move("new", "begin", {}) or "consent"
        self.prompt()

    def consent(self, event: Event) -> None:
        choice = _yes_no(event, "consent")
        if choice is None:  # a short hint, not the whole welcome again
            self.say(t("reprompt_consent", self.lang), prompt=True)
            self.options = self.consent_buttons()
        elif choice:
            self.s.state = "age"
            self.s.started_at = self.ctx.now
            self.prompt()
        else:
            self.s.state = "declined"
            self.say(t("declined", self.lang), messages.crisis(self.lang))
            if not self.s.alerted.hands_over_at_once:
                # After a risk alert the team must be able to follow up (helsepersonelloven
                # § 7), so the case is kept; otherwise nothing is stored.
                self.actions.append(Forget())

    def age(self, event: Event) -> None:
        adult = _yes_no(event, "age")
        if adult is None and isinstance(event, Text):
            digits = re.fullmatch(r"\s*(\d{1,3})\s*(år|ar|years?)?\s*", event.text.lower())
            if digits and 10 <= int(digits.group(1)) <= 120:
                adult = int(digits.group(1)) >= self.ctx.min_age
        if adult is None:
            self.say(t("reprompt_age", self.lang), prompt=True)
            self.prompt()
        elif adult:
            self.s.state = self.flow.move("age", "adult", self.s.answers) or DONE
            self.prompt()
        else:
            self.s.state = "too_young"
            self.say(t("too_young", self.lang, min_age=self.ctx.min_age))
            self.actions.append(Forget())

    # --- the questions ---

    def answer(self, question: Question, event: Event) -> None:
        value = self.parse(question, event)
        if value is None:
            return  # parse() has re-prompted
        flags_before = assess(self.s.answers, self.flow.script).flags
        self.record(question, value)
        self.advance(question, flags_before)

    def parse(self, question: Question, event: Event) -> Any:
        lang = self.lang
        if isinstance(event, Button):
            if event.data == "back":
                self.back()
                return None
            if event.data == f"skip:{question.id}" and question.optional:
                return ""
            prefix = f"a:{question.id}:"
            if event.data.startswith(prefix):
                raw = event.data[len(prefix) :]
                for option in question.choices:
                    if str(option.value) == raw:
                        return option.value
            self.say(t("reprompt_stale", lang), prompt=True)
            self.prompt()
            return None
        assert isinstance(event, Text)
        raw = event.text.strip()
        if question.kind == "choice":
            choice = question.choice_for(raw, lang)
            if choice is None:
                if any(isinstance(a, Note) for a in self.actions):
                    self.say(t("message_kept_waiting", lang))  # what they wrote is kept, not an answer
                elif _personal(raw):
                    self.actions.append(Note(text=raw[:4000]))  # kept, encrypted, for the therapist
                    self.say(t("personal_text_kept", lang))
                elif not self.parts:
                    key = "reprompt_choice_lettered" if question.lettered else "reprompt_choice"
                    self.say(t(key, lang), prompt=True)
                self.prompt()
                return None
            return choice.value
        if len(raw) > MAX_TEXT:
            self.say(t("reprompt_too_long", lang, limit=MAX_TEXT), prompt=True)
            self.prompt(progress=False)
            return None
        if question.kind == "phone":
            if question.optional and raw.lower() in ("hopp over", "skip", "-", "nei", "no"):
                return ""
            if not _PHONE.match(raw) or sum(c in "0123456789" for c in raw) < 8:
                self.say(t("reprompt_phone", lang), prompt=True)
                self.prompt(progress=False)
                return None
            return re.sub(r"[^0-9+]", "", raw)
        if not raw:
            self.say(t("reprompt_empty", lang), prompt=True)
            self.prompt(progress=False)
            return None
        return raw

    def record(self, question: Question, value: Any) -> None:
        answers = self.s.answers
        answers[question.id] = value
        self.s.history = [q for q in self.s.history if q != question.id] + [question.id]
        # An answer changed on the way back can make later questions moot: drop their answers.
        scores = None  # computed when first needed, again after an answer is dropped
        for other in self.flow.questions:
            if other.ask_if is not None and other.id in answers:
                if scores is None:
                    scores = self.flow.script.scores(answers)
                if not other.ask_if.holds(answers, scores):
                    del answers[other.id]
                    scores = None

    def advance(self, question: Question, flags_before: tuple[str, ...]) -> None:
        before = self.s.state
        self.s.state = self.flow.move(before, "next", self.s.answers) or DONE
        assessment = assess(self.s.answers, self.flow.script)
        self.route(assessment, question, flags_before)
        if self.s.state == DONE:
            self.finish(assessment)
        else:
            self.prompt()

    def back(self) -> None:
        state = self.s.state
        previous = self.flow.move(state, "back", self.s.answers) if self.flow.is_question(state) else None
        if previous is None:
            self.say(t("no_previous", self.lang))
        else:
            self.s.state = previous
        self.prompt()

    # --- routing and handoff ---

    def route(self, assessment: Assessment, question: Question, flags_before: tuple[str, ...]) -> None:
        """Hand over when the answers call for more than the case has; otherwise, once the
        team has the case, bring its card up to date at once for every answer that changes
        the risk flags (and item 9 of any value) and when an instrument is complete."""
        priority = assessment.priority
        if priority.hands_over_at_once and priority > self.s.alerted:
            self.alert(priority, assessment.reasons)
            self.end_message()  # the next question is a message of its own
        elif self.s.alerted.hands_over_at_once and (
            assessment.flags != flags_before
            or question.id == RISK_ITEM
            or self.completes_instrument(question)
        ):
            self.actions.append(Alert(self.s.alerted, assessment.reasons))

    def completes_instrument(self, question: Question) -> bool:
        if question.instrument is None:
            return False
        return self.flow.script.instruments[question.instrument].complete(self.s.answers)

    def alert(self, priority: Priority, reasons: tuple[str, ...], *, thank: bool = True) -> None:
        """Hand over at once: tell the citizen a human is coming (or when), with the numbers."""
        lang = self.lang
        first_alert = not self.s.alerted.hands_over_at_once
        self.s.alerted = max(self.s.alerted, priority)
        self.actions.append(Alert(self.s.alerted, reasons))
        self.urgent = True
        above = "_numbers_above" if self.ctx.first_aid_given else ""  # the numbers went out already
        if self.ctx.team_on_duty:
            notice = t("alert_on_duty", lang)
        elif self.ctx.next_staffed is not None:
            staffed = messages.staffed_at(self.ctx.next_staffed, lang)
            notice = t(f"alert_off_duty{above}", lang, next_staffed=staffed)
        else:
            notice = t(f"alert_off_duty_unknown{above}", lang)
        if thank and not self.ctx.first_aid_given:  # the first aid thanked them already
            notice = f"{t('thanks', lang)} {notice}"
        self.say(notice) if self.ctx.first_aid_given else self.say(notice, messages.crisis(lang))
        if first_alert and self.flow.is_question(self.s.state):
            self.say(t("may_continue", lang))

    # --- the crisis conversation (texts and buttons in flows/crisis.py) ---

    def check_free_text(self, text: str) -> bool:
        """Judge what the citizen wrote and act on it at once. True when the crisis reply
        is the whole turn (an act under way, or a direct question the flow now waits for)."""
        judged = risk_text.judge(text)
        if not judged.risk:
            return False
        self.actions.append(RiskText(judged.category or "possible"))
        if judged.action == "alert" or self.s.state not in BEFORE_SCREENING:
            self.actions.append(Note(text=text[:4000], risk=_risk_label(judged)))  # for the therapist
        if judged.acute:
            self.acute(judged)
            return True
        if judged.action == "alert":
            if judged.about == "other":
                self.worry_for_other(judged)
            else:
                if not self.ctx.first_aid_given:
                    self.say(crisis.first_aid(judged, self.lang) or "")
                self.alert(Priority.URGENT, _reasons(judged), thank=False)
            self.end_message()
            return False
        if self.s.alerted >= Priority.URGENT:
            # the team has the case at the top already: the card shows the signal, no question
            self.actions.append(Alert(self.s.alerted, _reasons(judged)))
            return False
        self.s.holding = crisis.ASK
        self.prompt()
        return True

    def acute(self, judged: RiskJudgement) -> None:
        """An act under way or just happened: 113 first, the case to the top of the queue,
        and the questionnaire waits (for whether they are safe, when it is about them)."""
        lang = self.lang
        self.s.crisis["acute"] = True
        if judged.poisoning:
            self.s.crisis["poisoning"] = True
        if judged.about == "other":
            self.s.crisis["about_other"] = True
        self.s.alerted = Priority.ACUTE
        self.actions.append(Alert(Priority.ACUTE, _reasons(judged)))
        self.urgent = True
        if not self.ctx.first_aid_given:
            self.say(crisis.first_aid(judged, lang) or "")
        if self.ctx.team_on_duty:
            self.say(t("acute_on_duty", lang))
        elif self.ctx.next_staffed is not None:
            staffed = messages.staffed_at(self.ctx.next_staffed, lang)
            self.say(t("acute_off_duty", lang, next_staffed=staffed))
        else:
            self.say(t("acute_off_duty_unknown", lang))
        self.s.holding = crisis.RESUME if judged.about == "other" else crisis.SAFE_NOW
        self.prompt()

    def worry_for_other(self, judged: RiskJudgement) -> None:
        """Worry about someone else: advice for the helper, and the team is told."""
        lang = self.lang
        self.s.crisis["about_other"] = True
        self.s.alerted = max(self.s.alerted, Priority.URGENT)
        self.actions.append(Alert(self.s.alerted, _reasons(judged)))
        self.urgent = True
        if not self.ctx.first_aid_given:
            self.say(crisis.first_aid(judged, lang) or "")
        if self.ctx.team_on_duty:
            self.say(t("other_on_duty", lang))
        elif self.ctx.next_staffed is not None:
            self.say(t("other_off_duty", lang, next_staffed=messages.staffed_at(self.ctx.next_staffed, lang)))
        else:
            self.say(t("other_off_duty_unknown", lang))

    def hold(self, event: Event) -> None:
        """The questionnaire waits on a crisis step: take its answer, or ask it again."""
        lang, holding = self.lang, self.s.holding
        assert holding is not None
        answer = crisis.answer(holding, event)
        if holding == crisis.ASK and answer is not None and answer != "resume":
            self.s.holding = None
            if answer == "no":
                self.s.crisis["signal"] = "denied"
                self.say(t("ask_denied", lang))
                self.card_follows()
            elif answer == "yes":
                self.s.crisis["signal"] = "confirmed"
                self.alert(Priority.URGENT, ("text_signal_confirmed",))
            else:
                self.s.crisis["signal"] = "unanswered"
                self.say(t("ask_unanswered", lang))
                self.alert(Priority.URGENT, ("text_signal_unanswered",), thank=False)
            self.end_message()
            self.prompt()
            return
        if holding == crisis.SAFE_NOW and answer in ("yes", "no"):
            self.s.crisis["safe_now"] = answer == "yes"
            self.card_follows()
            if answer == "no":
                self.urgent = True
                self.say(t("not_safe", lang))
            self.s.holding = crisis.SOMEONE_WITH
        elif holding == crisis.SOMEONE_WITH and answer in ("yes", "no"):
            self.s.crisis["someone_with"] = answer == "yes"
            self.card_follows()
            if answer == "no":
                self.say(t("alone", lang))
            self.s.holding = crisis.RESUME
        elif answer == "resume" and holding == crisis.RESUME:
            self.s.holding = None
        elif isinstance(event, Text) and event.text.strip():
            if self.ctx.handed_over or self.s.alerted.hands_over_at_once:
                self.actions.append(Note(text=event.text[:4000]))
                self.say(t("message_kept_waiting", lang))
        self.prompt()

    def card_follows(self) -> None:
        """Bring the card up to date with what the citizen just told (the team has it)."""
        if self.s.alerted.hands_over_at_once:
            self.actions.append(Alert(self.s.alerted, ()))

    def talk_to_therapist(self) -> None:
        """The button under /krise: an urgent case, or when the team is back."""
        lang = self.lang
        self.s.alerted = max(self.s.alerted, Priority.URGENT)
        self.actions.append(Alert(self.s.alerted, ("crisis_request",)))
        self.urgent = True
        if self.ctx.team_on_duty:
            self.say(t("talk_requested", lang))
        elif self.ctx.next_staffed is not None:
            self.say(t("talk_off_duty", lang, next_staffed=messages.staffed_at(self.ctx.next_staffed, lang)))
        else:
            self.say(t("talk_off_duty_unknown", lang))
        self.end_message()
        if self.s.holding is not None or self.flow.is_question(self.s.state):
            self.prompt()

    def finish(self, assessment: Assessment) -> None:
        lang = self.lang
        self.s.finished_at = self.ctx.now
        if self.s.alerted.hands_over_at_once:
            self.actions.append(Alert(self.s.alerted, assessment.reasons))
            next_step = t("next_alerted", lang)
        elif self.s.answers.get("contact_mode") == NO_CONTACT:
            self.s.alerted = Priority.SELF_HELP
            self.actions.append(Alert(Priority.SELF_HELP, ()))
            next_step = t("next_self_help", lang)
        else:
            self.s.alerted = Priority.ROUTINE
            self.actions.append(Alert(Priority.ROUTINE, ()))
            next_step = t("next_contact", lang)
        self.say(self.summary(assessment), next_step, t("self_help", lang), messages.crisis(lang))

    def summary(self, assessment: Assessment) -> str:
        """What they told us, in plain words: scores as bands (no diagnosis), risk answers
        gently, and how and when we will make contact."""
        lang, answers, script = self.lang, self.s.answers, self.flow.script
        lines = [t("done_intro", lang)]
        for instrument_id in ("phq9", "gad7", "auditc"):
            if instrument_id not in assessment.scores:
                continue
            instrument = script.instruments[instrument_id]
            total = assessment.scores[instrument_id]
            band = instrument.band(total).label[lang].lower()
            what = t(f"summary_{instrument_id}", lang)
            lines.append(
                t("summary_score", lang, what=what, band=band, total=total, max=instrument.max_score)
            )
        told = [t(f"summary_flag_{flag}", lang) for flag in assessment.flags if flag in SUMMARY_FLAGS]
        if told:
            lines.append(t("summary_risk_told", lang, what=_join(told, lang)))
        elif self.s.alerted.hands_over_at_once:
            lines.append(t("summary_risk", lang))
        mode = script.question("contact_mode").choice_for_value(answers.get("contact_mode"))
        if mode is not None and answers.get("contact_mode") != NO_CONTACT:
            how = mode.label(lang).lower()
            when = script.question(CONTACT_TIMES).choice_for_value(answers.get(CONTACT_TIMES))
            if when is not None:
                how += f", {when.label(lang)[0].lower()}{when.label(lang)[1:]}"
            phone = str(answers.get("contact_phone") or "")
            if phone:
                how += ", " + t("summary_phone", lang, last=phone[-3:])
            lines.append(t("summary_contact", lang, how=how))
        lines.append(t("summary_not_diagnosis", lang))
        return "\n".join(lines)

    # --- asking ---

    def prompt(self, progress: bool = True) -> None:
        """Ask the current question again (or for the first time), with its buttons: the
        crisis step the session waits on, if any, else the screening's."""
        lang, state = self.lang, self.s.state
        if self.s.holding is not None:
            question, self.options = crisis.prompt(self.s.holding, lang)
            self.say(question, prompt=not self.parts)
        elif state in ("new", "consent", *ENDED):
            self.say(
                t("welcome", lang, retention_days=self.ctx.retention_days), messages.crisis(lang), prompt=True
            )
            self.options = self.consent_buttons()
        elif state == "age":
            self.say(t("age_question", lang, min_age=self.ctx.min_age), prompt=True)
            self.options = ((Option(t("yes", lang), "age:yes"), Option(t("no", lang), "age:no")),)
        elif state == DONE:
            if not self.parts:
                self.say(t("done_again", lang))
        else:
            self.ask(self.flow.script.question(state), progress)

    def consent_buttons(self) -> tuple[tuple[Option, ...], ...]:
        return (
            (Option(t("consent_yes", self.lang), "consent:yes"),),
            (Option(t("consent_no", self.lang), "consent:no"),),
        )

    def ask(self, question: Question, progress: bool) -> None:
        """A question with its progress over the whole screening; a section's intro, an
        instrument's lead-in and the ways out come with the section's first question only."""
        lang, script = self.lang, self.flow.script
        section = script.sections[script.position(question.id)[0] - 1]
        first_in_section = not any(
            q.id in self.s.answers or script.should_ask(q, self.s.answers)
            for q in section.questions[: section.questions.index(question)]
        )
        lines = []
        if progress and first_in_section and section.intro:
            lines.append(section.intro[lang])
        if progress:
            index, count = script.progress(question.id, self.s.answers)
            lines.append(t("progress", lang, section=section.title[lang], index=index, count=count))
        if question.stem and first_in_section:
            lines.append(question.stem[lang])
        lines.append(question.prompt(lang))
        if question.id == CONTACT_TIMES:
            lines.append(t("contact_hours", lang, open=self.ctx.opening[0], close=self.ctx.opening[1]))
        if first_in_section:
            lines.append(t("ways_out", lang))
        self.say("\n\n".join(lines), prompt=True)
        rows = list(self.flow.choice_rows(question, lang))
        if question.optional:
            rows.append((Option(t("skip", lang), f"skip:{question.id}"),))
        if self.flow.has_previous(question.id, self.s.answers):
            rows.append((Option(t("back", lang), "back"),))
        self.options = tuple(rows)


def holds_data(session: Session) -> bool:
    """Whether a session holds anything about the citizen that /slett must offer to delete:
    a screening begun, a crisis step waiting, or a case kept after a risk alert."""
    return (
        session.state not in ("new", *ENDED)
        or session.holding is not None
        or bool(session.crisis)
        or session.alerted.hands_over_at_once
    )


def _personal(text: str) -> bool:
    """Whether a text where a button was expected reads as something the person wants to
    tell, not a mistyped answer: it is then kept for the therapist and acknowledged."""
    words = [word for word in text.split() if any(ch.isalpha() for ch in word)]
    return len(words) >= 6 or sum(ch.isalpha() for ch in text) > 40


def _join(items: list[str], lang: str) -> str:
    """ "a, b og c" / "a, b and c"."""
    if len(items) < 2:
        return "".join(items)
    return f"{', '.join(items[:-1])} {'og' if lang == 'nb' else 'and'} {items[-1]}"


def _reasons(judged: RiskJudgement) -> tuple[str, ...]:
    """The routing reasons a risk text adds, for the card and the journal."""
    reasons = ["text_acute"] if judged.acute else []
    reasons.append("text_other" if judged.about == "other" else f"text_{judged.category or 'possible'}")
    return tuple(reasons)


def _risk_label(judged: RiskJudgement) -> str | None:
    """How a kept message is marked for the therapist: its risk, or None."""
    if not judged.risk:
        return None
    if judged.acute:
        return "akutt"
    if judged.about == "other":
        return "om en annen"
    return "mulig signal" if judged.action == "ask" else judged.category or "mulig signal"


def _yes_no(event: Event, prefix: str) -> bool | None:
    if isinstance(event, Button):
        if event.data == f"{prefix}:yes":
            return True
        if event.data == f"{prefix}:no":
            return False
        return None
    if isinstance(event, Text):
        word = event.text.strip().lower().rstrip(".!")
        if word in _YES:
            return True
        if word in _NO:
            return False
    return None

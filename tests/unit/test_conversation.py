"""Every path of the screening conversation, driven through the pure flow."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from flows import messages
from flows.conversation import ScreeningFlow
from flows.model import (
    Alert,
    Button,
    Command,
    Context,
    Forget,
    Priority,
    Say,
    Session,
    Text,
    Unsupported,
)

NOW = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)  # a Friday evening
ON_DUTY = Context(now=NOW, team_on_duty=True)
OFF_DUTY = Context(
    now=NOW, team_on_duty=False, next_staffed=datetime(2026, 11, 23, 8, 0, tzinfo=ZoneInfo("Europe/Oslo"))
)


@pytest.fixture(scope="module")
def flow() -> ScreeningFlow:
    return ScreeningFlow()


class Chat:
    """A citizen talking to the pure flow; keeps the session and every action."""

    def __init__(self, flow: ScreeningFlow, ctx: Context = ON_DUTY, lang: str = "nb") -> None:
        self.flow = flow
        self.ctx = ctx
        self.session = Session(lang=lang)
        self.actions: list = []
        self.last: list = []

    def send(self, event) -> list:
        reply = self.flow.handle(self.session, event, self.ctx)
        self.session = reply.session
        self.last = list(reply.actions)
        self.actions += self.last
        return self.last

    @property
    def said(self) -> str:
        return "\n".join(a.text for a in self.last if isinstance(a, Say))

    @property
    def alerts(self) -> list[Alert]:
        return [a for a in self.actions if isinstance(a, Alert)]

    def start_screening(self) -> None:
        self.send(Command("start"))
        self.send(Button("consent:yes"))
        self.send(Button("age:yes"))

    def answer(self, value) -> list:
        """Answer the current question: a choice value (int) or a text (str)."""
        question = self.flow.script.question(self.session.state)
        if question.kind == "choice":
            return self.send(Button(f"a:{question.id}:{value}"))
        return self.send(Text(str(value)))

    def answer_all(self, chooser) -> None:
        while self.flow.is_question(self.session.state):
            question = self.flow.script.question(self.session.state)
            self.answer(chooser(question))


def lowest(question):
    if question.kind == "phone":
        return "412 34 567"
    if question.kind == "text":
        return "Å sove bedre og orke jobben igjen"
    return question.choices[0].value


def highest(question):
    if question.id == "contact_mode":
        return 0
    if question.kind != "choice":
        return lowest(question)
    return question.choices[-1].value


def test_welcome_explains_service_and_offers_consent(flow):
    chat = Chat(flow)
    chat.send(Command("start"))
    say = chat.last[0]
    assert isinstance(say, Say)
    assert "gratis" in say.text and "henvisning" in say.text and "ikke en akuttjeneste" in say.text
    assert "/slett" in say.text and "kryptert" in say.text
    assert "113" in say.text and "116 123" in say.text  # the crisis numbers from the first message
    assert [row[0].data for row in say.options] == ["consent:yes", "consent:no"]


def test_english_when_language_is_english(flow):
    chat = Chat(flow, lang="en")
    chat.send(Command("start"))
    assert "free" in chat.said and "referral" in chat.said


def test_decline_stores_nothing_and_gives_numbers(flow):
    chat = Chat(flow)
    chat.send(Command("start"))
    actions = chat.send(Button("consent:no"))
    assert any(isinstance(a, Forget) for a in actions)
    assert "113" in chat.said and "116 123" in chat.said and "fastlege" in chat.said


@pytest.mark.parametrize("event", [Button("age:no"), Text("16"), Text("16 år")])
def test_under_age_points_to_youth_services_and_stores_nothing(flow, event):
    chat = Chat(flow)
    chat.send(Command("start"))
    chat.send(Button("consent:yes"))
    actions = chat.send(event)
    assert any(isinstance(a, Forget) for a in actions)
    assert "116 111" in chat.said and "ung.no" in chat.said and "helsesykepleier" in chat.said.lower()
    assert chat.session.state == "too_young"


def test_typed_age_of_an_adult_starts_the_risk_questions(flow):
    chat = Chat(flow)
    chat.send(Command("start"))
    chat.send(Text("ja"))
    chat.send(Text("34"))
    assert chat.session.state == "risk_thoughts"


def test_min_age_is_configurable(flow):
    chat = Chat(flow, ctx=Context(now=NOW, min_age=20))
    chat.send(Command("start"))
    chat.send(Button("consent:yes"))
    assert "20 år" in chat.said
    chat.send(Text("19"))
    assert chat.session.state == "too_young"


def test_risk_questions_come_before_any_questionnaire(flow):
    chat = Chat(flow)
    chat.start_screening()
    order = []
    while flow.is_question(chat.session.state):
        order.append(chat.session.state)
        chat.answer(lowest(flow.script.question(chat.session.state)))
    assert order.index("risk_thoughts") < order.index("phq9_1")
    assert {"risk_attempt", "risk_selfharm", "risk_others"} < set(order[: order.index("phq9_1")])
    assert "risk_plans" not in order  # only asked after suicidal thoughts


def test_low_scorer_finishes_with_summary_next_steps_and_routine_card(flow):
    chat = Chat(flow)
    chat.start_screening()
    chat.answer_all(lowest)
    assert chat.session.state == "done"
    text = chat.said
    assert "48 timer" in text and "113" in text and "ikke en diagnose" in text
    assert "PHQ" not in text  # plain language, no instrument jargon for the citizen
    assert [a.priority for a in chat.alerts] == [Priority.ROUTINE]
    assert chat.session.finished_at == NOW


def test_no_contact_wanted_is_self_help_without_card(flow):
    chat = Chat(flow)
    chat.start_screening()
    chat.answer_all(lambda q: 3 if q.id == "contact_mode" else lowest(q))
    assert [a.priority for a in chat.alerts] == [Priority.SELF_HELP]
    assert "ombestemmer" in chat.said


def test_item_nine_hands_over_at_once_not_at_the_end(flow):
    chat = Chat(flow)
    chat.start_screening()
    while chat.session.state != "phq9_9":
        chat.answer(lowest(flow.script.question(chat.session.state)))
    actions = chat.answer(2)
    alerts = [a for a in actions if isinstance(a, Alert)]
    assert alerts and alerts[0].priority == Priority.URGENT
    assert isinstance(actions[0], Say) and actions[0].urgent  # the crisis reply goes first
    for number in ("113", "116 117", "116 123", "22 40 00 40"):
        assert number in chat.said
    assert "terapeut" in chat.said
    assert chat.session.state == "phq9_difficulty"  # may go on answering


def test_item_nine_of_one_is_priority(flow):
    chat = Chat(flow)
    chat.start_screening()
    while chat.session.state != "phq9_9":
        chat.answer(lowest(flow.script.question(chat.session.state)))
    chat.answer(1)
    assert chat.alerts[-1].priority == Priority.PRIORITY


def test_suicidal_thoughts_then_plans_escalates_priority_to_urgent(flow):
    chat = Chat(flow)
    chat.start_screening()
    chat.answer(1)  # thoughts
    assert chat.alerts[-1].priority == Priority.PRIORITY
    assert chat.session.state == "risk_plans"
    chat.answer(1)  # plans
    assert chat.alerts[-1].priority == Priority.URGENT
    assert "suicide_plans" in chat.alerts[-1].reasons


def test_off_duty_citizen_hears_when_team_is_back(flow):
    chat = Chat(flow, ctx=OFF_DUTY)
    chat.start_screening()
    chat.answer(1)
    assert "ingen terapeut på vakt" in chat.said
    assert "mandag kl. 08:00" in chat.said
    assert "113" in chat.said
    assert chat.alerts  # the card is posted all the same


def test_high_scorer_card_is_updated_as_instruments_complete(flow):
    chat = Chat(flow)
    chat.start_screening()
    chat.answer_all(highest)
    priorities = [a.priority for a in chat.alerts]
    assert priorities[:2] == [Priority.PRIORITY, Priority.URGENT]  # thoughts, then plans
    assert priorities == sorted(priorities)  # never lowered
    assert len(priorities) >= 5  # then card updates: PHQ-9, GAD-7, AUDIT-C complete, finished
    assert "En terapeut er varslet" in chat.said


def test_typed_label_and_number_are_accepted(flow):
    chat = Chat(flow)
    chat.start_screening()
    chat.answer(0)
    assert chat.session.state == "risk_attempt"
    chat.send(Text("nei"))
    assert chat.session.answers["risk_attempt"] == 0
    chat.send(Text("1"))  # the number shown with the first option ("1. Nei")
    assert chat.session.answers["risk_selfharm"] == 0


def test_text_where_a_button_is_expected_reprompts_without_skipping(flow):
    chat = Chat(flow)
    chat.start_screening()
    chat.send(Text("hva mener du?"))
    assert chat.session.state == "risk_thoughts"
    assert "knappene" in chat.said
    assert chat.last[0].options  # the buttons come again


@pytest.mark.parametrize("kind", ["sticker", "photo", "voice"])
def test_unsupported_messages_reprompt(flow, kind):
    chat = Chat(flow)
    chat.start_screening()
    chat.send(Unsupported(kind))
    assert chat.session.state == "risk_thoughts"
    assert "bare lese tekst" in chat.said


def test_stale_or_unknown_button_reprompts_current_question(flow):
    chat = Chat(flow)
    chat.start_screening()
    chat.answer(0)
    chat.send(Button("a:risk_thoughts:1"))  # an old message's button
    assert chat.session.state == "risk_attempt"
    assert chat.session.answers["risk_thoughts"] == 0
    chat.send(Button("nonsense"))
    assert chat.session.state == "risk_attempt"


def test_emoji_and_very_long_text(flow):
    chat = Chat(flow)
    chat.start_screening()
    chat.send(Text("😢😢😢"))
    assert chat.session.state == "risk_thoughts"
    chat.answer_all(lambda q: lowest(q) if q.id != "important" else 0)
    # stopped at the open question by the int 0 -> str "0"; now try a 5,000-character text
    chat2 = Chat(flow)
    chat2.start_screening()
    while chat2.session.state != "important":
        chat2.answer(lowest(flow.script.question(chat2.session.state)))
    chat2.send(Text("a" * 5000))
    assert chat2.session.state == "important" and "kortere" in chat2.said
    chat2.send(Text("Å få sove"))
    assert chat2.session.answers["important"] == "Å få sove"


def test_progress_on_every_question_and_the_ways_out_at_each_section(flow):
    chat = Chat(flow)
    chat.start_screening()
    seen, sections = 0, set()
    while flow.is_question(chat.session.state):
        question = flow.script.question(chat.session.state)
        assert "Spørsmål" in chat.said and "av" in chat.said
        if question.section not in sections:
            assert "/krise" in chat.said and "/stop" in chat.said and "/slett" in chat.said
            sections.add(question.section)
        chat.answer(lowest(question))
        seen += 1
    assert seen > 25 and len(sections) > 4


def test_options_are_in_the_instruments_order_lowest_first(flow):
    chat = Chat(flow)
    chat.start_screening()
    while chat.session.state != "phq9_1":
        chat.answer(0)
    options = [row[0] for row in chat.last[0].options if row[0].data.startswith("a:")]
    assert [o.data for o in options] == [f"a:phq9_1:{v}" for v in range(4)]
    assert options[0].label == "1. Ikke i det hele tatt"


def test_back_changes_previous_answer_and_drops_moot_answers(flow):
    chat = Chat(flow)
    chat.start_screening()
    chat.answer(1)  # thoughts: yes
    chat.answer(0)  # plans: no
    assert chat.session.state == "risk_attempt"
    chat.send(Command("back"))
    assert chat.session.state == "risk_plans"
    chat.send(Button("back"))
    assert chat.session.state == "risk_thoughts"
    chat.answer(0)  # thoughts: no -> plans no longer applies
    assert "risk_plans" not in chat.session.answers
    assert chat.session.state == "risk_attempt"


def test_back_on_first_question_says_so(flow):
    chat = Chat(flow)
    chat.start_screening()
    chat.send(Command("back"))
    assert chat.session.state == "risk_thoughts"
    assert "første spørsmålet" in chat.said


def test_back_button_shown_exactly_where_back_leads_somewhere(flow):
    # has_previous skips the machine where an always-asked question comes before; it must
    # agree with the machine everywhere, whatever the answers (conditional questions too)
    choices = {q.id: [c.value for c in q.choices] for q in flow.questions if q.kind == "choice"}
    answer_sets = [{}, {q: v[0] for q, v in choices.items()}, {q: v[-1] for q, v in choices.items()}]
    for answers in answer_sets:
        for question in flow.questions:
            expected = flow.move(question.id, "back", answers) is not None
            assert flow.has_previous(question.id, answers) is expected, question.id
    assert not flow.has_previous(flow.questions[0].id, {})


def test_crisis_answers_from_every_state(flow):
    chat = Chat(flow)
    states = set()
    chat.send(Command("crisis"))
    assert "113" in chat.said
    chat.start_screening()
    while flow.is_question(chat.session.state):
        before = chat.session.state
        states.add(before)
        actions = chat.send(Command("crisis"))
        assert "113" in chat.said and actions[0].urgent
        assert chat.session.state == before
        chat.answer(lowest(flow.script.question(before)))
    chat.send(Command("crisis"))
    assert "116 117" in chat.said


def test_stop_pauses_and_start_resumes_at_the_same_question(flow):
    chat = Chat(flow)
    chat.start_screening()
    chat.answer(0)
    chat.send(Command("stop"))
    assert chat.session.paused and "/start" in chat.said
    chat.send(Command("start"))
    assert not chat.session.paused
    assert chat.session.state == "risk_attempt" and "Velkommen tilbake" in chat.said


def test_delete_asks_first_and_then_forgets(flow):
    chat = Chat(flow)
    chat.start_screening()
    chat.answer(0)
    chat.send(Command("delete"))
    assert chat.session.confirming_delete and not any(isinstance(a, Forget) for a in chat.last)
    chat.send(Button("del:no"))
    assert chat.session.state == "risk_attempt" and not chat.session.confirming_delete
    chat.send(Command("delete"))
    actions = chat.send(Button("del:yes"))
    assert any(isinstance(a, Forget) for a in actions)
    assert "slettet" in chat.said


def test_phone_is_optional_and_validated(flow):
    chat = Chat(flow)
    chat.start_screening()
    while chat.session.state != "contact_phone":
        q = flow.script.question(chat.session.state)
        chat.answer(0 if q.id == "contact_mode" else lowest(q))
    chat.send(Text("ring meg"))
    assert chat.session.state == "contact_phone" and "telefonnummer" in chat.said
    chat.send(Button("skip:contact_phone"))
    assert chat.session.state == "done"
    assert chat.session.answers["contact_phone"] == ""


def test_free_text_risk_in_a_choice_question_alerts_and_reprompts(flow):
    chat = Chat(flow)
    chat.start_screening()
    while chat.session.state != "phq9_3":
        chat.answer(0)
    actions = chat.send(Text("jeg vil ta livet mitt"))
    assert isinstance(actions[0], Say) and actions[0].urgent
    assert "113" in chat.said
    assert chat.alerts[-1].priority == Priority.URGENT
    assert chat.session.state == "phq9_3"  # the question is asked again, nothing skipped


def test_first_aid_is_only_for_risk_text(flow):
    aid = flow.first_aid(Text("jeg vil ta livet mitt"), "nb")
    assert aid is not None and aid.urgent and "113" in aid.text and "22 40 00 40" in aid.text
    assert flow.first_aid(Text("jeg sover dårlig"), "nb") is None
    assert flow.first_aid(Button("consent:yes"), "nb") is None
    assert flow.first_aid(Command("crisis"), "nb") is None  # /crisis has its own fast path


def test_after_first_aid_the_reply_tells_who_is_coming_without_repeating_the_numbers(flow):
    given = Context(now=NOW, team_on_duty=True, first_aid_given=True)
    chat = Chat(flow, ctx=given)
    chat.start_screening()
    asked = chat.session.state
    actions = chat.send(Text("jeg vil ta livet mitt"))
    assert isinstance(actions[0], Say) and actions[0].urgent
    assert messages.text("alert_on_duty", "nb") in chat.said
    assert "113" not in chat.said and messages.text("risk_text", "nb") not in chat.said
    assert chat.alerts[-1].priority == Priority.URGENT
    assert chat.session.state == asked and messages.text("ways_out", "nb") in chat.said


@pytest.mark.parametrize("lang", ["nb", "en"])
def test_after_first_aid_off_duty_the_notice_points_to_the_numbers_above(flow, lang):
    given = Context(now=NOW, team_on_duty=False, next_staffed=OFF_DUTY.next_staffed, first_aid_given=True)
    chat = Chat(flow, ctx=given, lang=lang)
    chat.start_screening()
    chat.send(Text("I want to kill myself" if lang == "en" else "jeg vil ta livet mitt"))
    assert ("numrene over" if lang == "nb" else "numbers above") in chat.said
    assert "113" not in chat.said and "under" not in chat.said.split("\n\n")[0]
    without = Chat(flow, ctx=OFF_DUTY, lang=lang)
    without.start_screening()
    without.send(Text("I want to kill myself" if lang == "en" else "jeg vil ta livet mitt"))
    assert ("numrene under" if lang == "nb" else "numbers below") in without.said and "113" in without.said


def test_flow_is_pure_input_session_untouched(flow):
    session = Session()
    flow.handle(session, Command("start"), ON_DUTY)
    assert session.state == "new" and session.answers == {}


def test_a_session_copy_is_equal_and_its_own():
    """``ScreeningFlow.handle`` works on a copy (``Session.copy``): equal to one made through
    ``to_dict``/``from_dict``, and nothing done to it reaches the caller's session."""
    when = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    session = Session(state="phq9_2", answers={"phq9_1": 2}, history=["phq9_1"], alerted=Priority.URGENT,
                      started_at=when)  # fmt: skip
    copy = session.copy()
    assert copy == Session.from_dict(session.to_dict())
    copy.answers["phq9_2"] = 1
    copy.history.append("phq9_2")
    assert session.answers == {"phq9_1": 2} and session.history == ["phq9_1"]

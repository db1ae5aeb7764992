"""The crisis conversation, driven through the pure flow with a stand-in detector.

The detector's own judgement is tested in test_risk_text.py; here a small table decides
what each message means, so these tests say what the flow does with each answer: an act
under way gets 113 first and a paused questionnaire, doubt gets a direct question, worry
about someone else gets advice, and every risk answer reaches the card at once.
"""

from __future__ import annotations

import pytest

from flows import messages, risk_text
from flows.conversation import ScreeningFlow
from flows.model import Alert, Button, Command, Note, Priority, Say, Session, Text
from flows.risk_text import RiskJudgement

from .test_conversation import OFF_DUTY, ON_DUTY, Chat

ACUTE = RiskJudgement("alert", True, "self", "suicide", True, "test")
ACUTE_OTHER = RiskJudgement("alert", True, "other", "suicide", True, "test")
EXPLICIT = RiskJudgement("alert", False, "self", "suicide", False, "test")
OTHER = RiskJudgement("alert", False, "other", "suicide", False, "test")
SIGNAL = RiskJudgement("ask", False, "self", "possible", False, "test")

MEANINGS = {
    "har tatt mange piller nå": ACUTE,
    "samboeren min har tatt alle pillene sine": ACUTE_OTHER,
    "jeg skal ta livet mitt": EXPLICIT,
    "kjæresten min sier hun skal ta livet sitt i natt": OTHER,
    "alle hadde hatt det bedre uten meg": SIGNAL,
}


@pytest.fixture(autouse=True)
def detector(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(risk_text, "judge", lambda text: MEANINGS.get(text, risk_text.NO_RISK))


@pytest.fixture(scope="module")
def flow() -> ScreeningFlow:
    return ScreeningFlow()


def says(actions: list) -> list[Say]:
    return [a for a in actions if isinstance(a, Say)]


def buttons(actions: list) -> list[str]:
    return [o.data for say in says(actions) for row in say.options for o in row]


def at_phq9_item(chat: Chat, item: int) -> None:
    chat.start_screening()
    while chat.session.state != f"phq9_{item}":
        chat.answer(0)


def test_an_overdose_mid_phq9_gets_113_first_and_the_questionnaire_waits(flow):
    chat = Chat(flow, ON_DUTY)
    at_phq9_item(chat, 4)
    reply = chat.send(Text("har tatt mange piller nå"))
    first = says(reply)[0]
    assert first.urgent and first.text.splitlines()[0] == "Ring 113 nå."
    assert "22 59 13 00" in first.text  # the poison information centre, for pills
    assert messages.text("ask_safe_now", "nb") in chat.said
    assert set(buttons(reply)) == {"crisis:safe:yes", "crisis:safe:no"}
    assert not any(data.startswith("a:") for data in buttons(reply)), "no questionnaire question"
    assert Alert(Priority.ACUTE, ("text_acute", "text_suicide")) in reply
    assert any(isinstance(a, Note) and a.risk == "akutt" for a in reply), "kept for the therapist"

    # the old question's buttons do not move the questionnaire on
    reply = chat.send(Button("a:phq9_4:0"))
    assert chat.session.state == "phq9_4" and chat.session.holding == "safe_now"
    assert buttons(reply) == ["crisis:safe:yes", "crisis:safe:no"]

    reply = chat.send(Button("crisis:safe:no"))
    assert chat.session.crisis["safe_now"] is False
    assert Alert(Priority.ACUTE, ()) in reply, "the card follows the answer at once"
    assert "Ring 113 nå" in chat.said
    assert set(buttons(reply)) == {"crisis:with:yes", "crisis:with:no"}

    reply = chat.send(Text("nei"))
    assert chat.session.crisis["someone_with"] is False
    assert Alert(Priority.ACUTE, ()) in reply
    assert "116 123" in chat.said  # someone to talk to while alone
    assert buttons(reply) == ["crisis:resume"]

    # still waiting: a message is kept for the therapist, no question
    reply = chat.send(Text("de kommer snart"))
    assert any(isinstance(a, Note) for a in reply) and buttons(reply) == ["crisis:resume"]

    reply = chat.send(Button("crisis:resume"))
    assert chat.session.holding is None and chat.session.state == "phq9_4"
    assert any(data.startswith("a:phq9_4:") for data in buttons(reply))


def test_an_act_under_way_after_hours_promises_no_therapist(flow):
    chat = Chat(flow, OFF_DUTY)
    at_phq9_item(chat, 2)
    chat.send(Text("har tatt mange piller nå"))
    assert chat.said.startswith("Ring 113 nå.")
    assert "mandag kl. 08:00" in chat.said
    assert messages.text("acute_on_duty", "nb") not in chat.said
    assert "varsler terapeuten" not in chat.said


def test_an_act_under_way_before_consent_is_acted_on_too(flow):
    chat = Chat(flow, ON_DUTY)
    reply = chat.send(Text("har tatt mange piller nå"))
    assert chat.said.startswith("Ring 113 nå.")
    assert chat.session.alerted == Priority.ACUTE and chat.session.holding == "safe_now"
    assert Alert(Priority.ACUTE, ("text_acute", "text_suicide")) in reply


def test_someone_elses_overdose_gets_113_and_stay_with_them_and_no_question_about_the_writer(flow):
    chat = Chat(flow, ON_DUTY)
    at_phq9_item(chat, 1)
    reply = chat.send(Text("samboeren min har tatt alle pillene sine"))
    assert chat.said.startswith("Ring 113 nå.") and "Bli hos personen" in chat.said
    assert messages.text("ask_safe_now", "nb") not in chat.said
    assert buttons(reply) == ["crisis:resume"]
    assert Alert(Priority.ACUTE, ("text_acute", "text_other")) in reply


def test_a_possible_signal_is_asked_directly_and_a_no_lets_them_go_on(flow):
    chat = Chat(flow, ON_DUTY)
    at_phq9_item(chat, 3)
    reply = chat.send(Text("alle hadde hatt det bedre uten meg"))
    assert messages.text("ask_direct", "nb") in chat.said
    assert buttons(reply) == ["crisis:ask:yes", "crisis:ask:no", "crisis:ask:skip"]
    assert not any(isinstance(a, Alert) for a in reply), "asking is not yet a handover"
    assert not any(data.startswith("a:") for data in buttons(reply))

    reply = chat.send(Button("crisis:ask:no"))
    assert chat.session.crisis["signal"] == "denied" and chat.session.holding is None
    assert not any(isinstance(a, Alert) for a in reply)
    assert any(data.startswith("a:phq9_3:") for data in buttons(reply)), "the question comes back"
    assert "113" not in chat.said


@pytest.mark.parametrize(
    ("press", "reason", "signal"),
    [
        ("crisis:ask:yes", "text_signal_confirmed", "confirmed"),
        ("crisis:ask:skip", "text_signal_unanswered", "unanswered"),
    ],
)
def test_a_yes_or_no_answer_to_the_direct_question_is_an_urgent_handover(flow, press, reason, signal):
    chat = Chat(flow, ON_DUTY)
    at_phq9_item(chat, 3)
    chat.send(Text("alle hadde hatt det bedre uten meg"))
    reply = chat.send(Button(press))
    assert Alert(Priority.URGENT, (reason,)) in reply
    assert chat.session.crisis["signal"] == signal
    urgent = [s for s in says(reply) if s.urgent]
    assert urgent and "113" in urgent[0].text
    assert urgent[0].text.count("Takk") <= 1, "thanks once"
    question = says(reply)[-1]
    assert not question.urgent and question.replaceable, "the next question is a message of its own"


def test_a_denied_signal_on_a_case_the_team_has_goes_on_the_card(flow):
    chat = Chat(flow, ON_DUTY)
    chat.start_screening()
    chat.answer(1)  # suicidal thoughts: priority, handed over
    chat.send(Text("alle hadde hatt det bedre uten meg"))
    reply = chat.send(Button("crisis:ask:no"))
    assert any(isinstance(a, Alert) for a in reply), "the card is brought up to date"


def test_worry_about_someone_else_gets_advice_for_the_helper_and_the_team_is_told(flow):
    chat = Chat(flow, OFF_DUTY)
    at_phq9_item(chat, 2)
    reply = chat.send(Text("kjæresten min sier hun skal ta livet sitt i natt"))
    assert messages.text("other_advice", "nb") in chat.said
    assert messages.text("ask_direct", "nb") not in chat.said
    assert Alert(Priority.URGENT, ("text_other",)) in reply
    assert chat.session.crisis["about_other"] is True
    assert chat.session.holding is None
    assert any(data.startswith("a:phq9_2:") for data in buttons(reply)), "the screening may go on"


def test_an_explicit_statement_thanks_once_and_leaves_the_question_to_a_message_of_its_own(flow):
    chat = Chat(flow, ON_DUTY)
    at_phq9_item(chat, 5)
    reply = chat.send(Text("jeg skal ta livet mitt"))
    crisis_reply, question = says(reply)
    assert crisis_reply.urgent and "113" in crisis_reply.text
    assert crisis_reply.text.count("Takk") + crisis_reply.text.count("glad du sier") == 1
    assert not question.urgent
    assert Alert(Priority.URGENT, ("text_suicide",)) in reply


def test_every_risk_answer_after_an_urgent_alert_reaches_the_card_at_once(flow):
    chat = Chat(flow, ON_DUTY)
    chat.start_screening()
    chat.send(Text("jeg skal ta livet mitt"))  # urgent, at the first question
    assert chat.session.alerted == Priority.URGENT
    for expected_state in ("risk_plans", "risk_attempt"):
        reply = chat.answer(1)  # thoughts yes, plans yes
        assert chat.session.state == expected_state or chat.session.state.startswith("risk_")
        assert any(isinstance(a, Alert) for a in reply), f"no card update after {expected_state}"
    reply = chat.answer(1)  # an earlier attempt
    assert any(isinstance(a, Alert) for a in reply)


def test_item_9_of_any_value_reaches_the_card_once_the_team_has_the_case(flow):
    chat = Chat(flow, ON_DUTY)
    chat.start_screening()
    chat.answer(1)  # thoughts: the team has the case
    while chat.session.state != "phq9_9":
        chat.answer(0)
    reply = chat.answer(0)
    assert any(isinstance(a, Alert) for a in reply)


def test_crisis_offers_a_therapist_and_the_button_opens_an_urgent_case(flow):
    chat = Chat(flow, OFF_DUTY)
    at_phq9_item(chat, 2)
    reply = chat.send(Command("crisis"))
    assert buttons(reply) == ["crisis:talk"]
    reply = chat.send(Button("crisis:talk"))
    assert Alert(Priority.URGENT, ("crisis_request",)) in reply
    assert "mandag kl. 08:00" in chat.said
    assert chat.session.state == "phq9_2"


def test_a_holding_session_survives_storage():
    session = Session(state="phq9_4", holding="someone_with", crisis={"acute": True, "safe_now": False})
    restored = Session.from_dict(session.to_dict())
    assert restored.holding == "someone_with" and restored.crisis == {"acute": True, "safe_now": False}
    assert session.copy().crisis is not session.crisis


def test_stop_and_start_during_a_crisis_step(flow):
    chat = Chat(flow, ON_DUTY)
    at_phq9_item(chat, 2)
    chat.send(Text("har tatt mange piller nå"))
    chat.send(Command("back"))
    assert chat.session.state == "phq9_2" and chat.session.holding == "safe_now"
    chat.send(Command("start"))
    assert chat.session.holding is None
    assert chat.session.crisis["acute"] is True, "what the card shows is kept"

"""A measurement occasion between sessions, driven through the pure flow: the form as in the
screening, pause and decline, and safety (item 9 and free text alert the therapist at once).
A hypothesis state machine checks that any event from any state keeps the occasion
consistent and that item 9 of 1 or more always alerts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from flows import messages, risk_text
from flows.measure import (
    CLOSED,
    DECLINED,
    DONE,
    EXPIRED,
    INVITED,
    WORK,
    Completed,
    MeasureFlow,
    MeasureReply,
    Occasion,
    TellTherapist,
)
from flows.model import (
    Alert,
    Button,
    Command,
    Context,
    Event,
    Note,
    Priority,
    RiskText,
    Say,
    Text,
    Unsupported,
)

NOW = datetime(2026, 12, 13, 10, 0, tzinfo=UTC)
ON_DUTY = Context(now=NOW, team_on_duty=True)
OFF_DUTY = Context(now=NOW, team_on_duty=False)
FLOW = MeasureFlow()
ITEMS = [q.id for q in FLOW.items]
CRISIS_NUMBER = "116 123"


def no_risk(text: str) -> SimpleNamespace:
    return SimpleNamespace(
        risk=False, action="none", acute=False, about="self", category=None, poisoning=False
    )


@pytest.fixture(autouse=True)
def quiet_judge(monkeypatch):
    """Free text carries no risk unless a test says so (``judge`` may not exist yet)."""
    monkeypatch.setattr(risk_text, "judge", no_risk)


class Chat:
    """A citizen answering one occasion; keeps the occasion and every action."""

    def __init__(self, ctx: Context = ON_DUTY, lang: str = "nb", **occasion) -> None:
        self.ctx = ctx
        self.o = Occasion(id="0a1b2c3d", therapist="Kari", lang=lang, **occasion)
        self.actions: list = []
        self.last: MeasureReply = FLOW.invite(self.o, ctx)
        self.actions += self.last.actions

    def send(self, event: Event) -> MeasureReply:
        self.last = FLOW.handle(self.o, event, self.ctx)
        self.o = self.last.occasion
        self.actions += self.last.actions
        return self.last

    def press(self, what: str) -> MeasureReply:
        return self.send(Button(f"m:{self.o.id}:{what}"))

    def answer(self, value: int) -> MeasureReply:
        return self.press(f"a:{self.o.state}:{value}")

    @property
    def say(self) -> Say:
        return next(a for a in self.last.actions if isinstance(a, Say))

    def of(self, kind: type) -> list:
        return [a for a in self.actions if isinstance(a, kind)]


# --- the form --------------------------------------------------------------------------------


def test_the_introduction_names_the_therapist_and_offers_start_later_and_no():
    chat = Chat()
    assert "Før neste samtale med Kari" in chat.say.text
    assert "16 korte spørsmål" in chat.say.text
    assert [row[0].data for row in chat.say.options] == [
        "m:0a1b2c3d:start",
        "m:0a1b2c3d:later",
        "m:0a1b2c3d:no",
    ]
    english = Chat(lang="en")
    assert "Before your next conversation with Kari" in english.say.text


def test_the_introduction_names_the_session_when_it_is_booked():
    when = datetime(2026, 12, 14, 10, 0, tzinfo=ZoneInfo("Europe/Oslo"))
    assert "Før samtalen med Kari mandag 14.12. kl. 10:00" in Chat(session_at=when).say.text
    assert "on Monday 14 December at 10:00" in Chat(lang="en", session_at=when).say.text


def test_items_as_in_the_screening_lowest_score_first_with_progress_over_the_whole_measure():
    chat = Chat()
    chat.press("start")
    assert chat.o.state == "phq9_1"
    assert "Spørsmål 1 av 16" in chat.say.text
    assert "I løpet av de siste 2 ukene" in chat.say.text  # the published stem
    assert "Krise: /krise" in chat.say.text
    labels = [row[0].label for row in chat.say.options]
    assert labels == [
        "1. Ikke i det hele tatt",
        "2. Flere dager",
        "3. Mer enn halvparten av dagene",
        "4. Nesten hver dag",
    ]
    chat.answer(0)
    chat.answer(1)
    assert "Spørsmål 3 av 16" in chat.say.text
    assert chat.say.options[-1][0].data == "m:0a1b2c3d:back"
    for _ in range(6):
        chat.answer(0)
    chat.answer(0)  # item 9
    assert chat.o.state == "gad7_1" and "Spørsmål 10 av 16" in chat.say.text


def test_typed_answers_by_label_or_number():
    chat = Chat()
    chat.send(Text("ja"))
    chat.send(Text("Flere dager"))
    chat.send(Text("3"))  # the third button: more than half the days
    chat.send(Text("nesten hver dag"))
    assert chat.o.answers == {"phq9_1": 1, "phq9_2": 2, "phq9_3": 3}
    chat.send(Text("kanskje"))
    assert chat.o.state == "phq9_4"
    assert "Trykk på en av knappene" in chat.say.text


def test_a_full_measure_completes_with_totals_and_a_plain_summary():
    chat = Chat()
    chat.press("start")
    for value in [2, 2, 1, 1, 1, 1, 1, 1, 0]:  # PHQ-9 10
        chat.answer(value)
    for value in [1, 1, 1, 1, 1, 1, 2]:  # GAD-7 8
        chat.answer(value)
    assert chat.o.state == DONE and chat.o.finished_at == NOW
    (done,) = chat.of(Completed)
    assert (done.phq9, done.gad7, done.item9, done.work) == (10, 8, 0, None)
    assert len(done.answers) == 16
    assert not chat.of(Alert)
    assert "moderat (10 av 27)" in chat.say.text and "mild (8 av 21)" in chat.say.text
    assert "/fremgang" in chat.say.text
    chat.answer(1)  # a late button press changes nothing
    assert chat.o.state == DONE and len(chat.of(Completed)) == 1


def test_the_work_question_comes_last_when_asked():
    chat = Chat(ask_work=True)
    assert "17 korte spørsmål" in chat.say.text
    chat.press("start")
    for _ in range(16):
        chat.answer(0)
    assert chat.o.state == WORK and "Spørsmål 17 av 17" in chat.say.text
    assert "Sykmeldt" in str(chat.say.options)
    chat.send(Text("sykmeldt"))
    (done,) = chat.of(Completed)
    assert done.work == 3
    assert "work" not in done.answers


def test_back_changes_the_previous_answer():
    chat = Chat()
    chat.press("start")
    chat.answer(3)
    chat.press("back")
    assert chat.o.state == "phq9_1"
    chat.answer(0)
    assert chat.o.answers == {"phq9_1": 0} and chat.o.state == "phq9_2"
    chat.send(Command("back"))
    chat.send(Command("back"))
    assert "første spørsmålet" in chat.say.text


def test_stale_buttons_and_buttons_from_another_occasion_answer_nothing():
    chat = Chat()
    chat.press("start")
    chat.answer(1)
    chat.send(Button("m:0a1b2c3d:a:phq9_1:3"))  # an earlier question
    chat.send(Button("m:ffffffff:a:phq9_2:3"))  # another occasion
    chat.send(Button("a:phq9_2:3"))  # the screening's
    chat.send(Button("m:0a1b2c3d:a:phq9_2:7"))  # no such choice
    assert chat.o.answers == {"phq9_1": 1}
    assert "hører til et annet spørsmål" in chat.say.text


# --- pause and decline --------------------------------------------------------------------------


def test_pause_tells_the_therapist_once_and_resume_carries_on():
    chat = Chat()
    chat.press("start")
    chat.answer(1)
    chat.send(Command("stop"))
    chat.send(Command("stop"))
    assert chat.o.paused
    assert chat.of(TellTherapist) == [TellTherapist("paused", 1)]
    chat.send(Command("start"))
    assert not chat.o.paused and chat.o.state == "phq9_2"
    assert "fortsetter der du slapp" in chat.say.text


def test_later_on_the_introduction_is_a_pause():
    chat = Chat()
    chat.press("later")
    assert chat.o.paused and chat.o.state == INVITED
    chat.press("start")
    assert chat.o.state == "phq9_1"


def test_decline_tells_the_therapist_without_pressure():
    chat = Chat()
    chat.press("start")
    chat.answer(2)
    chat.press("no")
    assert chat.o.state == DECLINED and chat.o.declined_at == NOW
    assert chat.of(TellTherapist) == [TellTherapist("declined", 1)]
    assert "helt greit" in chat.say.text
    chat.send(Text("hei"))
    assert "nei takk" in chat.say.text
    assert not chat.of(Completed)


def test_no_on_the_introduction_declines():
    chat = Chat()
    chat.send(Text("Nei takk"))
    assert chat.o.state == DECLINED


def test_an_expired_occasion_says_so():
    chat = Chat()
    chat.press("start")
    reply = FLOW.expire(chat.o, ON_DUTY)
    assert reply.occasion.state == EXPIRED and reply.actions == ()
    chat.o = reply.occasion
    chat.answer(1)
    assert "ikke lenger åpent" in chat.say.text


def test_reminder_is_gentle_and_has_the_ways_on():
    chat = Chat()
    reply = FLOW.remind(chat.o, ON_DUTY)
    (say,) = reply.actions
    assert "vennlig påminnelse" in say.text and "Kari" in say.text
    assert [row[0].data for row in say.options] == ["m:0a1b2c3d:start", "m:0a1b2c3d:later", "m:0a1b2c3d:no"]
    chat.press("start")
    chat.answer(0)
    chat.answer(0)
    chat.o = FLOW.handle(chat.o, Command("stop"), ON_DUTY).occasion
    assert FLOW.remind(chat.o, ON_DUTY).actions[0].options[0][0].label == "Fortsett"
    assert FLOW.remind(Chat(state=DONE).o, ON_DUTY).actions == ()


# --- safety -------------------------------------------------------------------------------------


def to_item9(chat: Chat) -> None:
    chat.press("start")
    for _ in range(8):
        chat.answer(0)
    assert chat.o.state == "phq9_9"


@pytest.mark.parametrize(
    ("value", "priority"), [(1, Priority.PRIORITY), (2, Priority.URGENT), (3, Priority.URGENT)]
)
def test_item_9_alerts_at_once_with_the_crisis_numbers_first(value, priority):
    chat = Chat()
    to_item9(chat)
    reply = chat.answer(value)
    say, alert = reply.actions
    assert isinstance(say, Say) and say.urgent
    assert "Jeg sier fra til Kari nå" in say.text and CRISIS_NUMBER in say.text
    assert say.text.index(CRISIS_NUMBER) < say.text.index("Spørsmål 10 av 16")
    assert alert == Alert(priority, alert.reasons) and alert.reasons[0].startswith("phq9_item9")
    assert chat.o.alerted == priority
    assert chat.o.state == "gad7_1"  # they may carry on


def test_item_9_of_0_does_not_alert():
    chat = Chat()
    to_item9(chat)
    chat.answer(0)
    assert not chat.of(Alert)


def test_item_9_off_duty_says_nobody_is_at_work():
    chat = Chat(ctx=OFF_DUTY)
    to_item9(chat)
    chat.answer(1)
    assert "akkurat nå er ingen på jobb" in chat.say.text and CRISIS_NUMBER in chat.say.text


def test_item_9_changed_upwards_on_the_way_back_alerts_again():
    chat = Chat()
    to_item9(chat)
    chat.answer(1)
    chat.press("back")
    chat.answer(3)
    assert [a.priority for a in chat.of(Alert)] == [Priority.PRIORITY, Priority.URGENT]


def verdict(action: str, **kw) -> SimpleNamespace:
    values = dict(
        risk=action != "none", action=action, acute=False, about="self", category="suicide", poisoning=False
    )
    values.update(kw)
    return SimpleNamespace(**values)


@pytest.mark.parametrize("state", ["intro", "question", "done", "declined"])
def test_risk_in_free_text_alerts_the_therapist_from_anywhere(monkeypatch, state):
    chat = Chat()
    if state != "intro":
        chat.press("start")
    if state == "done":
        for _ in range(16):
            chat.answer(0)
    if state == "declined":
        chat.press("no")
    monkeypatch.setattr(risk_text, "judge", lambda text: verdict("alert", acute=True))
    reply = chat.send(Text("jeg orker ikke mer"))
    say = reply.actions[0]
    assert isinstance(say, Say) and say.urgent and CRISIS_NUMBER in say.text
    assert RiskText("suicide") in reply.actions
    assert Note(text="jeg orker ikke mer", risk="suicide") in reply.actions
    assert Alert(Priority.URGENT, ("text_suicide",)) in reply.actions


def test_ask_asks_directly_and_still_tells_the_therapist(monkeypatch):
    monkeypatch.setattr(risk_text, "judge", lambda text: verdict("ask", category="crisis"))
    chat = Chat()
    chat.press("start")
    reply = chat.send(Text("alt er bare mørkt"))
    assert Alert(Priority.PRIORITY, ("text_crisis",)) in reply.actions
    assert "har du tanker om å ta livet ditt" in chat.say.text
    assert chat.o.state == "phq9_1" and chat.o.answers == {}


def test_poisoning_and_someone_else_get_their_numbers(monkeypatch):
    monkeypatch.setattr(
        risk_text, "judge", lambda text: verdict("alert", poisoning=True, about="other"), raising=False
    )
    chat = Chat()
    chat.send(Text("venninna mi har tatt alle pillene"))
    assert "22 59 13 00" in chat.say.text and "Hvis noen andre er i fare nå" in chat.say.text


def test_the_real_detector_alerts_on_an_explicit_statement(monkeypatch):
    monkeypatch.undo()  # the detector as shipped
    chat = Chat()
    chat.press("start")
    reply = chat.send(Text("jeg vil ta livet mitt"))
    assert any(isinstance(a, Alert) and a.priority == Priority.URGENT for a in reply.actions)
    reply = chat.send(Text("2"))
    assert not any(isinstance(a, Alert) for a in reply.actions)


def test_crisis_command_gives_the_numbers_and_changes_nothing():
    chat = Chat()
    chat.press("start")
    chat.answer(1)
    before = chat.o.to_dict()
    reply = chat.send(Command("crisis"))
    assert reply.actions[0].urgent and messages.crisis("nb") in reply.actions[0].text
    assert chat.o.to_dict() == before


def test_the_occasion_round_trips_through_json():
    chat = Chat(ask_work=True, session_at=datetime(2026, 12, 14, 10, 0, tzinfo=ZoneInfo("Europe/Oslo")))
    to_item9(chat)
    chat.answer(2)
    data = json.loads(json.dumps(chat.o.to_dict()))
    assert Occasion.from_dict(data) == chat.o


# --- properties ---------------------------------------------------------------------------------

OID = "0a1b2c3d"
RISKY = "RISKY"


def judge_marker(text: str) -> SimpleNamespace:
    if RISKY in text:
        return verdict("alert", acute=True)
    return no_risk(text)


buttons = st.one_of(
    st.sampled_from(["start", "later", "no", "back"]).map(lambda w: Button(f"m:{OID}:{w}")),
    st.tuples(st.sampled_from([*ITEMS, WORK, "x"]), st.integers(-1, 8)).map(
        lambda qv: Button(f"m:{OID}:a:{qv[0]}:{qv[1]}")
    ),
    st.sampled_from(["m:deadbeef:start", "a:phq9_1:1", "del:yes", ""]).map(Button),
)
texts = st.one_of(
    st.sampled_from(["1", "2", "3", "4", "5", "0", "ja", "nei", "Flere dager", "sykmeldt", "", RISKY]),
    st.text(max_size=40),
).map(Text)
commands = st.sampled_from(["crisis", "help", "start", "stop", "back", "repeat", "delete", "x"]).map(Command)
events = st.one_of(buttons, texts, commands, st.just(Unsupported("sticker")))


class OccasionMachine(RuleBasedStateMachine):
    """Any event from any state: a known state, only valid answers, monotone alerts, one
    message per reply, lossless JSON, and item 9 of 1 or more alerts whenever it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.o = Occasion(id=OID, therapist="Kari", ask_work=True)
        self.ctx = ON_DUTY

    @rule(event=events, on_duty=st.booleans())
    def send(self, event: Event, on_duty: bool) -> None:
        self.step(event, on_duty)

    @rule(value=st.integers(0, 3), on_duty=st.booleans())
    def answer_the_current_question(self, value: int, on_duty: bool) -> None:
        """Mostly valid answers, so runs get through the whole form (and past item 9)."""
        state = self.o.state
        data = f"m:{OID}:start" if state == INVITED else f"m:{OID}:a:{state}:{value}"
        self.step(Button(data), on_duty)

    def step(self, event: Event, on_duty: bool) -> None:
        ctx = ON_DUTY if on_duty else OFF_DUTY
        before = self.o
        reply = FLOW.handle(before, event, ctx)
        after = reply.occasion
        assert before.to_dict() == FLOW.handle(before, Command("crisis"), ctx).occasion.to_dict()
        says = [a for a in reply.actions if isinstance(a, Say)]
        assert len(says) <= 1
        alerts = [a for a in reply.actions if isinstance(a, Alert)]
        gave_item9 = after.answers.get("phq9_9", 0) >= 1 and (
            before.answers.get("phq9_9") != after.answers.get("phq9_9")
            or before.state == "phq9_9" != after.state
        )
        if gave_item9:
            assert alerts and alerts[0].priority >= Priority.PRIORITY
        if alerts:
            assert says and says[0].urgent and reply.actions[0] is says[0]
            assert CRISIS_NUMBER in says[0].text
        if isinstance(event, Text) and RISKY in event.text:
            assert any(isinstance(a, Alert) and a.priority == Priority.URGENT for a in reply.actions)
        if isinstance(event, Command) and event.name == "crisis":
            assert after.to_dict() == before.to_dict()
        assert after.alerted >= before.alerted
        if before.state in CLOSED:
            assert after.state == before.state and after.answers == before.answers
        completed = [a for a in reply.actions if isinstance(a, Completed)]
        assert bool(completed) == (after.state == DONE and before.state != DONE)
        self.o = after

    @invariant()
    def consistent(self) -> None:
        o = self.o
        assert o.state in FLOW.machine.states
        for item, value in o.answers.items():
            question = FLOW.questions[item]
            assert value in {c.value for c in question.choices}
        if o.state == DONE:
            assert all(q in o.answers for q in ITEMS) and WORK in o.answers
        if o.answers.get("phq9_9", 0) >= 1:
            assert o.alerted >= Priority.PRIORITY
        assert Occasion.from_dict(json.loads(json.dumps(o.to_dict()))) == o


OccasionMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.fixture
def marker_judge(monkeypatch):
    monkeypatch.setattr(risk_text, "judge", judge_marker)


@pytest.mark.usefixtures("marker_judge")
class TestOccasionMachine(OccasionMachine.TestCase):
    pass


def test_item9_always_alerts_whatever_came_before():
    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(st.integers(0, 3), min_size=8, max_size=8), st.integers(1, 3), st.booleans(), st.booleans()
    )
    def check(earlier, item9, typed, on_duty):
        chat = Chat(ctx=ON_DUTY if on_duty else OFF_DUTY)
        chat.press("start")
        for value in earlier:
            chat.answer(value)
        reply = chat.send(Text(str(item9 + 1))) if typed else chat.answer(item9)
        assert any(isinstance(a, Alert) and a.priority >= Priority.PRIORITY for a in reply.actions)
        assert CRISIS_NUMBER in reply.actions[0].text

    check()

"""Read-only repository queries: the citizen's own copy, and what the statistics read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storage import SqlRepository

T0 = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)
USER = 731_946_285
OTHER = 602_417_938


def screening(repo: SqlRepository, update_id: int, user: int, answers: dict, when: datetime, **kw):
    return repo.apply_update(
        update_id, user_id=user, chat_id=user, lang=kw.pop("lang", "nb"),
        session={"answers": answers, "lang": "nb"}, state="done", now=when, **kw,
    )  # fmt: skip


def test_citizen_copy_has_all_their_cases_and_messages_and_nothing_else(repo):
    first = screening(repo, 1, USER, {"risk_thoughts": 1, "important": "Jeg sover dårlig"}, T0, finished=True)
    repo.set_routing(first.id, 3, ["suicidal_thoughts"], T0)
    repo.add_relay(first.id, "citizen_to_therapist", "Hei, er det noen der?", T0 + timedelta(minutes=1))
    assert repo.claim(first.id, 42, T0 + timedelta(minutes=2))
    repo.add_relay(first.id, "therapist_to_citizen", "Hei, dette er Kari.", T0 + timedelta(minutes=3))
    assert repo.close(first.id, 42, "assessment_booked", T0 + timedelta(hours=1))
    second = screening(repo, 2, USER, {"risk_thoughts": 0}, T0 + timedelta(days=3))
    theirs = screening(repo, 3, OTHER, {"important": "someone else"}, T0)
    repo.add_relay(theirs.id, "citizen_to_therapist", "not yours", T0)

    cases, relays = repo.citizen_copy(USER)
    assert [c.id for c in cases] == [first.id, second.id]
    assert cases[0].session["answers"]["important"] == "Jeg sover dårlig"  # decrypted
    assert (cases[0].status, cases[0].outcome, cases[0].reasons) == (
        "closed",
        "assessment_booked",
        ["suicidal_thoughts"],
    )
    assert [(r.case_id, r.direction, r.body) for r in relays] == [
        (first.id, "citizen_to_therapist", "Hei, er det noen der?"),
        (first.id, "therapist_to_citizen", "Hei, dette er Kari."),
    ]
    assert repo.citizen_copy(555_000_111) == ([], [])

    repo.delete_citizen(USER)
    assert repo.citizen_copy(USER) == ([], [])
    assert [c.id for c in repo.citizen_copy(OTHER)[0]] == [theirs.id]


def test_queries_for_the_statistics(repo):
    early = screening(repo, 1, USER, {}, T0 - timedelta(seconds=1))
    on_time = screening(repo, 2, OTHER, {"phq9_1": 2}, T0)
    repo.audit("42", "claim", on_time.id, T0 - timedelta(seconds=1))
    repo.audit("42", "claim", on_time.id, T0 + timedelta(minutes=5))
    repo.audit("system", "escalate", on_time.id, T0 + timedelta(minutes=6))
    repo.audit("42", "view_summary", on_time.id, T0 + timedelta(minutes=7))

    assert [c.id for c in repo.cases_created_since(T0)] == [on_time.id]
    assert repo.cases_created_since(T0)[0].session["answers"] == {"phq9_1": 2}
    assert {c.id for c in repo.cases_created_since(T0 - timedelta(days=1))} == {early.id, on_time.id}

    events = repo.audit_events_since(T0, actions=("claim", "escalate"))
    assert [(e.actor, e.action) for e in events] == [("42", "claim"), ("system", "escalate")]
    assert len(repo.audit_events_since(T0)) == 3

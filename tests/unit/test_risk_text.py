"""The free-text risk detector (flows/risk_text.py): four answers, acts under way, cancellers."""

from __future__ import annotations

import functools
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eval.evaluate_risk import HELD_OUT, HELD_OUT_COMPLEMENT, figures, load_rows, run
from flows.risk_lexicon import lemma, normalise, sentences
from flows.risk_text import NO_RISK, RiskHit, RiskJudgement, detect, judge, model_text, warm_up


def test_no_risk_is_the_none_answer() -> None:
    assert NO_RISK.action == "none" and not NO_RISK.risk and NO_RISK.category is None
    assert judge("") == NO_RISK and judge("   ") == NO_RISK and judge("...") == NO_RISK
    warm_up()


# --- acts under way: a means, an act just done or in the present, the writer or someone there --

ACUTE = [
    ("har tatt mange piller nå", True),
    ("satte alt insulinet jeg hadde for en halvtime siden", True),
    ("tok en hel pakke Paracet for en time siden, blir kvalm", True),
    ("har svelga 20 Imovane", True),
    ("eg har teke heile boksen med Sobril no nettopp", True),
    ("just took all my sleeping pills", True),
    ("I swallowed 30 tramadol about 20 min ago", True),
    ("drakk rottegift for litt siden", True),
    ("jeg står på brua nå og skal hoppe", False),
    ("står på kanten av taket, dette er farvel", False),
    ("im on the railing of the bridge right now", False),
    ("eg har kutta meg og det blør mykje", False),
    ("cut too deep and it wont stop bleeding", False),
    ("sitter i bilen i garasjen med motoren i gang og slangen inn vinduet", False),
]


@pytest.mark.parametrize(("text", "poisoning"), ACUTE, ids=[t for t, _ in ACUTE])
def test_an_act_under_way_is_an_acute_alert(text: str, poisoning: bool) -> None:
    j = judge(text)
    assert j.action == "alert" and j.acute, j
    assert j.poisoning is poisoning, j
    assert j.about == "self"


def test_the_same_means_in_the_future_or_the_past_is_not_acute() -> None:
    plan = judge("skal ta alle pillene i kveld")
    assert plan.risk and not plan.acute
    assert not judge("tok en overdose for ti år siden, har det bra nå").acute
    assert not judge("tok medisinen min i morges som legen sa").risk
    assert not judge("took two paracetamol for my headache").risk


def test_cue_names_a_rule_or_the_model_never_the_words() -> None:
    j = judge("har tatt mange piller nå")
    assert j.cue == "poison_taken"
    assert "piller" not in judge("jeg vil ikke leve mer, har bestemt meg").cue


# --- someone else ----------------------------------------------------------------------------

OTHER = [
    "kjæresten min sier hun skal ta livet sitt i natt",
    "my friend says she wants to kill herself tonight",
    "kompisen min seier han skal hoppe frå brua i helga",
]


@pytest.mark.parametrize("text", OTHER)
def test_concern_about_someone_else_is_an_alert_about_the_other(text: str) -> None:
    j = judge(text)
    assert j.action == "alert" and j.about == "other", j


def test_someone_else_unconscious_after_pills_is_acute_and_poisoning() -> None:
    j = judge("samboeren min har tatt masse piller og svarer ikke når jeg rister i han")
    assert j.acute and j.about == "other" and j.poisoning, j


# --- explicit and possible --------------------------------------------------------------------

EXPLICIT = [
    "jeg vil ikke leve mer",
    "jeg har tenkt å ta livet mitt i kveld",
    "eg orkar ikkje å leve lenger",
    "æ vil ta livet av mæ",
    "i want to kill myself",
    "har kutta meg på armen igjen i kveld",
    "jeg kommer til å drepe han hvis han kommer hit igjen",
]


@pytest.mark.parametrize("text", EXPLICIT)
def test_explicit_risk_is_an_alert(text: str) -> None:
    assert judge(text).action == "alert", judge(text)


POSSIBLE = [
    "alle hadde hatt det bedre uten meg",
    "ser ingen vits i noe lenger",
    "har gitt bort katten og alle tingene mine denne uka",
    "everyone would be better off without me",
    "eg ser ingen meining med noko lenger",
]


@pytest.mark.parametrize("text", POSSIBLE)
def test_a_possible_signal_is_asked_about_at_least(text: str) -> None:
    assert judge(text).risk, judge(text)


# --- cancellers ---------------------------------------------------------------------------------

CANCELLED = [
    "jeg prøvde å ta livet mitt for ti år siden, men har det bra nå",  # the past, resolved
    "I attempted suicide years ago but im in a much better place now",
    "nei, jeg har aldri tenkt på selvmord",  # denial
    "I'm not suicidal, just really tired and stressed",
    "er sykepleier og lurer på hvordan dere kartlegger selvmordsrisiko",  # profession
    "writing an essay on suicide prevention for my psych class",  # student
    "haha jeg dør av latter av den videoen 😂",  # joke
    "jobben tar livet av meg denne uka lol",  # idiom
    "døde så mange ganger i det spillet i går",  # game
    "my character died in the game again",
    "står på toppen av Preikestolen, for en utsikt!",  # hobby, a height without risk
    "kjøpte tau til båten og ny kniv til fisketuren",
    "took my antidepressant this morning as prescribed",  # medicine as prescribed
    "Jeg skal ta livet med ro i helgen",
]


@pytest.mark.parametrize("text", CANCELLED)
def test_cancelled_risk_is_none(text: str) -> None:
    assert judge(text).action != "alert", judge(text)


@pytest.mark.parametrize("text", CANCELLED[:8])
def test_cancelled_risk_is_not_even_asked(text: str) -> None:
    assert not judge(text).risk, judge(text)


# --- long messages, spelling ------------------------------------------------------------------


def test_a_long_message_with_the_risk_in_the_middle() -> None:
    small_talk = "Hei, jeg har hatt en lang dag på jobb og sover dårlig. Ellers går det greit med familien. "
    text = small_talk * 20 + "Jeg har tatt alle pillene mine nå. " + small_talk * 20
    j = judge(text)
    assert j.acute and j.poisoning
    assert judge(small_talk * 40).action == "none"


SPELLING = [
    "jeg vil ikke leve mer",
    "jg vil ikke leve mer",
    "JEG VIL IKKE LEVE MER",
    "jeg vil ikke leve mer!!!",
    "jeg vil ikkje leve meir",
    "har tatt mange pilller naa",
    "tok alle pillene for en time sia",
    "selvmordstanker hele tiden",
    "sjølvmordstankar heile tida",
    "i wanna die",
    "i want to dieee",
]


@pytest.mark.parametrize("text", SPELLING)
def test_typos_missing_letters_and_dialect_still_find_risk(text: str) -> None:
    assert judge(text).risk, judge(text)


def test_normalise_and_the_lemmatiser_meet_the_inflected_forms() -> None:
    assert normalise("Jeg vil DØ, æøå ÆØÅ") == "jeg vil do aoa aoa"
    assert normalise("vaere") == normalise("være")
    assert {lemma(w) for w in ("pillene", "piller", "pille", "pills")} == {"pill"}
    assert lemma("cutting") == lemma("cut") == "cut"
    assert model_text("Jeg vet ikke. Vil dø") == "jeg vet ikke vil do"
    assert [s for s, _ in sentences("Hei. Jeg vil dø 😂 ok")] == ["hei", "jeg vil do", "ok"]
    assert sentences("lol 😂")[0][1] is True


def test_a_5000_character_message_takes_milliseconds() -> None:
    texts = ["a" * 5000, "jeg " * 1250, ("ta livet " * 600)[:5000], "æøå. " * 1000, "i want to " * 500]
    for text in texts:
        start = time.perf_counter()
        judge(text)
        assert time.perf_counter() - start < 0.2, text[:20]


# --- the compatibility wrapper ------------------------------------------------------------------


def test_detect_wraps_judge() -> None:
    assert detect("I want to feel better") is None
    hit = detect("har tatt mange piller nå")
    assert isinstance(hit, RiskHit) and hit.kind == "acute" and hit.phrase == "poison_taken"
    hit = detect("jeg vil ikke leve mer")
    assert hit is not None and hit.kind == "explicit" and hit.category == "suicide"


# --- a sentence in front can never talk the detector out of a risk -----------------------------


@functools.cache
def _risk_rows() -> tuple[str, ...]:
    return tuple(r.text for r in load_rows(split=HELD_OUT_COMPLEMENT) if r.risk and judge(r.text).risk)


PREFIXES = st.sampled_from([
    "Jeg vet ikke.", "Nei.", "Hei, takk for sist.", "Jeg har ingen selvmordstanker.", "I'm not suicidal.",
    "No.", "Eg har ikkje sove godt.", "Det var lenge siden.", "lol 😂", "Jeg jobber som sykepleier.",
    "Ellers har jeg det fint!", "It was years ago.",
])  # fmt: skip
_SEVERITY = {"none": 0, "ask": 1, "alert": 2}


def _severity(j: RiskJudgement) -> int:
    return _SEVERITY[j.action] + j.acute


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prefix=PREFIXES, index=st.integers(min_value=0, max_value=10**6), sep=st.sampled_from([" ", "\n", "  "])
)
def test_a_risk_message_stays_risk_after_a_neutral_or_denial_sentence(
    prefix: str, index: int, sep: str
) -> None:
    rows = _risk_rows()
    text = rows[index % len(rows)]
    assert _severity(judge(prefix + sep + text)) >= _severity(judge(text)), (prefix, text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_judge_never_fails_and_is_consistent(text: str) -> None:
    j = judge(text)
    assert j.action in ("alert", "ask", "none")
    assert not j.acute or j.action == "alert"
    assert (j.category is None) == (j.action == "none")
    assert j.about in ("self", "other")
    assert normalise(normalise(text)) == normalise(text)


# --- regression guard on the tuned splits -------------------------------------------------------


def test_the_tuned_splits_meet_the_targets_per_language() -> None:
    """In-sample, so optimistic: the held-out figures are reported in eval/README.md."""
    rows = load_rows(split=HELD_OUT_COMPLEMENT)
    assert not {r.split for r in rows} & set(HELD_OUT)
    results = run(rows)
    for lang in (None, "nb", "nn", "en"):
        scoped = [r for r in results if lang is None or r.row.lang == lang]
        for name, (rate, target, met) in figures(scoped).items():
            assert met, f"{lang or 'overall'} {name}: {rate} against {target}"


# --- reading: spelling, word forms, whose act, leisure (2026-12-08, second round) --------------


def test_a_typo_is_never_read_in_the_first_letter() -> None:
    from flows.risk_lexicon import lexicon

    words = lexicon().words("changing the oil")
    assert words[0] == "changing"  # not "hanging"


def test_an_exact_form_term_does_not_match_other_forms() -> None:
    from flows.risk_features import read

    (sitting,) = read("sitter på rekkverket på brua nå")
    assert "reflexive_other" not in sitting.concepts  # "sitter" is not the reflexive "sitt"


def test_nynorsk_terms_meet_nynorsk_text_after_the_synonyms() -> None:
    from flows.risk_features import read

    (s,) = read("me ser han ikkje lenger")
    assert "unconscious" in s.concepts and "resolved" not in s.concepts


def test_someone_else_who_jumped_is_an_acute_alert_about_them() -> None:
    j = judge("kompisen min hoppa i elva frå brua, me står på land og me ser han ikkje lenger")
    assert j.action == "alert" and j.acute and j.about == "other", j


def test_the_person_nearest_before_the_act_decides_whose_it_is() -> None:
    j = judge("samboeren sitter i bilen med slange fra eksosen og har låst dørene. jeg har ikke nøkkel")
    assert j.acute and j.about == "other", j


LEISURE = [
    "in the garage changing the oil on my moped, engine running to warm it up",
    "står på kanten av stupet på dalsnibba og tek bilete, for ei utsikt",
    "bridge into town is closed for repairs AGAIN, took forever to get to work",
]


@pytest.mark.parametrize("text", LEISURE)
def test_a_leisure_scene_is_never_acute(text: str) -> None:
    assert not judge(text).acute, text


def test_leisure_does_not_hide_an_act_with_death_in_it() -> None:
    j = judge(
        "lit the disposable bbq inside the tent and zipped it shut. wanted to say goodbye one last time"
    )
    assert j.action == "alert" and j.acute, j


def test_poison_swallowed_and_rocks_at_the_water_are_acute() -> None:
    assert judge("drank some of the weedkiller from the shed").acute
    assert judge("at the quarry lake with rocks in my backpack. going in now").acute
    assert not judge("jeg er gift og har to barn").risk


def test_a_small_cut_while_cooking_is_not_self_harm() -> None:
    assert not judge(
        "cooking tonight and the knife slipped, tiny cut, all good. bleeding on the onions now 😅"
    ).risk


def test_orker_ikke_mer_is_never_nothing_but_the_coffee_is() -> None:
    assert judge("ok jeg orker ikke mer i dag hei").risk
    assert not judge("orker ikke mer kaffe i dag").risk

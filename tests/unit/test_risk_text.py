"""Free-text risk detection (flows/risk_text.py, flows/data/risk_phrases.toml)."""

from __future__ import annotations

import functools
import importlib.util
import sys
import tomllib
import types
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from flows.risk_text import (
    CATEGORIES,
    DATA_FILE,
    RiskHit,
    _blank,
    _clauses,
    _compiled,
    _fix_typos,
    _Gap,
    _Group,
    _parse,
    _Word,
    compile_data,
    detect,
    normalise,
)

ROOT = Path(__file__).resolve().parents[2]


def category(text: str) -> str | None:
    hit = detect(text)
    return hit.category if hit else None


# --- the examples named in the brief ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("jeg orker ikke mer", "suicide"),
        ("Jeg har tenkt på å ta livet mitt", "suicide"),
        ("jeg skal ta livet av meg", "suicide"),
        ("eg vil ikkje leve", "suicide"),
        ("jeg har lyst til å kutte meg", "self_harm"),
        ("jeg vil ikke være her lenger", "suicide"),
        ("I want to kill myself", "suicide"),
        ("I'm going to end it all", "suicide"),
        ("alle hadde hatt det bedre uten meg", "suicide"),
        ("jeg har sagt farvel til alle", "suicide"),  # saying goodbye
        ("Goodbye everyone, thank you for everything", "suicide"),
        ("jeg har gitt bort tingene mine", "suicide"),  # giving things away
        ("I gave away my dog and my stuff", "suicide"),
        ("jeg har samlet på piller", "suicide"),  # collecting pills
        ("I've been stockpiling my meds", "suicide"),
        ("jeg kan ikke orke mer", "suicide"),  # "ikke orke mer", the national guide's wording
        ("ikke orker mer", "suicide"),
        ("Jeg har selvmordstanker", "suicide"),
        ("I cut myself last night", "self_harm"),
        ("jeg kommer til å drepe ham", "harm_others"),
        ("I'm scared I might hurt my baby", "harm_others"),
        ("Kjæresten min slår meg", "crisis"),
        ("I'm having a panic attack and can't breathe", "crisis"),
    ],
)
def test_named_examples_hit_with_the_right_category(text: str, expected: str) -> None:
    assert category(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "jeg døde av latter",
        "Det var drepende kjedelig på jobb i dag",
        "I could kill for a coffee",
        "Konserten var dødsbra!",
        "this game is killing me",
        "jeg skal ta livet lett i sommer",
        "Eg skal ta livet med ro i sommar",
        "jobben tar livet av meg for tiden",
        "My feet are killing me",
        "I'm dying to see that movie",
        "Jeg orker ikke mer kaffe i dag, haha",
        "Jeg brente meg på stekepanna",
        "I burned myself on the oven",
        "Han slår meg alltid i sjakk",
        "I beat myself up over small mistakes",
        "We watched a film about suicide in class",
        "Nei, jeg har ingen selvmordstanker",
        "I'm not suicidal, just exhausted",
        "I want to end my subscription",
        "I ran 50 kms last week",
        "Jeg har lyst til å forsvinne på ferie til Spania",
        "jeg har ikke sovet godt på en uke og er stressa for eksamen",
        "I'm tired of my job",
        "En venn av meg snakker om å ta livet sitt, hva skal jeg gjøre?",
        "jeg har hatt en tung periode, men ingen tanker om å skade meg",
        "",
        "   ",
        "😭😭😭",
    ],
)
def test_non_risk_idioms_and_everyday_messages_do_not_fire(text: str) -> None:
    assert detect(text) is None


def test_an_idiom_hides_only_itself_not_the_rest_of_the_message() -> None:
    assert category("jeg døde av latter i går, men nå vil jeg dø") == "suicide"
    assert category("I could kill for a coffee. Honestly I want to kill myself") == "suicide"
    assert category("jeg skal ta livet lett i sommer, eller ta livet mitt") == "suicide"


# --- clauses: an idiom or a denial never hides risk in another clause ------------------------

# Found by property-based testing (tests/test_flow_properties.py): punctuation used to become a
# plain space before the excludes were tried, so a negation or an idiom at the end of one
# sentence ran on into the next and blanked real risk there.
ACROSS_A_BREAK = [
    ("Jeg vet ikke. Selvmordstanker hele tiden", "Selvmordstanker hele tiden"),
    ("Jeg sover ikke. Selvmordstankene kommer hver natt", "Selvmordstankene kommer hver natt"),
    ("Jeg orker ikke mer. Mørket tar over", "Jeg orker ikke mer"),
    ("Jeg orker ikke mer, mat og søvn er borte", "Jeg orker ikke mer"),
    ("Det hjelper ikke, selvmordstankene er der hele tiden", "selvmordstankene er der hele tiden"),
    ("Vet ikke. Suicidal hele dagen", "Suicidal hele dagen"),
]


@pytest.mark.parametrize(("text", "risk_alone"), ACROSS_A_BREAK, ids=[t for t, _ in ACROSS_A_BREAK])
def test_an_exclude_does_not_reach_across_a_sentence_or_clause_break(text: str, risk_alone: str) -> None:
    alone = detect(risk_alone)
    assert alone is not None
    assert detect(text) == alone


@pytest.mark.parametrize(
    "text",
    [
        "Jeg vet ikke\nselvmordstanker hele tiden",
        "jeg vet ikke - selvmordstanker hele tiden",
        "jeg vet ikke – selvmordstanker hele tiden",
        "jeg vet ikke—selvmordstanker hele tiden",
        "jeg vet ikke; selvmordstanker hele tiden",
        "jeg vet ikke: selvmordstanker hele tiden",
        "jeg vet ikke! selvmordstanker hele tiden",
        "jeg vet ikke? selvmordstanker hele tiden",
        "jeg vet ikke... selvmordstanker hele tiden",
        "jeg vet ikke… selvmordstanker hele tiden",
        "jeg vet ikke.selvmordstanker hele tiden",
        "I'm not sure, suicidal all day",
        "jeg orker ikke mer! kaffe hjelper ikke",
        "Jeg orker ikke mer; regnet bare fortsetter",
    ],
)
def test_every_kind_of_break_keeps_the_exclude_in_its_own_clause(text: str) -> None:
    assert detect(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        "Nei, jeg har ingen selvmordstanker",
        "Jeg har ikke selvmordstanker. Bare sliten",
        "Jeg orker ikke mer kaffe i dag, haha",
        "I'm not suicidal, just exhausted.",
        "jobben tar livet av meg for tiden!",
        "Jeg skal med t-banen i dag",
    ],
)
def test_an_exclude_still_covers_its_own_clause(text: str) -> None:
    assert detect(text) is None


def test_a_hyphen_inside_a_word_is_not_a_break() -> None:
    c = _compiled()
    assert _clauses("hoppe foran t-banen, self-harm", c) == ["hoppe foran t banen", "self harm"]
    assert _clauses("jeg vet ikke -selvmord- nei", c) == ["jeg vet ikke", "selvmord", "nei"]
    assert detect("jeg vil hoppe foran t-banen") is not None


def test_an_exclude_blanks_its_own_words_and_not_the_words_its_gap_skips() -> None:
    data = compile_data(
        {
            "entry": [_entry(pattern="selvmord*"), _entry(pattern="vil forsvinne", kind="indirect")],
            "exclude": [{"pattern": "forsvinne (på|til) * (ferie|tur)"}],
        }
    )
    blanked = data.exclude.sub(_blank, "jeg vil forsvinne pa en selvmordsreise pa tur i kveld")
    assert blanked == "jeg vil # # en selvmordsreise pa # i kveld"
    assert data.exclude.sub(_blank, "forsvinne til ferie") == "# # #"
    assert detect("Jeg vil forsvinne på en selvmordsreise til hytta") is not None
    assert detect("Jeg har lyst til å forsvinne på ferie til Spania") is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80) | st.text(alphabet="jeg vil ikke dø ÆØÅæøå.,!?;:-–—…\n'’", max_size=60))
def test_clauses_cut_only_where_normalise_puts_a_space(text: str) -> None:
    c = _compiled()
    clauses = _clauses(text, c)
    assert " ".join(clauses) == _fix_typos(text, c)
    assert all(cl and cl == cl.strip() and "  " not in cl for cl in clauses)


# Every explicit phrase in the data file, wrapped in negations and neutral words. A separator
# always stands between the context and the phrase, so the context is in another clause: a
# negation in the same clause ("ingen selvmordstanker") is a legitimate exclude and not tested.

NEGATION_CONTEXT = (
    "Jeg vet ikke.",
    "ikke",
    "nei",
    "Jeg sover ikke.",
    "mat og søvn er borte",
    "I don't know.",
    "not",
    "no",
    "ingen",
    "orker ikke mer",
    ".",
    ",",
    "!",
    "?",
    "...",
    "-",
)
SEPARATORS = (". ", ", ", "! ", "? ", "; ", ": ", " - ", " – ", "—", "\n", "... ", "…", ".")


def _explicit_patterns() -> list[str]:
    with DATA_FILE.open("rb") as f:
        data = tomllib.load(f)
    return [e["pattern"] for e in data["entry"] if e["kind"] == "explicit" and not e.get("regex")]


EXPLICIT_PATTERNS = _explicit_patterns()


def _first_reading(node: Any) -> str:
    """A phrase the pattern matches: first alternatives, no optional parts, empty gaps."""
    if isinstance(node, _Word):
        return node.text
    if isinstance(node, _Gap) or node.optional:
        return ""
    return " ".join(w for w in map(_first_reading, node.alts[0]) if w)


def _readings(node: Any) -> st.SearchStrategy[str]:
    """Any phrase the pattern matches (a prefix word as its bare stem, a gap as no word or
    one)."""
    if isinstance(node, _Word):
        return st.just(node.text)
    if isinstance(node, _Gap):
        return st.sampled_from(["", "nå"])
    assert isinstance(node, _Group)
    seqs = [st.tuples(*map(_readings, seq)).map(lambda ws: " ".join(w for w in ws if w)) for seq in node.alts]
    return st.one_of(*seqs, *([st.just("")] if node.optional else []))


explicit_phrases = st.sampled_from(EXPLICIT_PATTERNS).flatmap(lambda p: _readings(_parse(p)))
context = st.lists(st.sampled_from(NEGATION_CONTEXT), max_size=4).map(" ".join)


def test_the_data_has_explicit_phrases_to_check() -> None:
    assert len(EXPLICIT_PATTERNS) >= 100


@pytest.mark.parametrize("pattern", EXPLICIT_PATTERNS)
def test_every_explicit_phrase_survives_negations_in_the_clauses_around_it(pattern: str) -> None:
    phrase = _first_reading(_parse(pattern))
    assert detect(phrase) is not None, phrase
    for before, after in [
        ("Jeg vet ikke.", "ikke."),
        ("ikke,", ", mat og søvn er borte"),
        ("Jeg sover ikke. nei -", "- I don't know."),
        ("ingen\n", "\nikke"),
        ("orker ikke mer...", "... ingen"),
    ]:
        assert detect(f"{before} {phrase} {after}") is not None, (before, phrase, after)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    before=context,
    sep_before=st.sampled_from(SEPARATORS),
    phrase=explicit_phrases,
    sep_after=st.sampled_from(SEPARATORS),
    after=context,
)
def test_an_explicit_phrase_is_found_whatever_negations_stand_in_other_clauses(
    before: str, sep_before: str, phrase: str, sep_after: str, after: str
) -> None:
    assume(detect(phrase) is not None)  # a reading an exclude covers on its own ("jump in front")
    assert detect(f"{before}{sep_before} {phrase} {sep_after}{after}") is not None


# --- spelling variants -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        # æøå missing, written as ae/oe/aa or dropped
        "jeg vil do",
        "jeg vil doe",
        "tenker paa aa ta livet mitt",
        "tenker pa a ta livet mitt",
        "jeg vil ikke vaere her lenger",
        "jeg vil ikke vare her lenger",
        "eg vil ikkje vere her lenger",
        "skulle onske jeg var dod",
        "alle hadde hatt det bedre uten meg",
        # upper case
        "JEG VIL DØ",
        "ORKER IKKE MER",
        "I WANT TO KILL MYSELF",
        # one typo in a longer word
        "jeg har tenkt på sellvmord",
        "jeg har tenkt på selvmrod",
        "jeg har tenkt på selvmor",
        "jeg kuter meg",
        "jeg vil ta livet mitt",
        "i want to kill mysefl",
        "I feel suicdal",
        "orker ikke mer",
        "orkr ikke mer",
        # words run together
        "talivetmitt",
        "jeg vil talivetmitt",
        "killmyself",
        "i want to killmyself",
        "jegvilikkelevemer",
        "orkerikkemer",
        "endit all",
        # dialect and chat forms
        "æ orke itj mer",
        "i wanna kms",
    ],
)
def test_spelling_case_typo_and_run_together_variants_hit(text: str) -> None:
    assert detect(text) is not None, text


def test_normalise_folds_norwegian_letters_and_their_ascii_spellings_to_one_form() -> None:
    assert normalise("være") == normalise("vaere") == normalise("vare") == "vare"
    assert normalise("død") == normalise("doed") == normalise("dod") == "dod"
    assert normalise("må") == normalise("maa") == normalise("ma") == "ma"
    assert normalise("Ærlig talt, jeg ORKER ikke mer!!") == "arlig talt jeg orker ikke mer"
    assert normalise("I'm   can’t  don't") == "im cant dont"
    assert normalise("café naïve Ørsta") == "cafe naive orsta"


def test_most_severe_category_wins() -> None:
    assert category("jeg kutter meg og vil ta livet mitt") == "suicide"
    assert category("kjæresten slår meg og jeg vil dø") == "suicide"
    assert category("jeg kutter meg og har lyst til å drepe ham") == "harm_others"
    assert category("kjæresten slår meg og jeg kutter meg") == "self_harm"
    hit = detect("jeg orker ikke mer, jeg vil ta livet mitt")
    assert hit is not None and hit.kind == "explicit"  # explicit beats indirect


def test_hit_names_the_phrase_from_the_data_file() -> None:
    hit = detect("jeg vil ta livet mitt")
    assert isinstance(hit, RiskHit)
    assert (hit.category, hit.kind, hit.lang) == ("suicide", "explicit", "nb")
    assert "livet" in hit.phrase
    assert hit.category in CATEGORIES


# --- long and odd input (speed is measured in bench/risk_detector.py) --------------------


def _load_script(relative: str) -> types.ModuleType:
    """A script of the repository (eval/, bench/ are folders of scripts, not packages)."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


LONG_TEXTS = _load_script("bench/risk_detector.py").LONG  # the benchmark times the same texts


@pytest.mark.parametrize("text", LONG_TEXTS, ids=lambda t: t[:12])
def test_a_5000_character_message_is_handled(text: str) -> None:
    hit = detect(text)
    assert hit is None or isinstance(hit, RiskHit)


# --- the evaluation set -------------------------------------------------------------------


@functools.cache
def _evaluator() -> types.ModuleType:
    return _load_script("eval/evaluate_risk.py")


def test_the_eval_set_is_big_mixed_and_has_a_held_out_split() -> None:
    ev = _evaluator()
    rows = ev.load_rows()
    assert len(rows) >= 360
    assert sum(r.risk for r in rows) >= len(rows) / 3
    assert {r.lang for r in rows} == {"nb", "nn", "en"}
    assert {r.split for r in rows} == {"dev", "test", "blind2", "blind3", "blind4", *ev.HELD_OUT}
    assert ev.HELD_OUT == ("blind5", "blind6")
    hashed = [r for r in rows if r.split in ("dev", "test")]
    assert 0.2 <= sum(r.split == "test" for r in hashed) / len(hashed) <= 0.4
    # blind probe 4: written and scored before the phrases were changed for it
    blind = [r for r in rows if r.split == "blind2"]
    assert len(blind) >= 150
    assert sum(r.risk for r in blind) >= 60 and sum(not r.risk for r in blind) >= 90
    assert {r.lang for r in blind if r.risk} == {r.lang for r in blind if not r.risk} == {"nb", "nn", "en"}
    # blind probe 5: likewise, with at least 100 explicit risk messages
    blind5 = [r for r in rows if r.split == "blind3"]
    assert sum(r.kind == "explicit" for r in blind5) >= 100 and sum(not r.risk for r in blind5) >= 100
    for r in rows:
        if r.risk:
            assert r.category in CATEGORIES and r.kind in ("explicit", "indirect"), r.text
        else:
            assert r.category == "" and r.kind == "none", r.text
    assert len({r.text for r in rows}) == len(rows)


def test_the_eval_set_targets_hold_on_every_tuned_split() -> None:
    """Guards against regressions on what the phrases were written for. The held-out split
    (blind probe 6) is reported in eval/README.md, not asserted: it misses the targets."""
    ev = _evaluator()
    results = ev.run(ev.load_rows(split="tuned"))
    met = ev.targets_met(results)
    assert all(ok for _, _, ok in met.values()), {k: (r.value, t) for k, (r, t, _) in met.items()}
    assert met["sensitivity explicit"][0].value >= 0.98
    assert met["sensitivity indirect"][0].value >= 0.85
    assert met["specificity"][0].value >= 0.80


# --- properties ---------------------------------------------------------------------------

KNOWN_EXPLICIT = [
    "jeg vil ta livet mitt",
    "jeg skal ta livet av meg",
    "jeg har selvmordstanker",
    "jeg vil dø",
    "JEG VIL DØ",
    "jeg vil do",
    "jeg vil ikke leve mer",
    "eg vil ikkje leve lenger",
    "eg har sjølvmordstankar",
    "jeg vil drepe meg selv",
    "I want to kill myself",
    "i want to die",
    "I'm going to end it all",
    "I want to end my life",
    "I wish I was dead",
    "i feel suicidal",
    "talivetmitt",
    "killmyself",
    "jeg kutter meg",
    "I cut myself",
    "jeg kommer til å drepe ham",
]

surrounding = st.text(max_size=120)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=surrounding, phrase=st.sampled_from(KNOWN_EXPLICIT), after=surrounding)
def test_a_known_explicit_phrase_is_found_anywhere_in_any_text(before: str, phrase: str, after: str) -> None:
    assert detect(f"{before} {phrase} {after}") is not None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_normalise_is_idempotent_and_detect_never_fails(text: str) -> None:
    once = normalise(text)
    assert normalise(once) == once
    assert set(once) <= set("abcdefghijklmnopqrstuvwxyz0123456789 ")
    hit = detect(text)
    assert hit is None or hit.category in CATEGORIES or (hit.category, hit.kind) == ("possible", "learned")


# --- the data file is validated -----------------------------------------------------------


def _entry(**overrides: object) -> dict[str, object]:
    entry = {"lang": "nb", "category": "suicide", "kind": "explicit", "pattern": "vil dø"}
    entry.update(overrides)
    return entry


@pytest.mark.parametrize(
    "bad",
    [
        _entry(category="sad"),
        _entry(kind="maybe"),
        _entry(lang="sv"),
        _entry(pattern="(vil|skal dø"),
        _entry(pattern="vil dø)"),
        _entry(pattern="* dø"),
        _entry(pattern="vil *"),
        _entry(pattern="[bare]"),
        _entry(pattern="vil (dø)?"),
        _entry(pattern="(unclosed", regex=True),
        _entry(pattern="(capturing) group", regex=True),
    ],
)
def test_a_bad_entry_is_rejected_with_a_clear_error(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        compile_data({"entry": [bad]})


def test_the_mini_language() -> None:
    data = compile_data(
        {
            "entry": [
                _entry(pattern="(ta|tar) livet (mitt|av meg)"),
                _entry(pattern="samlet * piller", kind="indirect"),
                _entry(pattern="selvmord*"),
                _entry(pattern="[jeg] vil [bare] dø"),
            ],
            "exclude": [{"pattern": "ta livet lett"}],
        }
    )
    regexes = [e.spaced for e in data.entries]

    def hits(text: str) -> bool:
        return any(r.search(normalise(text)) for r in regexes)

    assert hits("tar livet av meg") and hits("talivetmitt")
    assert hits("samlet på piller") and hits("samlet opp mange piller") and hits("samlet piller")
    assert not hits("samlet på frimerker og noen gamle piller")  # more than three words between
    assert hits("selvmordstanker") and not hits("uselvmord")
    assert hits("vil dø") and hits("jeg vil bare dø") and not hits("vil dokumentere")
    assert data.exclude.search("jeg skal ta livet lett")


@pytest.mark.parametrize(
    "text", ["jeg kunne drepe meg selv", "Jeg kunne drept meg selv", "jeg vet ikke 😔 selvmordstanker"]
)
def test_idiom_and_emoji_do_not_hide_explicit_risk(text):
    assert detect(text) is not None


# --- added with blind probe 4 (split blind2) ----------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "i want to dieeee",  # letters stretched for emphasis
        "jeg vil døøøø",
        "killlll myself",
        "selvmordddd",
        "e kutte mæ igjen",  # northern 'mæ' = meg
        "æ vil ta livet av mæ",
        "eg vil ikkje leva lenger",  # nynorsk a-infinitive
        "eg ser inga meining med å leve lenger",
        "detblirbestomjegbaredør",
        "jeg har en plan",
        "I have a plan and I know when",
        "eg har ein plan for korleis eg skal gjere det",
        "jeg har en plan for i kveld",
        "jeg fortjener ikke å leve",
        "I don't deserve to live",
        "har aldri tenkt på selvmord før nå",  # not a denial: 'before now'
        "I've never thought about suicide before but now I do",
        "jeg har aldri tenkt på å ta livet mitt før, men nå vil jeg dø",
        "jeg tør ikke kutte meg",  # 'ikke' here is no denial
        "I'm not going to kill myself",  # only 'hurt/harm myself' is read as a denial
        "jeg vil ikke skade meg selv mer",  # an optional word in a denial must not hide 'mer'
        "jeg har aldri tenkt på å ta livet mitt før",
        "har aldri tenkt på å drepe meg selv før",
        "I've never thought about taking my own life before",
        "I'm not going to hurt myself again",
    ],
)
def test_blind_probe_4_forms_hit(text: str) -> None:
    assert detect(text) is not None, text


@pytest.mark.parametrize(
    "text",
    [
        "soooo tired",
        "jeg har aldri tenkt på å ta livet mitt, bare sliten",
        "har aldri tenkt på selvmord",
        "I've never thought about taking my own life",
        "I'm not going to hurt myself, I just need someone to talk to",
        "jeg har ikke skadet meg selv på to år og er stolt av det",
        "jeg har en plan for eksamenslesingen",
        "I have a plan for the weekend",
        "jeg har en plan klar for helga",
        "dette er siste melding fra meg i dag, snakkes i morgen",
        "this is goodbye to summer",
        "broren min begikk selvmord i fjor",
        "my sister attempted suicide last year, how do I support her?",
        "denne hodepina tar livet av meg",
        "ingen kommer til å savne den gamle sofaen",
        "I feel trapped in this job",
    ],
)
def test_blind_probe_4_non_risk_forms_stay_quiet(text: str) -> None:
    assert detect(text) is None, text

"""Hand-written rules for acts under way: the one answer that must never wait for a model.

An act is *acute* when a means meets an act in the present or the just-past, for the writer
or for someone they are with (issue 29): pills or poison taken in quantity, cutting that
bleeds, standing at an edge, a railing, a platform or the water with death in mind, a rope,
exhaust, charcoal or a gun set up or in hand, someone unconscious after pills. Each rule reads
the concepts of one sentence (``risk_features.Sentence``) and its neighbours in the window,
and stands down for what cancels it: the past ("for ti år siden"), a habit ("hver gang"),
a hypothetical question ("hva skjer hvis …"), medicine as prescribed, a film, game or hobby,
or a negation of the act itself.

The rules only ever *add* an acute alert; everything else (explicit, possible, none) is the
learned stage's call (``flows/risk_model.py``). A rule returns its name as the cue, so the
log says which rule fired, never the citizen's words.
"""

from __future__ import annotations

from dataclasses import dataclass

from flows.risk_features import MEANS, RISK_ACTS, Sentence
from flows.risk_lexicon import CLAUSE

_STAND_DOWN = frozenset(
    {"past_long", "resolved", "media", "hobby", "leisure", "prescribed", "habit", "joke", "profession"}
)
# A hobby or an everyday errand (climbing, a camera, the commute, a treehouse) stands a rule
# down only when nothing in the window speaks of death, a goodbye or a last time: "lit the
# disposable bbq inside the tent … one last time" is not camping.
_SOFT = frozenset({"hobby", "leisure"})
_MEANS = frozenset(MEANS)
_NO_JOKE = frozenset({"number", "overdose", "bleed", "unconscious", "beyond"})
_PLACE_OR_HIGH = frozenset({"means_height", "means_train", "means_water", "beyond"})
_STRONG = frozenset(
    {
        *(set(RISK_ACTS) - {"selfharm", "kill"}),
        "finality",
        "goodbye",
        "letter",
        "overdose",
        "unconscious",
    }
)
_DRUG = frozenset({"means_med", "means_poison"})
_PLACE = frozenset({"means_height", "means_train", "means_water"})
_DEATH = frozenset({*RISK_ACTS, "finality", "goodbye", "hopeless", "overdose"})


@dataclass(frozen=True)
class Acute:
    rule: str
    poisoning: bool
    about: str  # self | other


_ACT_WORDS = frozenset({*_DRUG, *_PLACE, "took", "position", "means_rope", "means_gun", "means_exhaust"})


def _about(s: Sentence) -> str:
    """Other when the act is someone else's: the subject nearest before the first word of the
    act ("samboeren sitter i bilen …, jeg står utenfor") is a named person or he/she; else a
    third person as subject or reflexive, or a named person, and the writer not the subject."""
    c = s.concepts
    persons = {"i_subject", "other_subject", "other_person"}
    first = next((i for i, t in enumerate(s.tags) if t & _ACT_WORDS and not t & persons), None)
    if first is not None:
        for k in range(first, -1, -1):
            t = s.tags[k]
            if "i_subject" in t:
                return "self"
            if t & {"other_subject", "other_person"} and not t & {"self"}:
                return "other"
    if "i_subject" in c and "reflexive_other" not in c and "other_subject" not in c:
        return "self"
    if c & {"other_subject", "reflexive_other", "other_person"}:
        return "other"
    return "self"


def _strong(window: list[Sentence]) -> bool:
    """Death, a goodbye or a last time named by some word that is not itself a place or a
    means ("stupet" is a cliff, not a jump)."""
    return any(t & _STRONG and not t & _MEANS for s in window for t in s.tags)


def acute(window: list[Sentence]) -> Acute | None:
    """The first acute act in the window's first sentence (read with the rest of the window
    for context), or None."""
    if not window:
        return None
    s = window[0]
    c = s.concepts
    context: set[str] = set()
    for w in window:
        context |= w.concepts
    if c & (_STAND_DOWN - _SOFT - {"joke"}) or "hypothetical" in c:
        return None
    if "joke" in c and not c & _NO_JOKE:  # "tok 40 paracet 💀" is no joke
        return None
    if c & _SOFT and not _strong(window):
        return None
    if context & {"past_long", "resolved"}:
        return None
    neg = s.negated
    took = "took" in c and "took" not in neg
    if c & _DRUG and took:
        strong = (
            c & {"quantity", "overdose", "unconscious"}
            or "number" in c
            or context & (_DEATH | {"unconscious"})
        )
        if strong or context & {"symptom", "substance"}:
            return Acute("poison_taken", True, _about(s))
    if "means_poison" in c and took and "means_poison" not in neg:  # weedkiller, antifreeze
        return Acute("poison_taken", True, _about(s))
    if "overdose" in c and took:
        return Acute("overdose_taken", True, _about(s))
    if "selfharm" in c and "bleed" in c and "bleed" not in neg and (took or c & {"now", "just_past"}):
        return Acute("cut_bleeding", False, _about(s))
    if (
        c & {"means_blade", "selfharm"}
        and "bleed" in context
        and "bleed" not in neg
        and (not context & _SOFT or _strong(window))  # the knife slipped while cooking
        and c & {"position", "symptom", "now", "quantity"}
    ):
        return Acute("blade_bleeding", False, _about(s))
    if (
        "jump" in c
        and took
        and c & (_PLACE | {"means_height"})
        and c & {"other_person", "other_subject"}
        and context & {"unconscious", "help", "now", "just_past", "fear"}
    ):
        return Acute("other_jumped", False, "other")
    if c & _PLACE and "position" in c and context & (_DEATH | {"now"}) and context & _DEATH:
        if "future" not in c or "now" in c:
            return Acute("at_edge", False, _about(s))
    if (
        "drown" in c
        and "drown" not in neg
        and context & {"means_water", "position"}
        and c & {"now", "position", "took", "just_past"}
        and "future" not in c - {"now"}
    ):
        return Acute("in_the_water", False, _about(s))
    if "beyond" in c and "beyond" not in neg and context & _PLACE_OR_HIGH and "future" not in c - {"now"}:
        return Acute("beyond_the_edge", False, _about(s))
    if (
        "means_rope" in c
        and (c & {"hang", "position"})
        and (took or c & {"now", "position"})
        and "future" not in c
    ):
        return Acute("rope_set_up", False, _about(s))
    if (
        "means_exhaust" in c
        and c & {"means_vehicle", "position", "now"}
        and len(c & {"means_exhaust", "means_vehicle", "position"}) >= 2
    ):
        if context & (_DEATH | {"now", "just_past"}) and "future" not in c:
            return Acute("exhaust_set_up", False, _about(s))
    if "means_charcoal" in c and c & {"position", "now"} and context & _DEATH and "future" not in c:
        return Acute("charcoal_set_up", False, _about(s))
    if (
        "means_gun" in c
        and "position" in c
        and c & {"now", "position"}
        and context & _DEATH
        and ("future" not in context or "now" in c)
    ):
        return Acute("gun_in_hand", False, _about(s))
    means_here = c & (_DRUG | {"means_rope", "means_gun", "means_blade"})
    if (
        means_here
        and "position" in c
        and context & {"goodbye", "letter", "finality"}
        and "future" not in c - {"now"}
    ):
        return Acute("means_at_hand_goodbye", bool(c & _DRUG), _about(s))
    if "unconscious" in c and (c & _DRUG or took) and c & {"other_person", "other_subject"}:
        return Acute("other_unconscious", True, "other")
    return None


_ANCHORS = frozenset(
    {
        *RISK_ACTS,
        "overdose",
        "unconscious",
        "finality",
        "goodbye",
        "letter",
        "hopeless",
        "burden",
        "violence",
        "fear",
        "decided",
        "giveaway",
        "affairs",
        "search",
        "wish",
        "help",
    }
)


def anchored(window: list[Sentence]) -> bool:
    """Whether the window names anything that speaks of risk at all: a death, an act, harm,
    finality, hopelessness, fear, a decision. A means or a place alone ("sitting on the edge
    at Reinebringen, Lofoten is unreal") is not enough for the learned stage to alert on."""
    return any(s.concepts & _ANCHORS or "live" in s.negated for s in window)


def cancelled(window: list[Sentence]) -> str | None:
    """A name for what cancels the whole window, or None:

    * "past": the window speaks of the past or of recovery ("for ti år siden", "years ago …
      better now") and nowhere of again, a plan, a decision or the just-past;
    * "medicine": medicine taken and nothing alarming with it: no quantity, no symptom, no
      alcohol, nothing that speaks of risk ("just took my evening meds");
    * "joke": a joke marker with a hypothetical ("if I have to sit through one more meeting
      I'll jump out the window lol") and nothing taken or decided.

    Everything subtler (denials, professions, idioms) is the learned stage's call."""
    concepts: set[str] = set()
    for s in window:
        concepts |= s.concepts
    if concepts & {"past_long", "resolved"} and not concepts & {"again", "future", "just_past", "decided"}:
        return "past"
    if (
        concepts & _DRUG
        and "took" in concepts
        and concepts & {"self", "prescribed"}
        and not concepts & _ALARMING
    ):
        return "medicine"
    if "joke" in concepts and "hypothetical" in concepts and not concepts & {"took", "just_past", "decided"}:
        return "joke"
    return None


_ALARMING = frozenset(
    {
        *_ANCHORS,
        "quantity",
        "number",
        "symptom",
        "substance",
        "unconscious",
        "overdose",
        "bleed",
        "means_blade",
        "means_rope",
        "means_gun",
        "means_height",
        "means_train",
        "means_water",
        "means_exhaust",
        "means_charcoal",
    }
)
_FLOOR_CANCELS = frozenset(
    {
        *_STAND_DOWN,
        "idiom",
        "hypothetical",
        "question",
        "other_person",
        "other_subject",
        "reflexive_other",
    }
)


def explicit(window: list[Sentence]) -> str | None:
    """Suicide or self-harm named in the window's first sentence, not negated, with nothing
    there that could make it someone else's, a question, the past, a joke or a profession:
    "selvmordstankene er der hele tiden". The learned stage is not asked to agree."""
    s = window[0]
    c = s.concepts
    named = c & {"suicide", "selfharm"}
    if named == {"selfharm"} and not c & {"self", "i_subject"}:
        return None  # "tiny cut": a cut is self-harm only when it is the writer's own
    if named and not named <= s.negated and not c & _FLOOR_CANCELS:
        return "named_" + min(named)
    return None


_ORKE = frozenset({"orke", "orker", "orkar", "orka", "orkr", "gidder", "orkje"})
_MORE = frozenset({"mer", "more", "anymore", "lenger", "lengre"})


def worn_out(window: list[Sentence]) -> bool:
    """ "Orker ikke mer" in the window's first sentence, with nothing that cancels it: the
    commonest Norwegian way to say one cannot go on. Never an alert by itself, but never
    nothing either: at least the direct question ("i dag hei jeg orker ikke mer")."""
    s = window[0]
    if s.concepts & _FLOOR_CANCELS:
        return False
    w = s.words
    for i, word in enumerate(w):
        if word not in _ORKE:
            continue
        for k in range(i + 2, min(len(w), i + 5)):
            if w[k] in _MORE and "ikke" in w[i + 1 : k]:
                nxt = w[k + 1] if k + 1 < len(w) else CLAUSE
                # "orker ikke mer kaffe" is about the coffee: only nothing, a pause or a
                # small word may follow
                return nxt == CLAUSE or nxt in _SMALL or nxt.isdigit()
    return False


_SMALL = frozenset(
    "i na no nu altsa hei egentlig jeg eg e det dette alt livet a og men sa bare berre hello today "
    "honestly ok okay now really".split()
)

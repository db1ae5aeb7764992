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

from flows.risk_features import RISK_ACTS, Sentence

_STAND_DOWN = frozenset(
    {"past_long", "resolved", "media", "hobby", "prescribed", "habit", "joke", "profession"}
)
_DRUG = frozenset({"means_med", "means_poison"})
_PLACE = frozenset({"means_height", "means_train", "means_water"})
_DEATH = frozenset({*RISK_ACTS, "finality", "goodbye", "hopeless", "overdose"})


@dataclass(frozen=True)
class Acute:
    rule: str
    poisoning: bool
    about: str  # self | other


def _about(s: Sentence) -> str:
    """Other when the act is someone else's: a third person as subject or reflexive, or a
    named person, and the writer not the subject."""
    c = s.concepts
    if "i_subject" in c and "reflexive_other" not in c and "other_subject" not in c:
        return "self"
    if c & {"other_subject", "reflexive_other", "other_person"}:
        return "other"
    return "self"


def acute(window: list[Sentence]) -> Acute | None:
    """The first acute act in the window's first sentence (read with the rest of the window
    for context), or None."""
    if not window:
        return None
    s = window[0]
    c = s.concepts
    if c & _STAND_DOWN or "hypothetical" in c:
        return None
    context: set[str] = set()
    for w in window:
        context |= w.concepts
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
    if "overdose" in c and took:
        return Acute("overdose_taken", True, _about(s))
    if "selfharm" in c and "bleed" in c and "bleed" not in neg and (took or c & {"now", "just_past"}):
        return Acute("cut_bleeding", False, _about(s))
    if c & _PLACE and "position" in c and context & (_DEATH | {"now"}) and context & _DEATH:
        if "future" not in c or "now" in c:
            return Acute("at_edge", False, _about(s))
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
        and "future" not in c
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
    if named and not named <= s.negated and not c & _FLOOR_CANCELS:
        return "named_" + min(named)
    return None

"""Judging a free-text message for risk: alert (acute or not), ask, or none.

Every free-text message a citizen writes goes through :func:`judge` (issue 29). It answers
one of four ways:

* **alert, acute**: an act under way or just happened, for the writer or someone they are
  with (pills taken, cutting that bleeds, at an edge, rope or exhaust set up ...): the flow
  says "call 113 now" first, with Giftinformasjonen when ``poisoning``;
* **alert**: explicit risk (intent, plan, method, a date, self-harm, intent to hurt someone),
  or concern about someone else's risk (``about == "other"``);
* **ask**: a possible signal (hopelessness, burden, goodbyes, giving things away, searching
  for means, passive wishes): the flow asks directly about thoughts of suicide;
* **none**: no risk, or risk that is cancelled (the past, a denial, a profession, a joke, a
  game, a song, medicine as prescribed, an idiom).

How. The message is read as sentences whose words are tagged with what they are about
(``risk_lexicon``, ``risk_features``). Every window of sentences that starts at a sentence is
judged on its own, and the most severe answer wins: nothing written before a risk can hide
it. In each window, hand-written rules (``risk_rules``) catch acts under way; a learned stage
(``risk_model``, weights trained with scikit-learn and shipped as JSON) decides the rest.
Standard library only at run time; a typical message costs well under a millisecond.

:func:`detect` and :class:`RiskHit` are the older yes/no interface, kept as a thin wrapper
for callers not yet moved to :func:`judge`.
"""

from __future__ import annotations

from dataclasses import dataclass

from flows import risk_model, risk_rules
from flows.risk_features import Sentence, features, read, subject, windows
from flows.risk_lexicon import CLAUSE, lexicon, normalise

__all__ = [
    "CATEGORIES", "NO_RISK", "RiskHit", "RiskJudgement",
    "detect", "judge", "model_text", "normalise", "warm_up",
]  # fmt: skip

CATEGORIES = ("suicide", "self_harm", "harm_others", "crisis", "possible")
_DRUG = frozenset({"means_med", "means_poison", "overdose"})


@dataclass(frozen=True)
class RiskJudgement:
    """What a message calls for. ``cue`` names the rule or "model" that decided it, never
    the citizen's words, so it can be logged."""

    action: str  # "alert" | "ask" | "none"
    acute: bool  # an act under way or just happened (then action == "alert")
    about: str  # "self" | "other"
    category: str | None  # suicide | self_harm | harm_others | crisis | possible; None for none
    poisoning: bool  # overdose / poison / pills taken: the reply adds Giftinformasjonen
    cue: str

    @property
    def risk(self) -> bool:
        return self.action != "none"


NO_RISK = RiskJudgement("none", False, "self", None, False, "")


@dataclass(frozen=True)
class RiskHit:
    """The older yes/no answer (compatibility): ``kind`` is acute, explicit or indirect,
    ``phrase`` the cue."""

    category: str
    kind: str
    lang: str
    phrase: str


def warm_up() -> None:
    """Load the lexicon and the model now rather than on the first citizen's message."""
    lexicon()
    risk_model.model()
    judge("warm up")


def _severity(j: RiskJudgement) -> int:
    return {"none": 0, "ask": 1, "alert": 2}[j.action] + (1 if j.acute else 0)


def _poisoning(window: list[Sentence]) -> bool:
    """Pills, poison or an overdose taken, in some sentence of the window."""
    return any(s.concepts & _DRUG and s.concepts & {"took", "overdose"} for s in window)


_UNDER_WAY = frozenset({"took", "position", "now", "just_past", "bleed", "unconscious", "hang"})


def _under_way(window: list[Sentence]) -> bool:
    """Some word of the window speaks of the present or the just-past act: the learned acute
    head alone never makes a message acute."""
    return any(s.concepts & _UNDER_WAY for s in window)


def _about(window: list[Sentence], p_other: float, threshold: float) -> str:
    """Other when the learned head says so, or when the sentence that speaks of risk has
    someone else as its subject and the head does not rule it out."""
    who = next((w for w in map(subject, window) if w), None)
    if p_other >= threshold or (who == "other" and p_other >= threshold / 2):
        return "other"
    return "self"


def _judge_window(window: list[Sentence], model: risk_model.RiskModel | None) -> RiskJudgement:
    rule = risk_rules.acute(window)
    probs: dict[str, dict[str, float]] = {}
    if model is not None:
        feats = features(window)
        probs = {name: head.probabilities(feats) for name, head in model.heads.items()}

    def category(default: str) -> str:
        cat = probs.get("category")
        if not cat:
            return default
        best = max(cat, key=cat.__getitem__)
        return best if cat[best] >= 0.3 else default

    if rule is not None:
        cat = "crisis" if rule.about == "other" else category("suicide")
        return RiskJudgement("alert", True, rule.about, cat, rule.poisoning or _poisoning(window), rule.rule)
    if risk_rules.cancelled(window):
        return NO_RISK
    named = risk_rules.explicit(window)
    floor = NO_RISK
    if named:
        cat = "self_harm" if named == "named_selfharm" else "suicide"
        floor = RiskJudgement("alert", False, "self", cat, _poisoning(window), named)
    elif risk_rules.worn_out(window):
        floor = RiskJudgement("ask", False, "self", "possible", False, "worn_out")
    if model is None:
        return floor
    t = model.thresholds
    p_alert, p_risk = probs["alert"]["alert"], probs["risk"]["risk"]
    about = _about(window, probs["about"]["other"], t["about"])
    if p_alert >= t["alert"] or p_risk >= t.get("sure", 1.0):
        verdict = "alert"
    elif p_risk >= t["ask"]:
        # concern for someone else is never a question about the writer's own thoughts
        verdict = "alert" if about == "other" else "ask"
    else:
        return floor
    if verdict == "alert" and about == "self" and any("joke" in s.concepts for s in window):
        verdict = "ask"  # "lol", "haha", 😂: the model alone never alerts on a joke
    acute = verdict == "alert" and probs["acute"]["acute"] >= t["acute"] and _under_way(window)
    cat = category("possible" if verdict == "ask" else "suicide")
    poisoning = _poisoning(window) and (acute or verdict == "alert")
    if floor.action == "alert" and verdict != "alert":
        return floor
    return RiskJudgement(verdict, acute, about, cat, poisoning, "model")


def judge(text: str) -> RiskJudgement:
    """The most severe answer over every window of the message (see the module doc)."""
    if not text or not text.strip():
        return NO_RISK
    sents = read(text)
    if not sents:
        return NO_RISK
    model = risk_model.model()
    best = NO_RISK
    seen: dict[tuple[int, ...], RiskJudgement] = {}  # a repeated run of sentences is judged once
    for window in windows(sents):
        key = tuple(map(id, window))  # read_sentence is cached: equal sentences are one object
        j = seen.get(key)
        if j is None:
            j = seen[key] = _judge_window(window, model)
        if _severity(j) > _severity(best):
            best = j
        if best.acute and best.cue != "model":
            break  # a rule found an act under way: nothing is more severe
    return best


def detect(text: str) -> RiskHit | None:
    """Compatibility: a RiskHit when :func:`judge` finds risk, else None."""
    j = judge(text)
    if not j.risk:
        return None
    kind = "acute" if j.acute else ("explicit" if j.action == "alert" else "indirect")
    return RiskHit(j.category or "possible", kind, "", j.cue)


def model_text(text: str) -> str:
    """The text as the detector reads it: normalised sentences joined by spaces."""
    return " ".join(" ".join(w for w in s.words if w != CLAUSE) for s in read(text))

"""What a message is about, as features: the input of the rules and of the learned stage.

A message is read as sentences (``risk_lexicon.sentences``); each sentence becomes a
:class:`Sentence`: its words, their lemmas, and the concepts each word carries (means, acts,
time, person, finality, cancellers; ``flows/data/risk_lexicon.toml``). A *window* is a run of
consecutive sentences; the detector judges every window that starts at a sentence (up to
``WINDOW`` sentences long) and keeps the most severe answer. So nothing written *before* a
risk (a denial, small talk, a question of the screening) can talk the detector out of it,
while what follows in the same window (“… but that was ten years ago”) can still cancel it.

:func:`features` turns a window into the sparse binary features of the learned stage:

* ``k:<concept>`` the concepts present; ``p:<a>+<b>`` two concepts in one sentence;
  ``q:<a>+<b>`` two concepts in the window; ``n:<concept>`` a concept in the scope of a
  negation (up to four words after it);
* ``f:<name>`` composite facts the rules use too (means + an act just done, …);
* ``w:<lemma>`` and ``b:<lemma> <lemma>`` word uni- and bigrams, so the model can learn
  wordings the lexicon does not know.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from flows.risk_lexicon import CLAUSE, lemma, lexicon, sentences

WINDOW = 6  # sentences per window: a short message is read whole, a long one in parts
_ANSWERED_NO = 8  # words: a sentence this short ending in a negation is answered no
_NEG_SCOPE = (
    6  # words after a negation that it covers ("ikke lyst til å dø", "no thoughts of ending my life")
)
MEANS = (
    "means_med", "means_poison", "means_rope", "means_gun", "means_exhaust", "means_charcoal",
    "means_height", "means_water", "means_train", "means_blade", "means_vehicle",
)  # fmt: skip
RISK_ACTS = ("die", "suicide", "kill", "selfharm", "jump", "hang", "drown")
_SIGNALS = frozenset(
    {
        "suicide",
        "die",
        "finality",
        "goodbye",
        "letter",
        "giveaway",
        "affairs",
        "hopeless",
        "burden",
        "means_med",
        "means_poison",
        "means_rope",
        "means_gun",
        "means_height",
        "means_train",
        "means_water",
        "took",
        "unconscious",
    }
)
CANCELLERS = (
    "past_long", "resolved", "joke", "profession", "media", "hobby", "leisure", "prescribed", "idiom",
)  # fmt: skip


@dataclass(frozen=True)
class Sentence:
    words: tuple[str, ...]
    lemmas: tuple[str, ...]
    tags: tuple[frozenset[str], ...]
    concepts: frozenset[str]
    negated: frozenset[str]  # concepts inside a negation's scope
    joke: bool  # ended with a laughing emoji
    feats: frozenset[str] = field(default=frozenset())


@lru_cache(maxsize=8192)
def read_sentence(norm: str, joke: bool) -> Sentence:
    """One normalised sentence, tagged. Cached: chats repeat themselves."""
    lex = lexicon()
    words = lex.words(norm)
    tags = lex.tag(words)
    lemmas = tuple(lemma(w) for w in words)
    concepts: set[str] = set().union(*tags) if tags else set()
    if joke:
        concepts.add("joke")
    if any(w.isascii() and w.isdigit() and len(w) <= 3 and 5 <= int(w) <= 500 for w in words):
        concepts |= {"number", "quantity"}
    negated: set[str] = set()
    if tags and "neg" in tags[-1] and len(tags) <= _ANSWERED_NO:
        # a short sentence answered with a closing "none"/"nei": "thoughts of self-harm none"
        negated |= concepts - {"neg", "self"}
    for i, t in enumerate(tags):
        if "neg" in t:
            for k in range(i + 1, min(len(tags), i + 1 + _NEG_SCOPE)):
                if words[k] == CLAUSE:
                    break
                negated |= tags[k] - {"neg", "self"}
    s = Sentence(
        tuple(words), lemmas, tuple(frozenset(t) for t in tags), frozenset(concepts), frozenset(negated), joke
    )
    return Sentence(s.words, s.lemmas, s.tags, s.concepts, s.negated, joke, frozenset(_sentence_features(s)))


def read(text: str) -> list[Sentence]:
    """The message as tagged sentences."""
    return [read_sentence(norm, joke) for norm, joke in sentences(text)]


def windows(sents: list[Sentence]) -> list[list[Sentence]]:
    """Every run of up to WINDOW sentences that starts at a sentence, and also at each clause
    of a sentence ("i dag hei - jeg orker ikke mer - hei"): what comes before a clause break
    cannot hide it either, while what follows it still can cancel it."""
    out = []
    for i, s in enumerate(sents):
        out.append(sents[i : i + WINDOW])
        if CLAUSE in s.words:
            rest = sents[i + 1 : i + WINDOW]
            cuts = [k for k, w in enumerate(s.words) if w == CLAUSE]
            n = len(s.words)
            for a in [-1, *cuts]:
                for b in [*cuts, n]:
                    if b <= a + 1 or (a, b) == (-1, n):
                        continue
                    # a clause run is judged alone when what follows it cancels nothing
                    # ("… - i dag hei"); what follows a cut that does cancel stays with it
                    if b < n and any(t & _TAIL_CANCELS for t in s.tags[b + 1 :]):
                        continue
                    part = " ".join(s.words[a + 1 : b]).strip(f" {CLAUSE}")
                    if part:
                        out.append([read_sentence(part, s.joke and b == n), *(rest if b == n else ())])
    return out


_TAIL_CANCELS = frozenset({*CANCELLERS, "neg", "hypothetical", "question", "habit", "other_subject"})


def facts(s: Sentence) -> set[str]:
    """Composite facts of one sentence, named for the rules and the model alike."""
    c = s.concepts
    out: set[str] = set()
    means = {m for m in MEANS if m in c}
    drug = "means_med" in c or "means_poison" in c
    if drug and "took" in c and "took" not in s.negated:
        out.add("drug_taken")
        if c & {"quantity", "now", "just_past", "unconscious", "symptom"}:
            out.add("drug_taken_now")
    if drug and c & {"quantity"} and c & {"search"}:
        out.add("drug_search")
    if "selfharm" in c and "bleed" in c:
        out.add("cut_bleeding")
    if means & {"means_height", "means_train", "means_water"} and "position" in c:
        out.add("at_height")
    if means & {"means_rope", "means_exhaust", "means_charcoal", "means_gun"} and c & {
        "position",
        "now",
        "hang",
    }:
        out.add("means_set_up")
    if means and c & {"intent", "future"}:
        out.add("means_intent")
    if means and c & set(RISK_ACTS):
        out.add("means_act")
    if c & {"goodbye", "letter", "finality"} and means:
        out.add("goodbye_means")
    if c & {"other_person", "third_person"} and c & (set(RISK_ACTS) | {"took"}):
        out.add("other_risk")
    if "unconscious" in c and (drug or means):
        out.add("other_unconscious")
    if "live" in s.negated or ("live" in c and "neg" in c and c & {"wish", "intent", "future"}):
        out.add("not_live")
    if "die" in c and c & {"wish", "intent"} and "die" not in s.negated:
        out.add("wish_dead")
    if c & {"other_person", "other_subject", "reflexive_other"} and c & _SIGNALS:
        out.add("other_signal")
    if c & {"letter", "affairs", "finality", "goodbye", "giveaway"} and c & {"future", "weekday", "number"}:
        out.add("final_plan")
    if means and c & {"search", "quantity", "number", "overdose"}:
        out.add("means_gathered")
    if (
        c & {"kill", "violence"}
        and c & {"other_subject", "other_person", "third_person"}
        and c & {"intent", "future", "wish"}
    ):
        out.add("intent_harm")
    if "decided" in c and (
        means or c & {"future", "weekday", "finality", "suicide", "die", "letter", "affairs"}
    ):
        out.add("decided_plan")
    if "body" in c and (c & {"selfharm", "means_blade", "bleed"}):
        out.add("body_harm")
    if means and c & {"search", "affairs", "giveaway", "letter"} and not c & set(CANCELLERS):
        out.add("means_prepared")
    if c & set(CANCELLERS):
        out.add("cancel")
    if "self" in c and c & set(RISK_ACTS) and not (c & set(RISK_ACTS)) <= s.negated:
        out.add("self_act")
    return out


_RISK_WORDS = frozenset(
    {
        *RISK_ACTS,
        "took",
        "live",
        "finality",
        "goodbye",
        "letter",
        "giveaway",
        "hopeless",
        "overdose",
        "unconscious",
    }
)
_OBJECT_SELF = frozenset({"meg", "me", "us", "oss"})


def subject(s: Sentence) -> str | None:
    """Whose act or state a sentence speaks of: the subject nearest before its first risk word,
    "self" (jeg, eg, I …) or "other" (han, hun, she, my daughter …); None when it names none.
    A risk word whose object is "meg"/"me" ("han truer med å drepe meg") is about the writer."""
    for i, t in enumerate(s.tags):
        if not t & _RISK_WORDS:
            continue
        if _OBJECT_SELF & set(s.words[i + 1 : i + 3]):
            return "self"
        for k in range(i - 1, -1, -1):
            before = s.tags[k]
            if "i_subject" in before:
                return "self"
            if before & {"other_subject", "other_person"}:
                return "other"
        if "reflexive_other" in s.concepts:
            return "other"
        return None
    return None


def _sentence_features(s: Sentence) -> set[str]:
    out = {f"k:{c}" for c in s.concepts}
    who = subject(s)
    if who:
        out.add(f"s:{who}")
    out |= {f"n:{c}" for c in s.negated}
    out |= {f"f:{f}" for f in facts(s)}
    cs = sorted(s.concepts)
    out |= {f"p:{a}+{b}" for i, a in enumerate(cs) for b in cs[i + 1 :]}
    lem = s.lemmas
    out |= {f"w:{w}" for w in lem}
    out |= {f"b:{a} {b}" for a, b in zip(lem, lem[1:], strict=False)}
    for w in s.words:
        out.update(_char_grams(w))
    return out


@lru_cache(maxsize=65536)
def _char_grams(word: str) -> tuple[str, ...]:
    """Character 4-grams of a word with its edges: spelling variants the lexicon lacks."""
    padded = f" {word} "
    return tuple(f"c:{padded[i : i + 4]}" for i in range(len(padded) - 3))


def features(window: list[Sentence]) -> set[str]:
    """The learned stage's features of one window."""
    out: set[str] = set()
    concepts: set[str] = set()
    for s in window:
        out |= s.feats
        concepts |= s.concepts
    if len(window) > 1:
        cs = sorted(concepts)
        out |= {f"q:{a}+{b}" for i, a in enumerate(cs) for b in cs[i + 1 :]}
    return out


def message_features(text: str) -> set[str]:
    """Features of the whole message read as one window (for training)."""
    sents = read(text)
    return features(sents[:WINDOW] if len(sents) <= WINDOW else sents)

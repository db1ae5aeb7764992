"""Text -> sentences of words, each word tagged with what it is about.

The risk detector judges what a message is *about* (a means, an act and its time, a person,
finality, a canceller), not how it is worded. This module does the reading:

* :func:`normalise` folds case and letters (æ/ae -> a, ø/oe -> o, å/aa -> a; other accents
  dropped; apostrophes removed), so "DØ", "do" and "doe" meet, and text typed without æøå
  reads like text typed with them;
* :func:`sentences` cuts a message at sentence ends (. ! ? ; line breaks, emoji), because
  what one sentence says (a denial, a joke, the past) must not cancel the next;
* :func:`lemma` is a small suffix-stripping lemmatiser for Norwegian (bokmål, nynorsk,
  dialect) and English: "pillene", "piller", "pills" -> "pill"; it is applied to the text
  and to the lexicon alike, so the lexicon lists a word once, not every form;
* :class:`Lexicon` tags each word with the concepts of ``flows/data/risk_lexicon.toml``
  (single words, stems ending in ``*``, and runs of several words), after dialect and
  chat spellings are mapped to one standard word and one typo in a long word is corrected.

Standard library only; the lexicon is compiled once (:func:`lexicon`).
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import cast

DATA_FILE = Path(__file__).resolve().parent / "data" / "risk_lexicon.toml"

_FOLD = {"æ": "a", "ä": "a", "ø": "o", "ö": "o", "œ": "o", "å": "a", "ß": "ss", "ð": "d", "þ": "th"}
_SPECIAL = re.compile("[" + "".join(_FOLD) + "]")
_COMBINING = re.compile("[\u0300-\u036f]+")
_WORD = re.compile(r"[a-z0-9]+")
_DIGRAPH = re.compile(r"a[ae]+|oe+")
_APOSTROPHES = re.compile("['`\u2019\u2018\u00b4\u02bc\u2032]")
# Where a sentence ends: . ! ? ; ellipsis, line breaks, and emoji (a pictograph usually
# closes what was said before it). Commas and dashes do not end a sentence here.
_SENTENCE_END = re.compile(
    "[.!?;\u2026\n\r\u2028\u2029\u203c\u2047-\u2049\u00a1\u00bf\u3002\uff01\uff1f"
    "\u2600-\u27bf\U0001f000-\U0001faff]+"
)
_JOKE_EMOJI = re.compile(
    "[\U0001f602\U0001f923\U0001f606\U0001f605\U0001f61c\U0001f61d\U0001f92a\U0001f648\U0001f643\U0001f624\U0001f973\U0001f480\U0001f644\U0001f629]"
)
_STRETCHED = re.compile(r"([a-z])\1{2,}")


def _fold_char(m: re.Match[str]) -> str:
    return _FOLD[m.group()]


def fold(text: str) -> str:
    """Lower case, Norwegian and other accented letters folded, apostrophes removed;
    punctuation and spaces kept."""
    t = _APOSTROPHES.sub("", text.lower())
    if not t.isascii():
        t = _SPECIAL.sub(_fold_char, t)
        if not t.isascii():
            t = _SPECIAL.sub(_fold_char, _COMBINING.sub("", unicodedata.normalize("NFKD", t)))
    return t


def _digraphs(t: str) -> str:
    if "ae" in t or "aa" in t or "oe" in t:
        return _DIGRAPH.sub(lambda m: m.group()[0], t)
    return t


def normalise(text: str) -> str:
    """Folded words joined by single spaces. Idempotent."""
    return _digraphs(" ".join(_WORD.findall(fold(text))))


CLAUSE = "|"  # marks a clause break (comma, colon, dash) inside a normalised sentence
_CLAUSE_BREAK = re.compile(r"[,:\u2013\u2014]|\s-+\s")


def _normalise_sentence(text: str) -> str:
    """A sentence normalised, its clauses joined by " | ": a negation stops at a clause break
    ("det hjelper ikke | selvmordstankene er der hele tiden")."""
    return f" {CLAUSE} ".join(n for n in map(normalise, _CLAUSE_BREAK.split(text)) if n)


def sentences(text: str) -> list[tuple[str, bool]]:
    """The message cut at sentence ends -> [(normalised sentence, ends with a joke emoji)]."""
    out: list[tuple[str, bool]] = []
    pos = 0
    for m in _SENTENCE_END.finditer(text):
        norm = _normalise_sentence(text[pos : m.start()])
        joke = bool(_JOKE_EMOJI.search(m.group()))
        if norm:
            out.append((norm, joke))
        elif joke and out:
            out[-1] = (out[-1][0], True)
        pos = m.end()
    tail = _normalise_sentence(text[pos:])
    if tail:
        out.append((tail, False))
    return out


# --- lemmatiser --------------------------------------------------------------------------------

# Longest first. Norwegian noun and verb endings (bokmål, nynorsk), English -ing/-ed/-s.
_SUFFIXES = (
    "ingane", "ingene", "ingen", "ingar", "inger", "ande", "ende", "erne", "arne", "ene", "ane",
    "ing", "est", "ast", "et", "er", "ar", "en", "te", "de", "ed", "es", "a", "e", "s",
)  # fmt: skip
_MIN_STEM = 3
_COMPOUND_MIN = 7  # letters: shorter words are not searched for compound parts


@lru_cache(maxsize=65536)
def lemma(word: str) -> str:
    """A crude stem shared by the inflected forms of a word: "pillene", "piller", "pills",
    "pille" -> "pill"; "cutting" -> "cut"; "kuttet", "kutter", "kutte" -> "kutt". Words of
    four letters or fewer, and words with digits, are left alone."""
    if len(word) <= 4 or not word.isalpha():
        return word
    for s in _SUFFIXES:
        if word.endswith(s) and len(word) - len(s) >= _MIN_STEM:
            stem = word[: -len(s)]
            if s in ("ing", "ed", "est") and len(stem) > 3 and stem[-1] == stem[-2]:
                stem = stem[:-1]  # cutting -> cutt -> cut, stopped -> stop
            return stem
    return word


# --- the lexicon -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Term:
    words: tuple[str, ...]  # lemmas, or stems when prefix
    prefix: tuple[bool, ...]
    concept: str


def _word_matches(token: str, lem: str, word: str, prefix: bool) -> bool:
    return token.startswith(word) if prefix else lem == word or token == word


class Lexicon:
    """The concepts of the data file, compiled for tagging."""

    def __init__(self, data: dict[str, object]) -> None:
        synonyms: dict[str, tuple[str, ...]] = {}
        for canonical, variants in dict(data.get("synonyms", {})).items():  # type: ignore[call-overload]
            target = tuple(normalise(canonical).split())
            for v in variants:
                key = normalise(v)
                if not key or " " in key or key in synonyms:
                    raise ValueError(f"synonym {v!r}: must be one new word")
                synonyms[key] = target
        self.synonyms = synonyms
        self.exact: dict[str, set[str]] = {}  # lemma or token -> concepts (one-word terms)
        self.exact_word: dict[str, set[str]] = {}  # this word form only -> concepts
        self.stems: dict[int, dict[str, set[str]]] = {}  # length -> stem -> concepts
        self.multi: dict[str, list[_Term]] = {}  # first lemma -> terms of several words
        self.multi_stem: list[_Term] = []  # terms of several words starting with a stem
        self.concepts: list[str] = []
        vocab: set[str] = set()
        for concept, terms in dict(data.get("concepts", {})).items():  # type: ignore[call-overload]
            self.concepts.append(concept)
            for raw in terms:
                self._add(concept, raw, vocab)
        self.compounds: list[tuple[str, str]] = []  # (part, concept), longest first
        for concept, parts in dict(data.get("compounds", {})).items():  # type: ignore[call-overload]
            for part in parts:
                self.compounds.append((normalise(part), concept))
        self.compounds.sort(key=lambda pc: -len(pc[0]))
        self.vocab = frozenset(vocab)
        self._deletes: dict[str, set[str]] = {}
        for w in vocab:
            if len(w) >= 6 and w.isalpha():
                for d in {w[:i] + w[i + 1 :] for i in range(len(w))} | {w}:
                    self._deletes.setdefault(d, set()).add(w)
        # ordinary words the speller must leave alone ("darlig" is not a typo of "daglig")
        self.vocab = self.vocab | {normalise(w) for w in cast(list[str], data.get("plain", []))}
        self.known = frozenset(self.exact) | frozenset(synonyms)
        self.spell = lru_cache(maxsize=65536)(self._spell)

    def _add(self, concept: str, raw: str, vocab: set[str]) -> None:
        if raw.startswith("="):  # this word form only, not its lemma ("sitt", not "sitter")
            self.exact_word.setdefault(normalise(raw[1:]), set()).add(concept)
            return
        parts = raw.split()
        words: list[str] = []
        prefix: list[bool] = []
        for p in parts:
            is_prefix = p.endswith("*") and len(p) > 1
            n = normalise(p.rstrip("*")) if is_prefix else normalise(p)
            if not n:  # an emoji term: matched on the raw text instead (joke emoji)
                return
            # the term is spelled as the text will be: "ikkje" in a term meets "ikkje" in a
            # message, which the synonyms have made "ikke"
            spelled = " ".join(" ".join(self.synonyms.get(w, (w,))) for w in n.split())
            for i, w in enumerate(spelled.split()):
                last = i == len(spelled.split()) - 1
                words.append(w if (is_prefix and last) else lemma(w))
                prefix.append(is_prefix and last)
                vocab.add(w)
        term = _Term(tuple(words), tuple(prefix), concept)
        if len(words) == 1:
            if prefix[0]:
                self.stems.setdefault(len(words[0]), {}).setdefault(words[0], set()).add(concept)
            else:
                self.exact.setdefault(words[0], set()).add(concept)
        elif prefix[0]:
            self.multi_stem.append(term)
        else:
            self.multi.setdefault(words[0], []).append(term)

    def _spell(self, token: str) -> tuple[str, ...]:
        """Dialect/chat spelling -> standard word(s); a stretched letter ("dieee") or one
        typo in a word of six letters or more -> the lexicon word it was meant to be."""
        if token in self.synonyms:
            return self.synonyms[token]
        if _STRETCHED.search(token):
            for cand in (_STRETCHED.sub(r"\1\1", token), _STRETCHED.sub(r"\1", token)):
                if cand in self.vocab or cand in self.synonyms or lemma(cand) in self.exact:
                    return self._spell(cand)
        if len(token) < 6 or not token.isalpha() or token in self.vocab or lemma(token) in self.exact:
            return (token,)
        if self._stem_concepts(token):
            return (token,)
        found: set[str] = set(self._deletes.get(token, ()))
        for i in range(len(token)):
            found |= self._deletes.get(token[:i] + token[i + 1 :], set())
        best = sorted(
            # never the first letter: "changing" is not a typo of "hanging"
            (w for w in found if w[0] == token[0] and _one_edit(token, w)),
            key=lambda w: (abs(len(w) - len(token)), w),
        )
        return (best[0],) if best else (token,)

    def _stem_concepts(self, token: str) -> set[str]:
        out: set[str] = set()
        for n, stems in self.stems.items():
            if len(token) >= n:
                hit = stems.get(token[:n])
                if hit:
                    out |= hit
        return out

    def _compound(self, word: str) -> set[str]:
        """Concepts of a compound's parts: "litiumtablettene" -> means_med."""
        return {concept for part, concept in self.compounds if part in word}

    def words(self, sentence: str) -> list[str]:
        """The words of a normalised sentence with synonyms and typos resolved."""
        out: list[str] = []
        for t in sentence.split():
            out.extend((t,) if t == CLAUSE else self.spell(t))
        return out

    def tag(self, words: list[str]) -> list[set[str]]:
        """For each word, the concepts of every term that covers it."""
        lems = [lemma(w) for w in words]
        tags: list[set[str]] = [set() for _ in words]
        for i, (w, lem) in enumerate(zip(words, lems, strict=True)):
            hit = self.exact.get(lem)
            if hit:
                tags[i] |= hit
            if w != lem:
                hit = self.exact.get(w)
                if hit:
                    tags[i] |= hit
            hit = self.exact_word.get(w)
            if hit:
                tags[i] |= hit
            tags[i] |= self._stem_concepts(w)
            if len(w) >= _COMPOUND_MIN:
                tags[i] |= self._compound(w)
            for term in self.multi.get(lem, ()):
                self._multi(term, words, lems, i, tags)
            if w != lem:
                for term in self.multi.get(w, ()):
                    self._multi(term, words, lems, i, tags)
        for term in self.multi_stem:
            first = term.words[0]
            for i, w in enumerate(words):
                if w.startswith(first):
                    self._multi(term, words, lems, i, tags)
        return tags

    @staticmethod
    def _multi(term: _Term, words: list[str], lems: list[str], i: int, tags: list[set[str]]) -> None:
        n = len(term.words)
        if i + n > len(words):
            return
        for k in range(1, n):
            if not _word_matches(words[i + k], lems[i + k], term.words[k], term.prefix[k]):
                return
        for k in range(n):
            tags[i + k].add(term.concept)


def _one_edit(a: str, b: str) -> bool:
    """Optimal string alignment distance <= 1 (insert, delete, substitute, swap)."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la == lb:
        diff = [i for i in range(la) if a[i] != b[i]]
        return len(diff) == 1 or (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    if la > lb:
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i:] == b[i + 1 :]


@cache
def lexicon() -> Lexicon:
    """The compiled lexicon (read once)."""
    with DATA_FILE.open("rb") as f:
        return Lexicon(tomllib.load(f))


def concepts() -> Iterable[str]:
    return tuple(lexicon().concepts)

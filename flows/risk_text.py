"""Signs of risk in free text: suicide, self-harm, harm to others, acute crisis.

Every free-text message a citizen writes goes through :func:`detect`. It is a keyword
filter built for sensitivity (a missed crisis is far worse than a false alarm): a hit
only tells the flow to alert a human, it never decides anything on its own.

The phrases live in ``flows/data/risk_phrases.toml`` (syntax documented there). Text and
phrases go through the same :func:`normalise`, so "Jeg vil DØ", "jeg vil do" and
"jeg vil doe" meet. On top of that the matcher tolerates:

* words run together: between two words of a phrase the text may have no space
  ("talivetmitt"), and longer phrases are also looked for in the text with every
  space removed ("jegvilikkelevemer"), starting at a word or inside a long token;
* one typo (insert, delete, substitute, swap) in words of five letters or more;
* letters stretched for emphasis ("dieee", "døøø", "killlll"): a run of three or more
  of one letter is read as two, or else as one, when that gives a phrase word;
* non-risk idioms and denials ("jeg døde av latter", "I could kill for a coffee",
  "ingen selvmordstanker") are blanked out before matching, so only the idiom itself is
  ignored, never the rest of the message.

Clauses. The text is first cut into clauses at . ! ? ; : , … newlines and dashes (a
hyphen inside a word, as in "t-banen" or "self-harm", does not cut). The cuts decide
what an idiom may hide, and nothing else:

* an idiom is looked for inside one clause only and blanks exactly the words it
  matched (words skipped by a ``*`` gap stay visible), so "Jeg vet ikke. Selvmordstanker
  hele tiden" is not read as the denial "ikke selvmordstanker", nor "Jeg orker ikke mer,
  mat og søvn er borte" as the food idiom "orker ikke mer mat";
* words run together are looked for within a clause, never across a cut;
* a risk phrase itself may still run across a cut ("jeg vil... dø", "I want to - die"):
  a cut can only ever make the filter fire more often, never less.

Pure: standard library only, no I/O apart from reading the data file once. All the
phrases are compiled once into a few character-trie regexes, so a typical message costs
tens of microseconds and a 5,000-character one a few milliseconds; there are no nested
quantifiers, so nothing backtracks catastrophically.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from flows import risk_model

__all__ = ["CATEGORIES", "KINDS", "LANGS", "RiskHit", "detect", "model_text", "normalise", "warm_up"]

DATA_FILE = Path(__file__).resolve().parent / "data" / "risk_phrases.toml"

CATEGORIES = ("suicide", "harm_others", "self_harm", "crisis")  # most severe first
KINDS = ("explicit", "indirect")
LANGS = ("nb", "nn", "en")


@dataclass(frozen=True)
class RiskHit:
    """The most severe sign found. ``phrase`` is the pattern from the data file that
    matched (not the citizen's words), so it can be logged without repeating the text."""

    category: str  # suicide | harm_others | self_harm | crisis | possible (the learned stage)
    kind: str  # explicit | indirect | learned
    lang: str  # nb | nn | en: the language the phrase was written for
    phrase: str


# --- normalisation ---------------------------------------------------------------------------

_FOLD = {
    "æ": "a", "ä": "a", "ǽ": "a", "ø": "o", "ö": "o", "œ": "o", "å": "a",
    "ß": "ss", "ð": "d", "þ": "th", "ı": "i",
    "’": "", "‘": "", "´": "", "ʼ": "", "′": "",
}  # fmt: skip
_SPECIAL = re.compile("[" + "".join(_FOLD) + "]")
_COMBINING = re.compile("[\u0300-\u036f]+")
_WORD = re.compile(r"[a-z0-9]+")
_DIGRAPH = re.compile(r"a[ae]+|oe+")  # ae, aa -> a and oe -> o: the ASCII spellings of æ å ø

# Where a clause ends: . ! ? ; : , and ellipsis (with their full-width, Arabic, Greek and
# CJK forms), line breaks, en and em dashes, emoji, and a hyphen or minus that is not inside a
# word ("jeg vet ikke - selvmord" cuts, "t-banen" and "self-harm" do not).
_HYPHENS = "\\-\u2010\u2011\u2012\u2212\ufe63\uff0d"
_BREAK = (
    "(?:[.!?;:,\u2026\u203c\u2047-\u2049\u00a1\u00bf\u037e\u061f\u060c\u06d4\u3001\u3002"
    "\uff01\uff0c\uff0e\uff1a\uff1b\uff1f\ufe50-\ufe57\n\r\v\f\x1c-\x1e\x85\u2028\u2029"
    "\u2013\u2014\u2015\u2e3a\u2e3b\ufe58"
    # emoji and pictographs end a clause too: "jeg vet ikke 😔 selvmordstanker"
    # (not the circled and enclosed digits and letters, which normalise() keeps as words)
    "\u2600-\u2775\u2794-\u27bf\U0001f000-\U0001f0ff\U0001f200-\U0001faff]"
    f"|[{_HYPHENS}](?![^\\W_])|[{_HYPHENS}](?<![^\\W_][{_HYPHENS}]))+"
)
_WORD_OR_BREAK = re.compile(f"[a-z0-9]+|{_BREAK}")


def _fold(m: re.Match[str]) -> str:
    return _FOLD[m.group()]


def _first(m: re.Match[str]) -> str:
    return m.group()[0]


def _folded(text: str) -> str:
    """The first half of normalise(): lower case, letters folded, apostrophes removed;
    punctuation and spaces still as they were."""
    t = text.lower()
    if not t.isascii():
        t = t.replace("æ", "a").replace("ø", "o").replace("å", "a")
        if not t.isascii():
            t = _SPECIAL.sub(_fold, t)
            if not t.isascii():  # other accents: é -> e, ü -> u; other scripts become spaces
                t = unicodedata.normalize("NFKD", t)
                t = _SPECIAL.sub(_fold, _COMBINING.sub("", t).lower())
    return t.replace("'", "").replace("`", "")


def _digraphs(t: str) -> str:
    if "ae" in t or "aa" in t or "oe" in t:
        return _DIGRAPH.sub(_first, t)
    return t


def normalise(text: str) -> str:
    """Lower case; æ/ä/ae -> a, å/aa -> a, ø/ö/oe -> o; other accents dropped;
    apostrophes removed ("I'm" -> "im"); everything that is not a-z or 0-9 becomes a
    single space. Idempotent: ``normalise(normalise(t)) == normalise(t)``."""
    return _digraphs(" ".join(_WORD.findall(_folded(text))))


# --- the phrase mini-language ----------------------------------------------------------------
#
# pattern := alt ; alt := seq ('|' seq)* ; seq := elem+
# elem := WORD | WORD'*' | '*' | '(' alt ')' | '[' alt ']'


@dataclass(frozen=True)
class _Word:
    text: str
    prefix: bool = False


@dataclass(frozen=True)
class _Gap:
    pass


@dataclass(frozen=True)
class _Group:
    alts: tuple[tuple[Any, ...], ...]
    optional: bool = False


_TOKEN = re.compile(r"\s*([()\[\]|]|[^\s()\[\]|]+)")
_LETTERS = "[a-z0-9]"


def _parse(src: str, synonyms: dict[str, str] | None = None) -> _Group:
    syn = synonyms or {}
    tokens = _TOKEN.findall(src)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def alt() -> tuple[tuple[Any, ...], ...]:
        seqs = [seq()]
        while peek() == "|":
            take()
            seqs.append(seq())
        return tuple(seqs)

    def seq() -> tuple[Any, ...]:
        items: list[Any] = []
        while peek() not in (None, ")", "]", "|"):
            items.extend(elem())
        if not any(isinstance(i, _Word) or (isinstance(i, _Group) and not i.optional) for i in items):
            raise ValueError(f"empty or all-optional alternative in {src!r}")
        return tuple(items)

    def elem() -> list[Any]:
        tok = take()
        if tok in ("(", "["):
            inner = alt()
            if take() != (")" if tok == "(" else "]"):
                raise ValueError(f"unbalanced brackets in {src!r}")
            return [_Group(inner, optional=tok == "[")]
        if tok == "*":
            return [_Gap()]
        prefix = tok.endswith("*")
        words = normalise(tok.rstrip("*")).split()
        if not prefix:
            words = " ".join(syn.get(w, w) for w in words).split()
        if not words:
            raise ValueError(f"word {tok!r} normalises to nothing in {src!r}")
        return [_Word(w) for w in words[:-1]] + [_Word(words[-1], prefix)]

    try:
        tree = _Group(alt())
        if pos != len(tokens):
            raise ValueError(f"unexpected {tokens[pos]!r} in {src!r}")
    except IndexError:
        raise ValueError(f"unbalanced brackets in {src!r}") from None
    return tree


class _NoCompact(Exception):
    """The phrase has a gap, so it has no space-free form."""


class _Emitter:
    """Turns a parsed phrase into regex source. ``compact`` is the form searched in the
    text with its spaces removed: no separators, no gaps, no word boundaries."""

    def __init__(self, compact: bool, gap_words: int, capture_gaps: bool = False) -> None:
        self.compact = compact
        self.sep = "" if compact else " ?"
        gap = f"(?: {_LETTERS}++){{0,{gap_words}}}"
        # In an idiom the words a gap skips over are not part of the idiom: captured, so
        # that blanking the idiom leaves them visible (see _blank).
        self.gap = f"({gap})" if capture_gaps else gap

    def word(self, w: _Word) -> str:
        if not w.prefix:
            return re.escape(w.text)
        return re.escape(w.text) + (f"{_LETTERS}{{0,12}}?" if self.compact else f"{_LETTERS}*+")

    def node(self, n: Any) -> str:
        if isinstance(n, _Word):
            return self.word(n)
        if isinstance(n, _Group):
            bodies = sorted({self.seq(a) for a in n.alts})
            return bodies[0] if len(bodies) == 1 else "(?:" + "|".join(bodies) + ")"
        raise _NoCompact

    def seq(self, items: tuple[Any, ...], started: bool = False) -> str:
        if items and isinstance(items[-1], _Gap):
            raise ValueError("a gap '*' cannot end a phrase")
        out: list[str] = []
        for n in items:
            if isinstance(n, _Gap):
                if self.compact:
                    raise _NoCompact
                if not started:
                    raise ValueError("a gap '*' cannot start a phrase")
                out.append(self.gap)
                continue
            body = self.node(n)
            if isinstance(n, _Group) and n.optional:
                out.append(f"(?:{self.sep}{body})?" if started else f"(?:{body}{self.sep})?")
            else:
                out.append(f"{self.sep}{body}" if started else body)
                started = True
        return "".join(out)


def _expand(items: tuple[Any, ...]) -> list[tuple[_Word, tuple[Any, ...]]]:
    """All ways a sequence can start: (first word, what follows it)."""
    if not items:
        return []
    head, rest = items[0], items[1:]
    if isinstance(head, _Word):
        return [(head, rest)]
    if isinstance(head, _Gap):
        raise ValueError("a gap '*' cannot start a phrase")
    out = [x for a in head.alts for x in _expand(a + rest)]
    if head.optional:
        out += _expand(rest)
    return out


def _min_len(items: Iterable[Any]) -> int:
    total = 0
    for n in items:
        if isinstance(n, _Word):
            total += len(n.text)
        elif isinstance(n, _Group) and not n.optional:
            total += min(_min_len(a) for a in n.alts)
    return total


def _words(node: Any) -> Iterable[_Word]:
    if isinstance(node, _Word):
        yield node
    elif isinstance(node, _Group):
        for a in node.alts:
            for n in a:
                yield from _words(n)


def _trie_regex(branches: Iterable[tuple[str, str]]) -> str:
    """One regex for many (literal start, rest-of-regex) branches, factored by the
    literal's characters so the engine dispatches on each character once instead of
    trying every branch at every position."""
    root: dict[str, Any] = {}
    for literal, rest in branches:
        node = root
        for ch in literal:
            node = node.setdefault(ch, {})
        node.setdefault("", set()).add(rest)

    def emit(node: dict[str, Any]) -> str:
        alts = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        alts += sorted(node.get("", ()))
        if len(alts) == 1:
            return alts[0]
        return "(?:" + "|".join(alts) + ")"

    return emit(root) if root else "(?!)"


_START = f"(?<!{_LETTERS})"
_END = f"(?!{_LETTERS})"


@dataclass(frozen=True)
class _Entry:
    category: str
    kind: str
    lang: str
    phrase: str
    spaced: re.Pattern[str]
    compact: re.Pattern[str] | None
    spaced_branches: tuple[tuple[str, str], ...]  # for the trie; empty for raw regexes
    compact_branches: tuple[tuple[str, str], ...]


def _compile_phrase(
    src: str,
    gap_words: int,
    compact_min: int,
    raw: bool,
    synonyms: dict[str, str],
    capture_gaps: bool = False,
) -> tuple[str, str | None, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...], set[_Word]]:
    """-> (spaced regex, compact regex or None, spaced trie branches, compact branches,
    words for the typo vocabulary). With ``capture_gaps`` (idioms) every ``*`` gap is a
    capturing group, and the pattern has no other groups."""
    if raw:
        if re.compile(src).groups:
            raise ValueError(f"use (?:...) groups only in {src!r}")
        vocab = {_Word(w) for w in re.findall(r"[a-z]{5,}", src)}
        return src, None, (), (), vocab
    tree = _parse(src, synonyms)
    spaced_em = _Emitter(False, gap_words, capture_gaps)
    spaced = _START + spaced_em.node(tree) + _END
    spaced_br = []
    for first, rest in _expand((tree,)):
        tail = spaced_em.seq(rest, started=True)
        head = f"{_LETTERS}*+" if first.prefix else ""
        spaced_br.append((first.text, head + tail + _END))
    compact_src, compact_br = None, []
    compact_em = _Emitter(True, gap_words)
    try:
        if _min_len((tree,)) >= compact_min:
            compact_src = compact_em.node(tree)
            for first, rest in _expand((tree,)):
                tail = compact_em.seq(rest, started=True)
                head = f"{_LETTERS}{{0,12}}?" if first.prefix and rest else ""
                compact_br.append((first.text, head + tail))
    except _NoCompact:
        compact_src, compact_br = None, []
    return spaced, compact_src, tuple(spaced_br), tuple(compact_br), set(_words(tree))


# --- typo tolerance --------------------------------------------------------------------------

_STRETCHED = re.compile(r"([a-z])\1{2,}")  # a letter three or more times in a row: "dieee"


def _deletes(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


def _within_one_edit(a: str, b: str) -> bool:
    """Optimal string alignment distance <= 1 (insert, delete, substitute, swap)."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la == lb:
        diff = [i for i in range(la) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    if la > lb:
        a, b = b, a  # a is the shorter
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i:] == b[i + 1 :]


class _Speller:
    """Maps a dialect or slang form to its standard word (``[synonyms]``), and a token
    with one typo to the phrase word it was meant to be. Tokens that are phrase words,
    start with a phrase stem, or are listed as keep are left alone."""

    def __init__(
        self,
        targets: Iterable[str],
        known: Iterable[str],
        stems: Iterable[str],
        min_len: int,
        synonyms: dict[str, str],
    ) -> None:
        self.min_len = min_len
        self.synonyms = synonyms
        self.known = frozenset(known)
        self.stems = tuple(sorted(set(stems)))
        self.index: dict[str, set[str]] = {}
        self.max_len = 0
        for w in targets:
            if len(w) < min_len or not w.isalpha():
                continue
            self.max_len = max(self.max_len, len(w))
            for key in _deletes(w) | {w}:
                self.index.setdefault(key, set()).add(w)
        self.fix = lru_cache(maxsize=65536)(self._fix)

    def _fix(self, token: str) -> str:
        if token in self.synonyms:
            return self.synonyms[token]
        if _STRETCHED.search(token):
            # A letter typed three or more times ("dieee", "døøø", "killlll"): try the
            # word with each such run cut to two letters, then to one.
            for cand in (_STRETCHED.sub(r"\1\1", token), _STRETCHED.sub(r"\1", token)):
                fixed = self._fix(cand)
                if fixed != cand or cand in self.known:
                    return fixed
            return token
        n = len(token)
        if (
            n < self.min_len - 1
            or n > self.max_len + 1
            or token in self.known
            or not token.isalpha()
            or token.startswith(self.stems)
        ):
            return token
        get = self.index.get
        found: set[str] = set(get(token, ()))
        for i in range(n):
            hit = get(token[:i] + token[i + 1 :])
            if hit:
                found |= hit
        if not found:
            return token
        best = sorted(
            (w for w in found if _within_one_edit(token, w)),
            key=lambda w: (w[0] != token[0], abs(len(w) - n), w),
        )
        return best[0] if best else token


# --- the compiled data -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Group_:
    """One (category, kind): its combined regexes, and its entries by the first letter
    of their first word, so a match is traced to its entry without trying them all."""

    category: str
    kind: str
    spaced: re.Pattern[str]
    compact: re.Pattern[str]
    spaced_by_first: dict[str, tuple[_Entry, ...]]
    compact_by_first: dict[str, tuple[_Entry, ...]]
    raw: tuple[_Entry, ...]


def _by_first(entries: Iterable[_Entry], compact: bool) -> dict[str, tuple[_Entry, ...]]:
    out: dict[str, list[_Entry]] = {}
    for e in entries:
        for literal, _ in e.compact_branches if compact else e.spaced_branches:
            bucket = out.setdefault(literal[0], [])
            if e not in bucket:
                bucket.append(e)
    return {k: tuple(v) for k, v in out.items()}


@dataclass(frozen=True)
class _Compiled:
    entries: tuple[_Entry, ...]
    exclude: re.Pattern[str]
    any_spaced: re.Pattern[str]
    any_compact: re.Pattern[str]
    groups: tuple[_Group_, ...]
    speller: _Speller


def _combine(branches: Iterable[tuple[str, str]], raws: Iterable[str], start: str) -> str:
    parts = [start + _trie_regex(branches)]
    parts += [f"(?:{r})" for r in raws]
    return "|".join(parts)


def compile_data(data: dict[str, Any]) -> _Compiled:
    """Validate and compile the parsed TOML. Raises ValueError on a bad entry."""
    settings = data.get("settings", {})
    gap_words = int(settings.get("gap_words", 3))
    compact_min = int(settings.get("compact_min_chars", 9))
    fuzzy_min = int(settings.get("fuzzy_min_len", 5))
    fuzzy = data.get("fuzzy", {})
    synonyms: dict[str, str] = {}
    for canonical, variants in data.get("synonyms", {}).items():
        target = normalise(canonical)
        for v in variants:
            key = normalise(v)
            if " " in key or not key or key in synonyms:
                raise ValueError(f"synonym {v!r}: must be one new word")
            synonyms[key] = target

    vocab: set[_Word] = set()
    entries: list[_Entry] = []
    for i, raw_entry in enumerate(data.get("entry", [])):
        where = f"entry #{i + 1} ({raw_entry.get('pattern')!r})"
        cat, kind, lang = raw_entry.get("category"), raw_entry.get("kind"), raw_entry.get("lang")
        if cat not in CATEGORIES or kind not in KINDS or lang not in LANGS:
            raise ValueError(f"{where}: bad category/kind/lang {cat!r}/{kind!r}/{lang!r}")
        src = raw_entry["pattern"]
        try:
            spaced, compact, sbr, cbr, words = _compile_phrase(
                src, gap_words, compact_min, bool(raw_entry.get("regex", False)), synonyms
            )
            entries.append(
                _Entry(
                    cat,
                    kind,
                    lang,
                    src,
                    re.compile(spaced),
                    re.compile(compact) if compact else None,
                    sbr,
                    cbr,
                )
            )
        except (ValueError, re.error) as exc:
            raise ValueError(f"{where}: {exc}") from exc
        vocab |= words

    excl_branches: list[tuple[str, str]] = []
    excl_raw: list[str] = []
    for i, ex in enumerate(data.get("exclude", [])):
        try:
            spaced, _, sbr, _, words = _compile_phrase(
                ex["pattern"], gap_words, 10**6, bool(ex.get("regex", False)), synonyms, capture_gaps=True
            )
        except (ValueError, re.error) as exc:
            raise ValueError(f"exclude #{i + 1} ({ex.get('pattern')!r}): {exc}") from exc
        if sbr:
            excl_branches += sbr
        else:
            excl_raw.append(spaced)
        vocab |= words

    def raws(es: Iterable[_Entry]) -> list[str]:
        return [e.spaced.pattern for e in es if not e.spaced_branches]

    def group_res(es: tuple[_Entry, ...]) -> tuple[re.Pattern[str], re.Pattern[str]]:
        sp = _combine((b for e in es for b in e.spaced_branches), raws(es), _START)
        cp = _trie_regex(b for e in es for b in e.compact_branches)
        return re.compile(sp), re.compile(cp)

    groups = []
    for cat in CATEGORIES:
        for kind in KINDS:
            es = tuple(e for e in entries if e.category == cat and e.kind == kind)
            if es:
                sp, cp = group_res(es)
                raw = tuple(e for e in es if not e.spaced_branches)
                groups.append(_Group_(cat, kind, sp, cp, _by_first(es, False), _by_first(es, True), raw))
    any_spaced, any_compact = group_res(tuple(entries))

    words = {w.text for w in vocab}
    stems = {w.text for w in vocab if w.prefix and len(w.text) >= 4}
    extra = {normalise(w) for w in fuzzy.get("extra", [])}
    keep = {normalise(w) for w in fuzzy.get("keep", [])}
    speller = _Speller(words | extra, words | keep | set(synonyms), stems, fuzzy_min, synonyms)
    exclude = re.compile(_combine(excl_branches, excl_raw, _START))
    return _Compiled(tuple(entries), exclude, any_spaced, any_compact, tuple(groups), speller)


@cache
def _compiled() -> _Compiled:
    with DATA_FILE.open("rb") as f:
        return compile_data(tomllib.load(f))


def warm_up() -> None:
    """Load and compile the phrases now (about a second) rather than on the first
    citizen's message. Call once at startup; raises ValueError if the data file is bad."""
    _compiled()


# --- detection -------------------------------------------------------------------------------


def _fix_typos(text: str, c: _Compiled) -> str:
    fix = c.speller.fix
    return " ".join([fix(t) for t in normalise(text).split()])


def _clauses(text: str, c: _Compiled) -> list[str]:
    """The text cut at clause breaks, each clause normalised and typo-fixed, empty
    clauses dropped. Joined by spaces they are exactly ``_fix_typos(text)``: a cut is
    only ever where normalise() puts a space anyway."""
    fix = c.speller.fix
    clauses: list[str] = []
    words: list[str] = []
    # words and break marks in one pass; a break mark is never alphanumeric
    for w in _digraphs(" ".join(_WORD_OR_BREAK.findall(_folded(text)))).split(" "):
        if w.isalnum():
            words.append(fix(w))
        elif words:
            clauses.append(" ".join(words))
            words = []
    if words:
        clauses.append(" ".join(words))
    return clauses


_NONSPACE = re.compile("[^ ]+")


def _blank(m: re.Match[str]) -> str:
    """An idiom's match with each of its words turned into '#', except the words a ``*``
    gap skipped over: the idiom hides exactly its own words and nothing else."""
    start, end = m.span()
    gaps = [(a, b) for a, b in m.regs[1:] if a < b and start <= a and b <= end]
    if not gaps:
        return _NONSPACE.sub("#", m.group())
    text, out, pos = m.string, [], start
    for a, b in sorted(gaps):
        if a < pos:  # nested or repeated capture: keep the first
            continue
        out.append(_NONSPACE.sub("#", text[pos:a]))
        out.append(text[a:b])
        pos = b
    out.append(_NONSPACE.sub("#", text[pos:end]))
    return "".join(out)


def _compact(clauses: list[str]) -> tuple[str, set[int], list[bool]]:
    """The space-free form for words run together: each clause with its spaces removed,
    clauses joined by '|' so that no match runs across a clause break. Also where each
    token starts in it, and for each position whether it lies inside a token long enough
    to be words run together: a space-free match must start at one of these, so "om å
    skade meg" ("omaskademeg") does not read as "må skade meg"."""
    starts: set[int] = set()
    glued: list[bool] = []
    for i, clause in enumerate(clauses):
        if i:
            glued.append(False)  # the '|'
        for tok in clause.split(" "):
            starts.add(len(glued))
            glued.extend([len(tok) >= _GLUED_MIN] * len(tok))
    glued.append(False)
    return "|".join([cl.replace(" ", "") for cl in clauses]), starts, glued


def _prepare(text: str, c: _Compiled) -> tuple[str, str]:
    """-> (spaced, compact) forms ready for matching: normalised, typos fixed, non-risk
    idioms blanked out clause by clause; clauses joined by ' ' (spaced) and '|' (compact)."""
    clauses = [c.exclude.sub(_blank, cl) for cl in _clauses(text, c)]
    return " ".join(clauses), _compact(clauses)[0]


def detect(text: str) -> RiskHit | None:
    """The most severe sign of risk in ``text``, or None.

    Severity: suicide > harm_others > self_harm > crisis; within a category an explicit
    phrase wins over an indirect one."""
    if not text:
        return None
    c = _compiled()
    clauses = _clauses(text, c)
    if not clauses:
        return None
    hit = _search(clauses, c)
    if hit is None:
        # Norwegian puts the verb second: "i kveld tar jeg livet mitt", "så dreper jeg
        # henne". The phrases are written in plain word order, so try once more with the
        # subject pronoun that follows a fronted verb left out.
        plain = _uninverted(clauses)
        if plain != clauses:
            hit = _search(plain, c)
    if hit is None and any(
        risk_model.flags(" ".join(clauses[i : i + _MODEL_WINDOW])) for i in range(len(clauses))
    ):
        # No phrase, but the learned stage sees a likely risk (flows/risk_model.py). It reads
        # windows of clauses starting at each clause, so nothing written before can talk it
        # out of a risk that follows, as an exclude never reaches across a clause break.
        hit = RiskHit(POSSIBLE, LEARNED, "", "risk_model")
    return hit


POSSIBLE, LEARNED = "possible", "learned"
_MODEL_WINDOW = 8  # clauses per window: a short message is read whole, a long one in parts


def model_text(text: str) -> str:
    """The text as the learned stage sees it: normalised, typos fixed, clauses joined."""
    return " ".join(_clauses(text, _compiled()))


_SUBJECT = "jeg"  # after synonyms: eg, je, jæ, jg ... are "jeg" too


def _uninverted(clauses: list[str]) -> list[str]:
    """Each clause without a subject pronoun that is not its first word."""
    out = []
    for clause in clauses:
        first, _, rest = clause.partition(" ")
        if _SUBJECT in rest.split(" "):
            rest = " ".join(w for w in rest.split(" ") if w != _SUBJECT)
        out.append(f"{first} {rest}" if rest else first)
    return out


def _search(clauses: list[str], c: _Compiled) -> RiskHit | None:
    spaced = " ".join(clauses)
    # Fast path. Blanking out idioms can only remove matches, never add one, so a text
    # with no match before blanking has none after it either.
    if not c.any_spaced.search(spaced) and not c.any_compact.search(
        "|".join([cl.replace(" ", "") for cl in clauses])
    ):
        return None
    # Idioms are looked for clause by clause, so none can reach across a break.
    clauses = [c.exclude.sub(_blank, cl) for cl in clauses]
    spaced = " ".join(clauses)
    compact, starts, glued = _compact(clauses)
    for g in c.groups:
        m = g.spaced.search(spaced)
        if m:
            at = m.start()
            for e in g.spaced_by_first.get(spaced[at], ()):
                if e.spaced.match(spaced, at):
                    return RiskHit(g.category, g.kind, e.lang, e.phrase)
            for e in g.raw:  # raw regexes: no first literal to go by
                if e.spaced.search(spaced):
                    return RiskHit(g.category, g.kind, e.lang, e.phrase)
        pos = 0
        while (m := g.compact.search(compact, pos)) is not None:
            at = m.start()
            if at in starts or glued[at]:
                for e in g.compact_by_first.get(compact[at], ()):
                    if e.compact is not None and e.compact.match(compact, at):
                        return RiskHit(g.category, g.kind, e.lang, e.phrase)
            pos = at + 1
    return None


_GLUED_MIN = 6  # a token this long may be words run together ("jegvil", "talivetmitt")

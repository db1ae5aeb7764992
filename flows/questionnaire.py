"""The screening as data: instruments (PHQ-9, GAD-7, AUDIT-C) and the order of questions.

Everything is read from ``flows/data/*.toml`` and checked when loaded, so a typo in a data
file fails at start-up (and in the tests), not in the middle of someone's screening.

Answers are a plain mapping of question id -> int (a choice's value) or str (free text).
Nothing here knows about Telegram, storage or the clock.
"""

from __future__ import annotations

import functools
import operator
import re
import tomllib
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import Any, TypeGuard, cast

Lang = str  # "nb" | "en"
LANGS: tuple[Lang, ...] = ("nb", "en")
DEFAULT_LANG: Lang = "nb"
OPS = frozenset({"==", "!=", ">=", "<=", "in", "not_in"})
KINDS = frozenset({"choice", "text", "phone"})


def _localised(texts: Mapping[str, str], lang: Lang) -> str:
    return texts.get(lang) or texts[DEFAULT_LANG]


def _is_int(value: Any) -> TypeGuard[int]:
    """An integer answer; True and False are not (``True == 1`` would match a choice)."""
    return type(value) is int or (isinstance(value, int) and not isinstance(value, bool))


# --- conditions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """``item`` (a question id) or ``score`` (an instrument id) compared with ``value``.

    An unanswered item, a missing score or a non-integer answer never satisfies a
    condition, whatever the operator: ``!=`` included.
    """

    item: str | None
    score: str | None
    op: str
    value: int | tuple[int, ...]
    # ``op`` as a function of the actual value: the routing checks every condition after
    # every answer, so the operator is looked up once, here, not on each check
    _compare: Callable[[int], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.item is None) == (self.score is None):
            raise ValueError(f"condition needs exactly one of item/score: {self!r}")
        if self.op not in OPS:
            raise ValueError(f"unknown operator {self.op!r} (known: {sorted(OPS)})")
        if self.op in ("in", "not_in"):
            if not isinstance(self.value, tuple) or not all(_is_int(v) for v in self.value):
                raise ValueError(f"{self.op} needs a list of integers: {self!r}")
        elif not _is_int(self.value):
            raise ValueError(f"{self.op} needs an integer: {self!r}")
        object.__setattr__(self, "_compare", _comparison(self.op, self.value))

    @property
    def subject(self) -> str:
        return self.item if self.item is not None else f"score:{self.score}"

    def holds(self, answers: Mapping[str, Any], scores: Mapping[str, int]) -> bool:
        actual = answers.get(self.item) if self.item is not None else scores.get(cast(str, self.score))
        return _is_int(actual) and self._compare(actual)

    def __str__(self) -> str:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return f"{self.subject} {self.op} {value}"

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Condition:
        unknown = set(data) - {"item", "score", "op", "value"}
        if unknown:
            raise ValueError(f"unknown condition keys {sorted(unknown)} in {dict(data)}")
        value = data.get("value")
        if isinstance(value, list):
            value = tuple(value)
        return cls(item=data.get("item"), score=data.get("score"), op=data.get("op", ""), value=value)  # type: ignore[arg-type]


def _comparison(op: str, value: int | tuple[int, ...]) -> Callable[[int], bool]:
    """``actual <op> value`` as a one-argument function."""
    if op in ("in", "not_in"):
        members = frozenset(value)  # type: ignore[arg-type]
        return members.__contains__ if op == "in" else lambda actual: actual not in members
    compare = {"==": operator.eq, "!=": operator.ne, ">=": operator.ge, "<=": operator.le}[op]
    return lambda actual: compare(actual, value)


# --- choices, bands -----------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    value: int
    text: Mapping[str, str]

    def label(self, lang: Lang) -> str:
        return _localised(self.text, lang)

    def __hash__(self) -> int:
        return hash((self.value, tuple(sorted(self.text.items()))))


@dataclass(frozen=True)
class Band:
    low: int
    high: int
    label: Mapping[str, str]
    code: str = ""  # stable id, e.g. "moderate"

    def contains(self, total: int) -> bool:
        return self.low <= total <= self.high

    def __hash__(self) -> int:
        return hash((self.low, self.high, self.code))


# --- free-text matching of choices ----------------------------------------------------------

# For people typing on a keyboard without æ, ø, å: "naar som helst", "svaert darlig".
_FOLD = str.maketrans({"æ": "ae", "ø": "o", "å": "a", "ä": "ae", "ö": "o", "é": "e", "è": "e"})
_RANGE_WORDS = frozenset({"or", "eller", "to", "til", "og", "and", "more", "flere"})
_OPEN_WORDS = frozenset({"more", "flere"})
_NEGATIVE = re.compile(r"^\s*[-\u2212\u2013]\s*\d")  # "-1" is no button number


def normalise(raw: str) -> str:
    """Casefolded, punctuation turned into spaces, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", raw).casefold()
    text = "".join(ch if ch.isalnum() else " " for ch in text)
    return " ".join(text.split())


def _fold(key: str) -> str:
    return key.translate(_FOLD).replace("aa", "a")


def _numeric_range(key: str) -> tuple[int, int | None] | None:
    """The numbers a numeric label covers: "1 2" (from "1–2") -> (1, 2), "7 8 or 9" -> (7, 9),
    "10 eller flere" -> (10, None). None for labels that are not just numbers."""
    tokens = key.split()
    numbers = [int(t) for t in tokens if t.isdigit()]
    if not numbers or not all(t.isdigit() or t in _RANGE_WORDS for t in tokens):
        return None
    if any(t in _OPEN_WORDS for t in tokens):
        return min(numbers), None
    return min(numbers), max(numbers)


@dataclass(frozen=True)
class _Lookup:
    exact: Mapping[str, Choice | None]  # None: the key names different choices (ambiguous)
    folded: Mapping[str, Choice | None]
    ranges: tuple[tuple[int, int | None, Choice], ...]
    by_value: Mapping[int, Choice]  # the first choice with each value


def _add(table: dict[str, Choice | None], key: str, choice: Choice) -> None:
    if (known := table.get(key)) is not None and known.value != choice.value:
        table[key] = None
    elif key not in table:
        table[key] = choice


def _lookup(choices: tuple[Choice, ...]) -> _Lookup:
    exact: dict[str, Choice | None] = {}
    folded: dict[str, Choice | None] = {}
    ranges: list[tuple[int, int | None, Choice]] = []
    by_value: dict[int, Choice] = {}
    for choice in choices:
        by_value.setdefault(choice.value, choice)
        for text in choice.text.values():
            key = normalise(text)
            _add(exact, key, choice)
            _add(folded, _fold(key), choice)
            span = _numeric_range(key)
            if span is not None:
                ranges.append((span[0], span[1], choice))
    return _Lookup(
        MappingProxyType(exact), MappingProxyType(folded), tuple(ranges), MappingProxyType(by_value)
    )


# --- questions, instruments, sections, script ----------------------------------------------


@dataclass(frozen=True)
class Question:
    id: str
    section: str
    kind: str  # "choice" | "text" | "phone"
    text: Mapping[str, str]
    choices: tuple[Choice, ...] = ()
    optional: bool = False
    ask_if: Condition | None = None
    scored: bool = False  # counts towards its instrument's total
    instrument: str | None = None
    stem: Mapping[str, str] | None = None  # shown before the item text of instrument items
    _lookup: _Lookup = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_lookup", _lookup(self.choices))

    def __hash__(self) -> int:
        return hash(self.id)

    def prompt(self, lang: Lang) -> str:
        """The question text; for instrument items the item only (the stem is ``.stem``)."""
        return _localised(self.text, lang)

    def choice_for_value(self, value: Any) -> Choice | None:
        """The choice a stored answer stands for (for showing answers back)."""
        return self._lookup.by_value.get(value) if _is_int(value) else None

    @property
    def lettered(self) -> bool:
        """Whether the answers are marked A, B, C instead of 1, 2, 3: where the labels are
        themselves numbers (AUDIT-C item 2: "1–2", "3–4"), a typed number must mean one thing."""
        return any(ch.isdigit() for choice in self.choices for text in choice.text.values() for ch in text)

    def marker(self, position: int) -> str:
        """What stands before the answer at ``position`` (1-based): "1" or "A"."""
        return chr(ord("A") + position - 1) if self.lettered else str(position)

    def choice_for(self, raw: str, lang: Lang) -> Choice | None:
        """The choice someone typed: a label in either language (ignoring case, spacing and
        punctuation, and tolerating a keyboard without æøå) or the marker shown before it.
        None if it matches nothing, or is ambiguous.

        Where the labels are numbers (``lettered``), the answers are marked with letters and
        a typed number means what it says: "2" drinks is "1–2", never the second answer.
        """
        if self.kind != "choice" or not isinstance(raw, str):
            return None
        key = normalise(raw)
        if not key:
            return None
        lookup = self._lookup
        if key in lookup.exact:
            return lookup.exact[key]
        if self.lettered and len(key) == 1 and "a" <= key <= chr(ord("a") + len(self.choices) - 1):
            return self.choices[ord(key) - ord("a")]
        folded = _fold(key)
        if folded in lookup.folded:
            return lookup.folded[folded]
        # Only plain ASCII numbers of sensible length: int() rejects some Unicode digits and
        # very long digit strings.
        if not (key.isascii() and key.isdigit()) or len(key) > 6 or _NEGATIVE.match(raw):
            return None
        number = int(key)
        if self.lettered:
            covering = [c for lo, hi, c in lookup.ranges if lo <= number and (hi is None or number <= hi)]
            return covering[0] if len({c.value for c in covering}) == 1 else None
        by_position = self.choices[number - 1] if 1 <= number <= len(self.choices) else None
        in_range = {
            c.value: c for low, high, c in lookup.ranges if low <= number and (high is None or number <= high)
        }
        if not in_range:
            return by_position
        if len(in_range) > 1:
            return None
        (by_range,) = in_range.values()
        if by_position is None or by_position.value == by_range.value:
            return by_range
        return None


@dataclass(frozen=True)
class Instrument:
    id: str
    name: str
    source: str
    licence: str
    stem: Mapping[str, str]
    items: tuple[Question, ...]
    bands: tuple[Band, ...]

    def __hash__(self) -> int:
        return hash(self.id)

    @functools.cached_property
    def scored_items(self) -> tuple[Question, ...]:
        return tuple(q for q in self.items if q.scored)

    @property
    def max_score(self) -> int:
        return sum(max(c.value for c in q.choices) for q in self.scored_items)

    @functools.cached_property
    def _scoring(self) -> tuple[tuple[str, frozenset[int]], ...]:
        """(item id, the values its choices stand for) of each scored item: the flow scores
        every instrument on every answer, so this is looked up, not rebuilt."""
        return tuple((q.id, frozenset(c.value for c in q.choices)) for q in self.scored_items)

    def total(self, answers: Mapping[str, Any]) -> int | None:
        """Sum of the scored items answered so far (a lower bound until ``complete``);
        None if none is answered. Values that are not one of the item's choices are ignored.
        """
        total = None
        for item, values in self._scoring:
            value = answers.get(item)
            if value is not None and _is_int(value) and value in values:
                total = value if total is None else total + value
        return total

    def complete(self, answers: Mapping[str, Any]) -> bool:
        """Every scored item answered, or skipped by its ``ask_if`` (AUDIT-C items 2-3 for
        someone who never drinks; these count as 0, as in the published scoring)."""
        for q, (item, values) in zip(self.scored_items, self._scoring, strict=True):
            if (value := answers.get(item)) is not None and _is_int(value) and value in values:
                continue
            if q.ask_if is not None and _decided(q.ask_if, answers) and not q.ask_if.holds(answers, {}):
                continue
            return False
        return True

    def band(self, total: int) -> Band:
        for band in self.bands:
            if band.contains(total):
                return band
        raise ValueError(f"{self.id}: total {total} outside 0..{self.max_score}")


def _decided(condition: Condition, answers: Mapping[str, Any]) -> bool:
    """The item a condition looks at has been answered (so False means 'not asked')."""
    return condition.item is None or condition.item in answers


@dataclass(frozen=True)
class Section:
    id: str
    title: Mapping[str, str]
    questions: tuple[Question, ...]
    intro: Mapping[str, str] | None = None  # said once, before the section's first question
    instrument: str | None = None

    def __hash__(self) -> int:
        return hash(self.id)


@dataclass(frozen=True)
class Script:
    sections: tuple[Section, ...]
    instruments: Mapping[str, Instrument]
    _index: Mapping[str, tuple[int, int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, tuple[int, int]] = {}
        for s, section in enumerate(self.sections):
            for q, question in enumerate(section.questions):
                if question.id in index:
                    raise ValueError(f"question id {question.id!r} used twice")
                index[question.id] = (s, q)
        object.__setattr__(self, "_index", MappingProxyType(index))

    @property
    def questions(self) -> tuple[Question, ...]:
        return tuple(q for section in self.sections for q in section.questions)

    def question(self, id: str) -> Question:
        s, q = self._index[id]
        return self.sections[s].questions[q]

    def section(self, id: str) -> Section:
        return next(s for s in self.sections if s.id == id)

    def position(self, id: str) -> tuple[int, int, int, int]:
        """(section number, number of sections, index in section, questions in section),
        the numbers 1-based. Questions skipped by ``ask_if`` are counted too."""
        s, q = self._index[id]
        return s + 1, len(self.sections), q + 1, len(self.sections[s].questions)

    def scores(self, answers: Mapping[str, Any]) -> dict[str, int]:
        """Instrument id -> total so far, for instruments with at least one scored answer."""
        totals = {i: inst.total(answers) for i, inst in self.instruments.items()}
        return {i: t for i, t in totals.items() if t is not None}

    def progress(self, id: str, answers: Mapping[str, Any]) -> tuple[int, int]:
        """(this question's number, questions in all) over the whole screening, counting only
        the questions this person is asked given the answers so far (a skipped follow-up is
        not counted, and is counted once an answer brings it in)."""
        scores = self.scores(answers)
        asked = [q.id for q in self.questions if q.ask_if is None or q.ask_if.holds(answers, scores)]
        if id not in asked:
            asked.append(id)  # asked now, whatever its condition says of the answers so far
            asked.sort(key=lambda q: self._index[q])
        return asked.index(id) + 1, len(asked)

    def should_ask(self, question: Question | str, answers: Mapping[str, Any]) -> bool:
        """Whether ``question`` is asked given the answers so far (its ``ask_if``)."""
        if isinstance(question, str):
            question = self.question(question)
        if question.ask_if is None:
            return True
        return question.ask_if.holds(answers, self.scores(answers))


# --- building from data ------------------------------------------------------------------


def parse_texts(data: Any, where: str) -> Mapping[str, str]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a table with {LANGS}, got {data!r}")
    texts = {lang: data.get(lang) for lang in LANGS}
    for lang, text in texts.items():
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{where}: missing or empty {lang!r} text")
    return MappingProxyType({lang: cast(str, text).strip() for lang, text in texts.items()})


def _choices(
    data: Iterable[Mapping[str, Any]], where: str, *, lowest_first: bool = True
) -> tuple[Choice, ...]:
    """A question's choices, checked: integer values, unique, and lowest first unless the
    question lists them in an order of its own (``listed = true``: an answer added later keeps
    its stored value, as "Pensjonist" before "Annet" in the work question)."""
    choices = tuple(
        Choice(value=c["value"], text=parse_texts(c, f"{where} choice {c.get('value')!r}")) for c in data
    )
    values = [c.value for c in choices]
    if len(choices) < 2:
        raise ValueError(f"{where}: a choice question needs at least two choices")
    if not all(_is_int(v) for v in values):
        raise ValueError(f"{where}: choice values must be integers: {values}")
    if len(set(values)) != len(values) or (lowest_first and values != sorted(values)):
        raise ValueError(f"{where}: choice values must be unique, lowest first: {values}")
    return choices


def _check_labels(question: Question) -> None:
    """No typed label may mean two different choices."""
    for key, choice in question._lookup.exact.items():
        if choice is None:
            raise ValueError(f"{question.id}: label {key!r} names two different choices")


def build_instrument(data: Mapping[str, Any], section: str) -> Instrument:
    iid = data["id"]
    stem = parse_texts(data["stem"], f"{iid} stem")
    default_options = data.get("options")
    items: list[Question] = []
    for item in data["items"]:
        qid = item["id"]
        options = item.get("options", default_options)
        if options is None:
            raise ValueError(f"{qid}: no options (neither the item's nor the instrument's)")
        question = Question(
            id=qid,
            section=section,
            kind="choice",
            text=parse_texts(item, qid),
            choices=_choices(options, qid),
            optional=False,
            ask_if=Condition.from_data(item["ask_if"]) if "ask_if" in item else None,
            scored=item.get("scored", True),
            instrument=iid,
            stem=None if item.get("standalone", False) else stem,
        )
        _check_labels(question)
        items.append(question)
    bands = tuple(
        Band(
            low=b["low"],
            high=b["high"],
            label=parse_texts(b, f"{iid} band {b.get('code')}"),
            code=b.get("code", ""),
        )
        for b in data["bands"]
    )
    instrument = Instrument(
        id=iid,
        name=data["name"],
        source=" ".join(data["source"].split()),
        licence=" ".join(data["licence"].split()),
        stem=stem,
        items=tuple(items),
        bands=bands,
    )
    _check_bands(instrument)
    return instrument


def _check_bands(instrument: Instrument) -> None:
    expected = 0
    for band in instrument.bands:
        if band.low != expected or band.high < band.low:
            raise ValueError(f"{instrument.id}: bands must run on from 0 without gaps: {band}")
        expected = band.high + 1
    if expected - 1 != instrument.max_score:
        raise ValueError(f"{instrument.id}: bands end at {expected - 1}, max score is {instrument.max_score}")


def build_script(screening: Mapping[str, Any], instruments: Mapping[str, Mapping[str, Any]]) -> Script:
    """The script from parsed TOML: ``screening`` (screening.toml) and instrument id ->
    parsed instrument file. Raises ValueError on anything inconsistent."""
    choice_sets = screening.get("choice_sets", {})
    sections: list[Section] = []
    built: dict[str, Instrument] = {}
    seen: dict[str, Question] = {}

    def check_condition(condition: Condition, where: str) -> None:
        if condition.score is not None:
            if condition.score not in instruments:
                raise ValueError(f"{where}: ask_if on unknown instrument {condition.score!r}")
            return
        target = seen.get(condition.item)  # type: ignore[arg-type]
        if target is None:
            raise ValueError(f"{where}: ask_if on {condition.item!r}, not asked before it")
        wanted = condition.value if isinstance(condition.value, tuple) else (condition.value,)
        values = {c.value for c in target.choices}
        if not set(wanted) <= values:
            raise ValueError(f"{where}: ask_if value {condition.value} not a choice of {target.id}")

    for sec in screening["sections"]:
        sid = sec["id"]
        questions: list[Question] = []
        instrument_id = sec.get("instrument")
        if instrument_id is not None:
            if instrument_id not in instruments:
                raise ValueError(f"section {sid}: no instrument file for {instrument_id!r}")
            data = instruments[instrument_id]
            if data.get("id") != instrument_id:
                raise ValueError(f"{instrument_id}.toml has id {data.get('id')!r}")
            instrument = build_instrument(data, sid)
            built[instrument_id] = instrument
            questions.extend(instrument.items)
        for q in sec.get("questions", []):
            qid = q["id"]
            kind = q.get("kind", "choice")
            if kind not in KINDS:
                raise ValueError(f"{qid}: unknown kind {kind!r}")
            raw_choices = q.get("choices", ())
            if isinstance(raw_choices, str):
                if raw_choices not in choice_sets:
                    raise ValueError(f"{qid}: unknown choice set {raw_choices!r}")
                raw_choices = choice_sets[raw_choices]
            if kind == "choice":
                choices = _choices(raw_choices, qid, lowest_first=not q.get("listed", False))
            elif raw_choices:
                raise ValueError(f"{qid}: a {kind} question has no choices")
            else:
                choices = ()
            question = Question(
                id=qid,
                section=sid,
                kind=kind,
                text=parse_texts(q.get("text"), qid),
                choices=choices,
                optional=bool(q.get("optional", False)),
                ask_if=Condition.from_data(q["ask_if"]) if "ask_if" in q else None,
                scored=False,
                instrument=None,
                stem=None,
            )
            _check_labels(question)
            questions.append(question)
        if not questions:
            raise ValueError(f"section {sid} has no questions")
        for question in questions:
            if question.id in seen:
                raise ValueError(f"question id {question.id!r} used twice")
            if question.ask_if is not None:
                check_condition(question.ask_if, question.id)
            seen[question.id] = question
        sections.append(
            Section(
                id=sid,
                title=parse_texts(sec.get("title"), f"section {sid} title"),
                questions=tuple(questions),
                intro=parse_texts(sec["intro"], f"section {sid} intro") if "intro" in sec else None,
                instrument=instrument_id,
            )
        )
    return Script(sections=tuple(sections), instruments=MappingProxyType(built))


def read_data(name: str) -> dict[str, Any]:
    """A TOML file from flows/data, parsed."""
    package = __name__.rpartition(".")[0] or "flows"
    with (resources.files(package) / "data" / name).open("rb") as f:
        return tomllib.load(f)


_INSTRUMENT_FILE = re.compile(r"^[a-z0-9_]+$")


@functools.cache
def load_script() -> Script:
    screening = read_data("screening.toml")
    instruments: dict[str, dict[str, Any]] = {}
    for section in screening["sections"]:
        iid = section.get("instrument")
        if iid is not None:
            if not _INSTRUMENT_FILE.match(iid):
                raise ValueError(f"bad instrument id {iid!r}")
            instruments[iid] = read_data(f"{iid}.toml")
    return build_script(screening, instruments)

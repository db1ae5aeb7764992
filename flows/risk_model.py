"""A learned second stage for the free-text risk detector.

The phrase list (``risk_text``) finds what it was written for and little else: on fresh
messages written as scenes ("sitter i bilen i garasjen med slangen fra eksosen") it found
about half (eval/README.md). This stage is a logistic regression over word and character
n-grams of the normalised text, trained by ``eval/train_risk_model.py`` on the synthetic
evaluation set and stored as plain weights in ``flows/data/risk_model.json``. It only ever
adds alerts: ``risk_text.detect`` asks it when no phrase matched, and a score at or above the
stored threshold counts as a possible risk (category ``possible``). No numpy at run time:
scoring a message is a few hundred dictionary look-ups.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

MODEL_FILE = Path(__file__).resolve().parent / "data" / "risk_model.json"

CHAR_GRAMS = (3, 4, 5)


def features(normalised: str) -> set[str]:
    """Word unigrams and bigrams, and character 3-5-grams inside each word (with its
    edges), of text already passed through ``risk_text.normalise``."""
    words = normalised.split()
    out = {f"b:{a} {b}" for a, b in zip(words, words[1:], strict=False)}
    for w in words:
        out.update(_word_features(w))
    return out


@lru_cache(maxsize=65536)
def _word_features(word: str) -> tuple[str, ...]:
    padded = f" {word} "
    grams = [f"c:{padded[i : i + n]}" for n in CHAR_GRAMS for i in range(len(padded) - n + 1)]
    return (f"w:{word}", *grams)


@dataclass(frozen=True)
class RiskModel:
    weights: dict[str, float]
    bias: float
    threshold: float

    def score(self, feats: Iterable[str]) -> float:
        """The model's probability that a message with these features shows risk."""
        z = self.bias + sum(self.weights.get(f, 0.0) for f in feats)
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


@cache
def model() -> RiskModel | None:
    """The stored model, or None when there is none (the phrases then work alone)."""
    if not MODEL_FILE.exists():
        return None
    data = json.loads(MODEL_FILE.read_text(encoding="utf-8"))
    return RiskModel(dict(data["weights"]), float(data["bias"]), float(data["threshold"]))


def score(normalised: str) -> float | None:
    m = model()
    return None if m is None else m.score(features(normalised))


def flags(normalised: str) -> bool:
    m = model()
    return m is not None and m.score(features(normalised)) >= m.threshold

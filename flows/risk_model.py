"""The learned stage of the risk detector: linear heads over what a message is about.

``eval/train_risk_judge.py`` (scikit-learn, development only) fits logistic regressions over
the features of ``flows/risk_features.py`` (concepts, concept pairs, composite facts, lemma
uni- and bigrams) and stores their weights as plain JSON in ``flows/data/risk_model.json``.
Here they are scored with dictionary look-ups: no numpy at run time, a few hundred
look-ups per window.

Heads: ``action`` (none / ask / alert), ``acute`` (an act under way), ``about`` (other vs
self) and ``category`` (suicide / self_harm / harm_others / crisis). The decision thresholds
chosen by cross-validation are stored with the weights.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

MODEL_FILE = Path(__file__).resolve().parent / "data" / "risk_model.json"


@dataclass(frozen=True)
class Head:
    """A softmax (or, with one score, logistic) regression over sparse binary features."""

    classes: tuple[str, ...]
    bias: tuple[float, ...]
    weights: dict[str, tuple[float, ...]]

    def probabilities(self, feats: Iterable[str]) -> dict[str, float]:
        z = list(self.bias)
        get = self.weights.get
        for f in feats:
            w = get(f)
            if w is not None:
                for i, v in enumerate(w):
                    z[i] += v
        if len(z) == 1:  # binary: the score of the second class
            p = 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z[0]))))
            return {self.classes[0]: 1.0 - p, self.classes[1]: p}
        top = max(z)
        exps = [math.exp(v - top) for v in z]
        total = sum(exps)
        return {c: e / total for c, e in zip(self.classes, exps, strict=True)}


@dataclass(frozen=True)
class RiskModel:
    heads: dict[str, Head]
    thresholds: dict[str, float]


def from_json(data: dict) -> RiskModel:  # type: ignore[type-arg]
    heads = {
        name: Head(
            tuple(h["classes"]),
            tuple(float(b) for b in h["bias"]),
            {f: tuple(float(v) for v in w) for f, w in h["weights"].items()},
        )
        for name, h in data["heads"].items()
    }
    return RiskModel(heads, {k: float(v) for k, v in data["thresholds"].items()})


@cache
def model() -> RiskModel | None:
    """The stored model, or None when there is none (then only the rules answer)."""
    if not MODEL_FILE.exists():
        return None
    return from_json(json.loads(MODEL_FILE.read_text(encoding="utf-8")))

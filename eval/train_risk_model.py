"""Train the learned stage of the risk detector (flows/risk_model.py) and write its weights.

    python eval/train_risk_model.py            # cross-validate, train, write flows/data/risk_model.json
    python eval/train_risk_model.py --dry-run  # cross-validate only

Logistic regression over word and character n-grams (``risk_model.features``), trained with
AdaGrad and L2 in plain Python: deterministic (fixed seed and order), no numpy. Trained on
every split except the held-out ones (``--split tuned``); ``blind5`` and ``blind6`` are never
read here. The threshold is chosen by 5-fold cross-validation so that the model alone leaves at least
``--specificity`` of the non-risk messages alone out of fold: the model should add alerts a
phrase list cannot find, not drown the therapists in false ones.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval.evaluate_risk import HELD_OUT_COMPLEMENT, load_rows  # noqa: E402
from flows.risk_model import MODEL_FILE, features  # noqa: E402
from flows.risk_text import model_text  # noqa: E402

SEED = 20261122
FOLDS = 5


def train(
    xs: Sequence[set[str]], ys: Sequence[int], *, epochs: int, rate: float, l2: float
) -> tuple[dict[str, float], float]:
    weights: dict[str, float] = defaultdict(float)
    squares: dict[str, float] = defaultdict(lambda: 1e-8)
    bias, bias_sq = 0.0, 1e-8
    order = list(range(len(xs)))
    rng = random.Random(SEED)
    for _ in range(epochs):
        rng.shuffle(order)
        for i in order:
            z = bias + sum(weights[f] for f in xs[i])
            p = 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))
            g = p - ys[i]
            for f in xs[i]:
                grad = g + l2 * weights[f]
                squares[f] += grad * grad
                weights[f] -= rate * grad / math.sqrt(squares[f])
            bias_sq += g * g
            bias -= rate * g / math.sqrt(bias_sq)
    return dict(weights), bias


def probability(weights: dict[str, float], bias: float, feats: set[str]) -> float:
    z = bias + sum(weights.get(f, 0.0) for f in feats)
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


def fold_of(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % FOLDS


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--rate", type=float, default=0.1)
    ap.add_argument("--l2", type=float, default=0.03)
    ap.add_argument("--specificity", type=float, default=0.95)
    ap.add_argument("--prune", type=float, default=0.02, help="drop weights smaller than this")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)

    rows = load_rows(split=HELD_OUT_COMPLEMENT)
    xs = [features(model_text(r.text)) for r in rows]
    ys = [int(r.risk) for r in rows]
    hyper = {"epochs": args.epochs, "rate": args.rate, "l2": args.l2}

    out_of_fold = [0.0] * len(rows)
    for k in range(FOLDS):
        train_at = [i for i, r in enumerate(rows) if fold_of(r.text) != k]
        weights, bias = train([xs[i] for i in train_at], [ys[i] for i in train_at], **hyper)
        for i, r in enumerate(rows):
            if fold_of(r.text) == k:
                out_of_fold[i] = probability(weights, bias, xs[i])
    negatives = sorted(p for p, y in zip(out_of_fold, ys, strict=True) if not y)
    cut = min(len(negatives) - 1, math.ceil(args.specificity * len(negatives)))
    threshold = negatives[cut] if cut < len(negatives) else 1.0
    threshold = max(threshold, 0.5)
    tp = sum(1 for p, y in zip(out_of_fold, ys, strict=True) if y and p >= threshold)
    tn = sum(1 for p, y in zip(out_of_fold, ys, strict=True) if not y and p < threshold)
    pos, neg = sum(ys), len(ys) - sum(ys)
    cv = {
        "folds": FOLDS,
        "threshold": round(threshold, 4),
        "sensitivity_model_alone": round(tp / pos, 3),
        "specificity_model_alone": round(tn / neg, 3),
    }
    print(f"{len(rows)} messages ({pos} risk) from the tuned splits; {FOLDS}-fold cross-validation:")
    print(f"  threshold {threshold:.3f}: model alone out of fold sensitivity {tp}/{pos} = {tp / pos:.3f},"
          f" specificity {tn}/{neg} = {tn / neg:.3f}")  # fmt: skip
    if args.dry_run:
        return 0

    weights, bias = train(xs, ys, **hyper)
    kept = {f: round(w, 4) for f, w in sorted(weights.items()) if abs(w) >= args.prune}
    document = {
        "about": "learned stage of flows/risk_text.py; written by eval/train_risk_model.py, do not edit",
        "trained_on": f"eval/risk_messages.csv --split {HELD_OUT_COMPLEMENT} ({len(rows)} messages)",
        "hyperparameters": {**hyper, "prune": args.prune, "seed": SEED},
        "cross_validation": cv,
        "threshold": round(threshold, 4),
        "bias": round(bias, 4),
        "weights": kept,
    }
    MODEL_FILE.write_text(json.dumps(document, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {MODEL_FILE.name}: {len(kept)} of {len(weights)} weights")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

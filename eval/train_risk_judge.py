"""Train the learned stage of the risk detector (flows/risk_model.py) and write its weights.

    pip install -e '.[train]'                 # scikit-learn, for training only
    python eval/train_risk_judge.py            # cross-validate, choose thresholds, write the JSON
    python eval/train_risk_judge.py --dry-run  # cross-validate only

Logistic regressions (scikit-learn, liblinear/lbfgs, fixed seed) over the features of
``flows/risk_features.py``: what the message is about (concepts, concept pairs, composite
facts) plus lemma uni- and bigrams. Four heads: ``action`` (none/ask/alert), ``acute``,
``about`` (other vs self, risk rows only) and ``category`` (risk rows only). Trained on every
split of eval/risk_messages.csv except the held-out ones (eval/README.md); the held-out
splits are never read here.

Thresholds come from 5-fold cross-validation (out-of-fold probabilities): ``alert`` is the
lowest threshold that keeps out-of-fold alerts on non-risk messages at or under
``--none-alert``; ``ask`` likewise for asks (``--none-ask``); ``acute`` the highest that
keeps 0.95 of the acute rows. The weights are stored rounded, and small ones pruned, as plain
JSON: the bot needs no numpy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from sklearn.feature_extraction import DictVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from eval.evaluate_risk import HELD_OUT_COMPLEMENT, Row, load_rows  # noqa: E402
from flows.risk_features import features, message_features, read, windows  # noqa: E402
from flows.risk_model import MODEL_FILE  # noqa: E402

SEED = 20261208
FOLDS = 5
HEADS = {
    "alert": ("no", "alert"),
    "risk": ("no", "risk"),
    "acute": ("no", "acute"),
    "about": ("self", "other"),
    "category": ("suicide", "self_harm", "harm_others", "crisis"),
}


def label(row: Row, head: str) -> str | None:
    if head == "alert":
        return "alert" if row.action == "alert" else "no"
    if head == "risk":
        return "risk" if row.risk else "no"
    if head == "acute":
        return "acute" if row.acute else "no"
    if not row.risk:
        return None
    if head == "about":
        return row.about
    return row.category if row.category in HEADS["category"] else None


def fold_of(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % FOLDS


def fit(xs: list[dict[str, int]], ys: list[str], classes: tuple[str, ...], c: float, min_count: int):  # type: ignore[no-untyped-def]
    counts: Counter[str] = Counter(f for x in xs for f in x)
    keep = [{f: 1 for f in x if counts[f] >= min_count} for x in xs]
    vec = DictVectorizer()
    m = vec.fit_transform(keep)
    present = [k for k in classes if k in set(ys)]
    if len(present) < 2:
        return vec, None, present
    clf = LogisticRegression(C=c, max_iter=3000, class_weight="balanced", random_state=SEED)
    clf.fit(m, ys)
    return vec, clf, present


def predict(vec, clf, xs: list[dict[str, int]], classes: tuple[str, ...]) -> list[dict[str, float]]:  # type: ignore[no-untyped-def]
    if clf is None:
        return [{k: 1.0 if k == classes[0] else 0.0 for k in classes} for _ in xs]
    p = clf.predict_proba(vec.transform(xs))
    order = list(clf.classes_)
    return [{k: (float(row[order.index(k)]) if k in order else 0.0) for k in classes} for row in p]


def export(vec, clf, classes: tuple[str, ...], prune: float) -> dict[str, object]:  # type: ignore[no-untyped-def]
    if clf is None:
        return {"classes": list(classes), "bias": [-30.0], "weights": {}}
    names = vec.get_feature_names_out()
    order = list(clf.classes_)
    coef, bias = clf.coef_, clf.intercept_
    if coef.shape[0] == 1:  # binary: one score, for order[1]
        sign = 1.0 if order[1] == classes[1] else -1.0  # the score must be that of classes[1]
        weights = {
            str(n): [round(sign * float(w), 3)]
            for n, w in zip(names, coef[0], strict=True)
            if abs(w) >= prune
        }
        return {"classes": list(classes), "bias": [round(sign * float(bias[0]), 4)], "weights": weights}
    full = np.zeros((len(classes), coef.shape[1]))
    b = np.full(len(classes), -30.0)
    for i, k in enumerate(order):
        full[classes.index(k)] = coef[i]
        b[classes.index(k)] = bias[i]
    weights = {}
    for j, n in enumerate(names):
        col = full[:, j]
        if np.abs(col).max() >= prune:
            weights[str(n)] = [round(float(v), 3) for v in col]
    return {"classes": list(classes), "bias": [round(float(v), 4) for v in b], "weights": weights}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--c", type=float, default=1.0, help="inverse L2 strength")
    ap.add_argument("--min-count", type=int, default=2, help="drop features seen fewer times")
    ap.add_argument("--none-alert", type=float, default=0.06, help="out-of-fold alerts allowed on non-risk")
    ap.add_argument("--none-ask", type=float, default=0.15, help="out-of-fold asks allowed on non-risk")
    ap.add_argument(
        "--none-sure", type=float, default=0.03, help="risk so sure it alerts: allowed on non-risk"
    )
    ap.add_argument("--prune", type=float, default=0.02)
    ap.add_argument("--exclude", action="append", default=[], help="also leave out this split (a check)")
    ap.add_argument("--out", type=Path, default=MODEL_FILE, help="where to write the weights")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)

    rows = [r for r in load_rows(split=HELD_OUT_COMPLEMENT) if r.split not in args.exclude]
    feats = [dict.fromkeys(message_features(r.text), 1) for r in rows]
    # The detector judges every window that starts at a sentence, so a message without risk
    # is also a set of shorter windows without risk ("Ellers går det greit med familien.").
    # They are added as extra none examples, in their message's fold, never scored.
    extra = [
        (i, dict.fromkeys(features(w), 1))
        for i, r in enumerate(rows)
        if not r.risk
        for w in windows(read(r.text))[1:]
    ]
    print(f"{len(extra)} extra windows of messages without risk")
    oof: dict[str, list[dict[str, float] | None]] = {h: [None] * len(rows) for h in HEADS}
    for head, classes in HEADS.items():
        idx = [i for i, r in enumerate(rows) if label(r, head) is not None]
        for k in range(FOLDS):
            tr = [i for i in idx if fold_of(rows[i].text) != k]
            te = [i for i in idx if fold_of(rows[i].text) == k]
            more = [(i, f) for i, f in extra if fold_of(rows[i].text) != k and label(rows[i], head)]
            vec, clf, _ = fit(
                [feats[i] for i in tr] + [f for _, f in more],
                [label(rows[i], head) for i in tr] + [label(rows[i], head) for i, _ in more],
                classes,
                args.c,
                args.min_count,
            )  # type: ignore[misc]
            for i, p in zip(te, predict(vec, clf, [feats[i] for i in te], classes), strict=True):
                oof[head][i] = p

    def quantile_above(values: list[float], allowed: float) -> float:
        """The lowest threshold that lets at most ``allowed`` of ``values`` reach it."""
        v = sorted(values, reverse=True)
        k = int(allowed * len(v))
        return min(0.99, v[k] + 1e-6) if k < len(v) else 0.0

    none_i = [i for i, r in enumerate(rows) if r.action == "none"]
    p_alert = [oof["alert"][i]["alert"] for i in none_i]  # type: ignore[index]
    p_any = [oof["risk"][i]["risk"] for i in none_i]  # type: ignore[index]
    t_alert = quantile_above(p_alert, args.none_alert)
    t_ask = quantile_above(p_any, args.none_ask)
    t_sure = quantile_above(p_any, args.none_sure)
    acute_i = [i for i, r in enumerate(rows) if r.acute]
    pa = sorted(oof["acute"][i]["acute"] for i in acute_i)  # type: ignore[index]
    t_acute = max(0.2, pa[int(0.05 * len(pa))]) if pa else 0.5
    thresholds = {
        "alert": round(t_alert, 4),
        "ask": round(t_ask, 4),
        "sure": round(t_sure, 4),
        "acute": round(t_acute, 4),
        "about": 0.5,
    }

    def share(group: list[int], ok) -> str:  # type: ignore[no-untyped-def]
        return f"{sum(ok(i) for i in group)}/{len(group)}"

    a, rk = oof["alert"], oof["risk"]
    expl = [i for i, r in enumerate(rows) if r.action == "alert" and not r.acute]
    ind = [i for i, r in enumerate(rows) if r.action == "ask"]
    print(f"{len(rows)} messages; thresholds {thresholds}; out of fold (whole messages, model alone):")
    print("  explicit alerted", share(expl, lambda i: a[i]["alert"] >= t_alert))
    print("  indirect alert/ask", share(ind, lambda i: a[i]["alert"] >= t_alert or rk[i]["risk"] >= t_ask))
    print(
        "  none alerted",
        share(none_i, lambda i: a[i]["alert"] >= t_alert),
        " none asked",
        share(none_i, lambda i: a[i]["alert"] < t_alert and rk[i]["risk"] >= t_ask),
    )
    print("  acute flagged", share(acute_i, lambda i: oof["acute"][i]["acute"] >= t_acute))
    if args.dry_run:
        return 0

    heads = {}
    for head, classes in HEADS.items():
        idx = [i for i, r in enumerate(rows) if label(r, head) is not None]
        more = [(i, f) for i, f in extra if label(rows[i], head) is not None]
        vec, clf, _ = fit(
            [feats[i] for i in idx] + [f for _, f in more],
            [label(rows[i], head) for i in idx] + [label(rows[i], head) for i, _ in more],
            classes,
            args.c,
            args.min_count,
        )  # type: ignore[misc]
        heads[head] = export(vec, clf, classes, args.prune)
    doc = {
        "about": "learned stage of flows/risk_text.py; written by eval/train_risk_judge.py, do not edit",
        "trained_on": f"eval/risk_messages.csv --split {HELD_OUT_COMPLEMENT}"
        + (f" without {', '.join(args.exclude)}" if args.exclude else "")
        + f" ({len(rows)} messages)",
        "hyperparameters": {
            "C": args.c,
            "min_count": args.min_count,
            "prune": args.prune,
            "seed": SEED,
            "none_alert": args.none_alert,
            "none_ask": args.none_ask,
        },  # fmt: skip
        "thresholds": thresholds,
        "heads": heads,
    }
    args.out.write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(
        f"wrote {MODEL_FILE.name}: " + ", ".join(f"{h} {len(v['weights'])} weights" for h, v in heads.items())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Evaluate flows.risk_text.detect on the synthetic message set eval/risk_messages.csv.

    python eval/evaluate_risk.py [--split dev|test|blind2|blind3|blind4|blind5|blind6|tuned|all] [--quiet]

Prints sensitivity (risk messages detected) and specificity (non-risk messages left
alone) per language, per category and per kind, with counts and Wilson 95% intervals,
then a robustness check (every risk message again, after a negation sentence such as
"Jeg vet ikke."), then lists misses and false alarms. The texts are synthetic, written
for this set, so they may be shown. Exits 1 when a target is missed on the chosen split:
sensitivity >= 0.98 on explicit, >= 0.85 on indirect, specificity >= 0.80, and no risk
message detected alone may be lost after a negation sentence.

How the rows came about (all synthetic, written for this set):
* 501 rows written before any phrase existed; split by a hash of the text (~30% test).
* 89 rows from blind probe 1 (first-person forms of public verbal warning-sign lists, plus
  fresh phrasings): scored blind, then tuned on, so all `dev`.
* 143 rows from blind probe 2, split by the same hash; the phrases were tuned on its dev
  half only, so its 44 `test` rows are the cleanest held-out check in the set.
* 54 rows from blind probe 3: scored blind, then tuned on, so all `dev`.
* 226 rows from blind probe 4, split `blind2` (not to be confused with blind probe 2): written
  and scored before any phrase was changed for them, then tuned on. Only that first score
  (recorded in eval/README.md) measures generalisation; the split is spent.
* 372 rows from blind probe 5, split `blind3`: scored once (explicit 0.713, indirect 0.413),
  then tuned on; spent. `test` was declared spent at the same time: general forms written
  for its two explicit misses' classes.
* 239 rows from blind probe 6, split `blind4`: scored once after those changes; the phrases
  were never tuned on it, the learned stage was trained on it at the end.
* 240 ordinary answers (non-risk) in `dev`, and 258 rows from blind probe 7, split `blind5`:
  never tuned on.
* Blind probe 8, split `blind6`: written after the detector was last changed and scored once
  on it, never tuned on.
`blind5` and `blind6` are held out; `--split tuned` is everything else. Tune on that only;
look at the held-out splits only to report.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flows.risk_text import RiskHit, detect  # noqa: E402

CSV_PATH = Path(__file__).resolve().parent / "risk_messages.csv"

TARGETS = {"explicit": 0.98, "indirect": 0.85, "specificity": 0.80}

# Put in front of every risk message for the robustness check. Each ends in a clause break,
# so none of them may hide the risk that follows (an exclude stays in its own clause).
NEGATION_PREFIXES = ("Jeg vet ikke.", "Jeg sover ikke.", "Nei,", "ikke -", "I don't know.", "Not really.")


@dataclass(frozen=True)
class Row:
    text: str
    lang: str
    risk: bool
    category: str
    kind: str
    split: str


@dataclass(frozen=True)
class Result:
    row: Row
    hit: RiskHit | None

    @property
    def flagged(self) -> bool:
        return self.hit is not None


def load_rows(path: Path = CSV_PATH, split: str = "all") -> list[Row]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = [
            Row(r["text"], r["lang"], r["risk"] == "1", r["category"], r["kind"], r["split"])
            for r in csv.DictReader(f)
        ]
    if split == "all":
        return rows
    if split == HELD_OUT_COMPLEMENT:
        return [r for r in rows if r.split not in HELD_OUT]
    return [r for r in rows if r.split == split]


HELD_OUT = ("blind5", "blind6")  # never tuned on: messages the detector has not been fitted to
HELD_OUT_COMPLEMENT = "tuned"  # every split the phrases were tuned on


def run(rows: Iterable[Row], fn: Callable[[str], RiskHit | None] = detect) -> list[Result]:
    return [Result(r, fn(r.text)) for r in rows]


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


@dataclass(frozen=True)
class Rate:
    k: int
    n: int

    @property
    def value(self) -> float:
        return self.k / self.n if self.n else float("nan")

    def __str__(self) -> str:
        if not self.n:
            return f"{'-':>22}"
        lo, hi = wilson(self.k, self.n)
        return f"{self.value:5.3f} {self.k:>3}/{self.n:<3} [{lo:4.2f}-{hi:4.2f}]"


def sensitivity(results: Sequence[Result]) -> Rate:
    pos = [r for r in results if r.row.risk]
    return Rate(sum(r.flagged for r in pos), len(pos))


def specificity(results: Sequence[Result]) -> Rate:
    neg = [r for r in results if not r.row.risk]
    return Rate(sum(not r.flagged for r in neg), len(neg))


def targets_met(results: Sequence[Result]) -> dict[str, tuple[Rate, float, bool]]:
    out = {}
    for kind in ("explicit", "indirect"):
        rate = sensitivity([r for r in results if r.row.kind == kind])
        out[f"sensitivity {kind}"] = (rate, TARGETS[kind], rate.n == 0 or rate.value >= TARGETS[kind])
    spec = specificity(results)
    target = TARGETS["specificity"]
    out["specificity"] = (spec, target, spec.n == 0 or spec.value >= target)
    return out


def lost_after_prefix(
    results: Sequence[Result], prefix: str, fn: Callable[[str], RiskHit | None] = detect
) -> tuple[Rate, list[Row]]:
    """Risk messages detected with ``prefix`` in front, and those detected alone but
    lost with it (an exclude reaching across the break would show up here)."""
    pos = [r for r in results if r.row.risk]
    with_prefix = [(r, fn(f"{prefix} {r.row.text}")) for r in pos]
    lost = [r.row for r, hit in with_prefix if r.flagged and hit is None]
    return Rate(sum(hit is not None for _, hit in with_prefix), len(pos)), lost


def report(results: Sequence[Result], split: str, show_texts: bool = True) -> bool:
    print(
        f"Risk detector on eval/risk_messages.csv, split={split}: {len(results)} messages, "
        f"{sum(r.row.risk for r in results)} with risk\n"
    )
    print(f"{'group':<24}{'sensitivity  k/n   [95% CI]':>34}{'specificity  k/n   [95% CI]':>34}")

    def line(name: str, rs: Sequence[Result], spec: bool = True) -> None:
        sp = str(specificity(rs)) if spec else f"{'':>22}"
        print(f"{name:<24}{sensitivity(rs)!s:>34}{sp:>34}")

    line("overall", results)
    for lang in ("nb", "nn", "en"):
        line(f"lang {lang}", [r for r in results if r.row.lang == lang])
    for cat in ("suicide", "harm_others", "self_harm", "crisis"):
        line(f"category {cat}", [r for r in results if r.row.category == cat], spec=False)
    for kind in ("explicit", "indirect"):
        line(f"kind {kind}", [r for r in results if r.row.kind == kind], spec=False)
    for lang in ("nb", "nn", "en"):
        for kind in ("explicit", "indirect"):
            rs = [r for r in results if r.row.lang == lang and r.row.kind == kind]
            line(f"  {lang} {kind}", rs, spec=False)

    flagged = [r for r in results if r.row.risk and r.flagged]
    same = sum(r.hit is not None and r.hit.category == r.row.category for r in flagged)
    print(f"\ncategory agrees with label on {same}/{len(flagged)} detected risk messages")

    print("\nRobustness: every risk message again, after a negation sentence")
    all_lost: list[tuple[str, Row]] = []
    for prefix in NEGATION_PREFIXES:
        rate, lost = lost_after_prefix(results, prefix)
        all_lost += [(prefix, row) for row in lost]
        print(f"  {prefix!r:<18} sensitivity {rate!s}   lost vs alone: {len(lost)}")

    print("\nTargets:")
    ok = True
    for name, (rate, target, met) in targets_met(results).items():
        ok &= met
        print(f"  {name:<24} {rate.value:5.3f} (target >= {target:.2f})  {'OK' if met else 'MISSED'}")
    ok &= not all_lost
    verdict = "MISSED" if all_lost else "OK"
    print(f"  {'lost after a negation':<24} {len(all_lost):>5} (target  = 0)     {verdict}")

    if show_texts:
        misses = [r for r in results if r.row.risk and not r.flagged]
        alarms = [r for r in results if not r.row.risk and r.flagged]
        print(f"\nMisses ({len(misses)}):")
        for r in misses:
            print(f"  [{r.row.lang} {r.row.category}/{r.row.kind}] {r.row.text}")
        print(f"\nFalse alarms ({len(alarms)}):")
        for r in alarms:
            assert r.hit is not None
            print(f"  [{r.row.lang}] {r.row.text}  <- {r.hit.category}: {r.hit.phrase}")
        print(f"\nLost after a negation sentence ({len(all_lost)}):")
        for prefix, row in all_lost:
            print(f"  [{row.lang} {row.category}/{row.kind}] {prefix} {row.text}")
        wrong = [r for r in flagged if r.hit is not None and r.hit.category != r.row.category]
        print(f"\nDetected with another category ({len(wrong)}):")
        for r in wrong:
            assert r.hit is not None
            print(f"  [{r.row.lang} {r.row.category}->{r.hit.category}] {r.row.text}")
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    splits = ("dev", "test", "blind2", "blind3", "blind4", *HELD_OUT, "tuned", "all")
    ap.add_argument("--split", choices=splits, default="all")
    ap.add_argument("--quiet", action="store_true", help="figures only, no message texts")
    args = ap.parse_args(argv)
    rows = load_rows(split=args.split)
    start = time.perf_counter()
    results = run(rows)
    elapsed = time.perf_counter() - start
    ok = report(results, args.split, show_texts=not args.quiet)
    print(f"\n{len(rows)} messages in {elapsed * 1e3:.1f} ms (first call compiles the phrases)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

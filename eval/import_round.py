"""Import a round file (text,lang,action,acute,about,category,kind) into eval/risk_messages.csv.

    python eval/import_round.py ROUND.csv SPLIT          # append its rows as split SPLIT
    python eval/import_round.py ROUND.csv SPLIT --check  # validate and count only

Why a script: every round is imported the same way (labels checked, exact duplicates of rows
already in the set dropped and counted), so the split a figure names is the file it came from.
A held-out round may only be imported once it is spent (scored once; eval/README.md).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval.evaluate_risk import CSV_PATH  # noqa: E402
from flows.risk_lexicon import normalise  # noqa: E402

COLUMNS = ["text", "lang", "risk", "category", "kind", "split", "action", "acute", "about"]
KINDS = {
    "acute": ("alert", "1"),
    "explicit": ("alert", "0"),
    "indirect": ("ask", "0"),
    "other": ("alert", "0"),
    "none": ("none", "0"),
}
CATEGORIES = ("suicide", "self_harm", "harm_others", "crisis", "")


def check(rows: list[dict[str, str]]) -> list[str]:
    """Label errors, one line each; empty when the round is consistent."""
    errors = []
    for i, r in enumerate(rows, start=2):
        k = (r.get("kind") or "").strip()
        if r.get("lang") not in ("nb", "nn", "en"):
            errors.append(f"line {i}: lang {r.get('lang')!r}")
        if k not in KINDS or (r.get("action"), str(r.get("acute")).strip()) != KINDS[k]:
            errors.append(f"line {i}: kind/action/acute {k!r} {r.get('action')!r} {r.get('acute')!r}")
        if r.get("about") not in ("self", "other") or r.get("category") not in CATEGORIES:
            errors.append(f"line {i}: about/category {r.get('about')!r} {r.get('category')!r}")
        elif (k == "none") != (r["category"] == ""):
            errors.append(f"line {i}: category {r['category']!r} for kind {k}")
        if not (r.get("text") or "").strip():
            errors.append(f"line {i}: empty text")
    return errors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("split")
    ap.add_argument("--check", action="store_true", help="validate and count, write nothing")
    args = ap.parse_args(argv)
    with args.file.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    errors = check(rows)
    for e in errors:
        print(e)
    counts = Counter((r.get("lang"), r.get("kind")) for r in rows)
    print(f"{len(rows)} rows, {len(errors)} errors;", dict(sorted(counts.items(), key=str)))
    if errors or args.check:
        return 1 if errors else 0
    with CSV_PATH.open(encoding="utf-8", newline="") as f:
        existing = list(csv.DictReader(f))
    if any(r["split"] == args.split for r in existing):
        print(f"split {args.split} is already in the set")
        return 1
    seen = {normalise(r["text"]) for r in existing}
    new, dropped = [], 0
    for r in rows:
        key = normalise(r["text"])
        if key in seen:
            dropped += 1
            continue
        seen.add(key)
        risk = "0" if r["kind"] == "none" else "1"
        new.append({**{c: r.get(c, "") for c in COLUMNS}, "risk": risk, "split": args.split})
    with CSV_PATH.open("a", encoding="utf-8", newline="") as f:
        csv.DictWriter(f, COLUMNS).writerows(new)
    print(f"imported {len(new)} rows as {args.split}; {dropped} duplicates of rows already in the set")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Evaluate flows.risk_text.judge on eval/risk_messages.csv or on any round file.

    python eval/evaluate_risk.py [--split NAME] [--quiet]
    python eval/evaluate_risk.py --file /path/round.csv [--quiet]
    python eval/evaluate_risk.py --file round.csv --legacy /tmp/oldrisk   # an older detector

Every message is judged into one of four answers (alert, alert + acute, ask, none) and
compared with its label. Per language (nb, nn, en) and overall, with counts and Wilson 95%
intervals, and against the targets of issue 29:

* explicit risk (label alert, not acute) answered alert: >= 0.98
* indirect risk (label ask) answered alert or ask: >= 0.95
* acts under way (label acute) flagged acute: >= 0.90
* messages without risk (label none) not alerted: >= 0.90, and asked: <= 0.20

Also: the answers per kind, how often ``acute`` and ``about`` agree with the label, and a
robustness check (every risk message again after a neutral or denial sentence: its answer
may not get milder). Exits 1 when a target is missed. The texts are synthetic, so they may
be shown (``--quiet`` shows none).

Row files: ``eval/risk_messages.csv`` (columns text, lang, risk, category, kind, split,
action, acute, about; see eval/README.md for the splits and which are held out), or a round
file with columns text, lang, action, acute, about, category, kind.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flows.risk_text import RiskJudgement, judge  # noqa: E402

CSV_PATH = Path(__file__).resolve().parent / "risk_messages.csv"
LANGS = ("nb", "nn", "en")
TARGETS = {"explicit": 0.98, "indirect": 0.95, "acute": 0.90, "none_not_alerted": 0.90, "none_asked": 0.20}
# Never trained or tuned on: messages the detector has not been fitted to.
HELD_OUT = ("blind5", "blind6")
HELD_OUT_COMPLEMENT = "tuned"  # every split except the held-out ones
PREFIXES = ("Jeg vet ikke.", "Nei.", "Hei, takk for sist.", "I don't know.", "No.", "Eg har ikkje sove godt.")


@dataclass(frozen=True)
class Row:
    text: str
    lang: str
    action: str  # alert | ask | none
    acute: bool
    about: str  # self | other
    category: str
    kind: str
    split: str

    @property
    def risk(self) -> bool:
        return self.action != "none"

    @property
    def group(self) -> str:
        """Which target the row counts towards."""
        if self.acute:
            return "acute"
        return {"alert": "explicit", "ask": "indirect"}.get(self.action, "none")


def _truthy(v: str | None) -> bool:
    return (v or "").strip().lower() in ("1", "true", "yes", "ja")


def load_rows(path: Path = CSV_PATH, split: str = "all") -> list[Row]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = []
        for r in csv.DictReader(f):
            action = (r.get("action") or "").strip() or ("alert" if r.get("risk") == "1" else "none")
            rows.append(
                Row(
                    r["text"],
                    r["lang"].strip(),
                    action,
                    _truthy(r.get("acute")),
                    (r.get("about") or "self").strip() or "self",
                    (r.get("category") or "").strip(),
                    (r.get("kind") or "").strip(),
                    (r.get("split") or path.stem).strip(),
                )
            )
    if split == "all":
        return rows
    if split == HELD_OUT_COMPLEMENT:
        return [r for r in rows if r.split not in HELD_OUT]
    return [r for r in rows if r.split == split]


def splits(path: Path = CSV_PATH) -> list[str]:
    with path.open(encoding="utf-8", newline="") as f:
        return sorted({r["split"] for r in csv.DictReader(f)})


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


@dataclass(frozen=True)
class Result:
    row: Row
    got: RiskJudgement


Judge = Callable[[str], RiskJudgement]


def run(rows: Iterable[Row], fn: Judge = judge) -> list[Result]:
    return [Result(r, fn(r.text)) for r in rows]


def rate(results: Sequence[Result], group: str, ok: Callable[[RiskJudgement], bool]) -> Rate:
    rs = [r for r in results if r.row.group == group]
    return Rate(sum(ok(r.got) for r in rs), len(rs))


def figures(results: Sequence[Result]) -> dict[str, tuple[Rate, float, bool]]:
    """The five target figures: name -> (rate, target, met)."""
    checks = {
        "explicit answered alert": ("explicit", lambda j: j.action == "alert", "explicit", False),
        "indirect answered alert/ask": ("indirect", lambda j: j.action != "none", "indirect", False),
        "acute flagged acute": ("acute", lambda j: j.acute, "acute", False),
        "none not alerted": ("none", lambda j: j.action != "alert", "none_not_alerted", False),
        "none asked": ("none", lambda j: j.action == "ask", "none_asked", True),
    }
    out = {}
    for name, (group, ok, target_key, at_most) in checks.items():
        r = rate(results, group, ok)
        t = TARGETS[target_key]
        met = r.n == 0 or (r.value <= t if at_most else r.value >= t)
        out[name] = (r, t, met)
    return out


_SEVERITY = {"none": 0, "ask": 1, "alert": 2}


def severity(j: RiskJudgement) -> int:
    return _SEVERITY[j.action] + (1 if j.acute else 0)


def report(results: Sequence[Result], title: str, show_texts: bool = True, fn: Judge = judge) -> bool:
    print(
        f"Risk detector on {title}: {len(results)} messages, {sum(r.row.risk for r in results)} with risk\n"
    )
    ok = True
    scopes: list[tuple[str, list[Result]]] = [("overall", list(results))]
    scopes += [(lang, [r for r in results if r.row.lang == lang]) for lang in LANGS]
    print(f"{'figure':<30}" + "".join(f"{name:>26}" for name, _ in scopes) + "   target")
    per_scope = [figures(rs) for _, rs in scopes]
    for name in per_scope[0]:
        cells = []
        for f in per_scope:
            r, t, met = f[name]
            ok &= met
            cells.append(f"{r!s}{'' if met or not r.n else '!'}")
        r0, t0, _ = per_scope[0][name]
        op = "<=" if name == "none asked" else ">="
        print(f"{name:<30}" + "".join(f"{c:>26}" for c in cells) + f"   {op} {t0:.2f}")

    risk = [r for r in results if r.row.risk and r.got.risk]
    about = Rate(sum(r.got.about == r.row.about for r in risk), len(risk))
    acute = Rate(sum(r.got.acute == r.row.acute for r in results), len(results))
    other = [r for r in results if r.row.about == "other" and r.row.risk]
    other_alert = Rate(sum(r.got.action == "alert" for r in other), len(other))
    cat = Rate(
        sum(r.got.category == r.row.category for r in risk if r.row.category),
        len([r for r in risk if r.row.category]),
    )
    print(f"\n{'acute agrees with label':<30}{acute!s:>26}   (all messages)")
    print(f"{'about agrees with label':<30}{about!s:>26}   (risk messages answered risk)")
    print(f"{'about other answered alert':<30}{other_alert!s:>26}")
    print(f"{'category agrees with label':<30}{cat!s:>26}")
    poison = [r for r in results if r.row.acute]
    print(f"{'acute with poisoning flag':<30}{Rate(sum(r.got.poisoning for r in poison), len(poison))!s:>26}")

    print("\nAnswers per labelled kind (alert+acute / alert / ask / none):")
    for kind in sorted({r.row.kind for r in results}):
        rs = [r for r in results if r.row.kind == kind]
        counts = [
            sum(r.got.acute for r in rs),
            sum(r.got.action == "alert" and not r.got.acute for r in rs),
            sum(r.got.action == "ask" for r in rs),
            sum(r.got.action == "none" for r in rs),
        ]
        print(f"  {kind:<12} n={len(rs):<4} " + " / ".join(str(c) for c in counts))

    print("\nRobustness: every risk message again after a neutral or denial sentence")
    milder: list[tuple[str, Row]] = []
    for prefix in PREFIXES:
        lost = [
            r.row for r in results if r.row.risk and severity(fn(f"{prefix} {r.row.text}")) < severity(r.got)
        ]
        milder += [(prefix, row) for row in lost]
        print(f"  {prefix!r:<26} answered milder: {len(lost)}")
    ok &= not milder
    print(f"\nAll targets met: {'YES' if ok else 'NO'}")

    if show_texts:

        def show(label: str, rs: list[Result]) -> None:
            print(f"\n{label} ({len(rs)}):")
            for r in rs:
                g, acute = r.got, " acute" if r.got.acute else ""
                where = f"{r.row.lang} {r.row.group}/{r.row.category}"
                print(f"  [{where}] -> {g.action}{acute} {g.about} {g.cue}: {r.row.text[:300]}")

        show(
            "Explicit not alerted",
            [r for r in results if r.row.group == "explicit" and r.got.action != "alert"],
        )
        show("Indirect missed", [r for r in results if r.row.group == "indirect" and not r.got.risk])
        show("Acute not flagged acute", [r for r in results if r.row.group == "acute" and not r.got.acute])
        show("None alerted", [r for r in results if r.row.group == "none" and r.got.action == "alert"])
        show("None asked", [r for r in results if r.row.group == "none" and r.got.action == "ask"])
        show("About wrong", [r for r in results if r.row.risk and r.got.risk and r.got.about != r.row.about])
        show("Answered milder after a prefix", [Result(row, judge(f"{p} {row.text}")) for p, row in milder])
    return ok


def legacy_judge(directory: str) -> Judge:
    """The detector of an older commit (its flows/ copied to ``directory``) as a judge:
    every hit was an alert, and it knew nothing of acute or about."""
    sys.path.insert(0, directory)
    for name in [m for m in sys.modules if m == "flows" or m.startswith("flows.")]:
        del sys.modules[name]
    old = importlib.import_module("flows.risk_text")
    none = RiskJudgement("none", False, "self", None, False, "")

    def fn(text: str) -> RiskJudgement:
        hit = old.detect(text)
        return none if hit is None else RiskJudgement("alert", False, "self", hit.category, False, "legacy")

    return fn


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="all", help=f"a split of the set, '{HELD_OUT_COMPLEMENT}' or 'all'")
    ap.add_argument("--file", type=Path, help="evaluate this round file instead of the set")
    ap.add_argument("--legacy", help="directory holding an older flows/ package to evaluate instead")
    ap.add_argument("--quiet", action="store_true", help="figures only, no message texts")
    args = ap.parse_args(argv)
    if args.file:
        rows, title = load_rows(args.file), str(args.file)
    else:
        known = [*splits(), HELD_OUT_COMPLEMENT, "all"]
        if args.split not in known:
            ap.error(f"--split must be one of {', '.join(known)}")
        rows, title = load_rows(split=args.split), f"eval/risk_messages.csv split={args.split}"
    fn = legacy_judge(args.legacy) if args.legacy else judge
    start = time.perf_counter()
    results = run(rows, fn)
    elapsed = time.perf_counter() - start
    ok = report(results, title + (" (legacy detector)" if args.legacy else ""), not args.quiet, fn)
    print(f"\n{len(rows)} messages in {elapsed * 1e3:.0f} ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

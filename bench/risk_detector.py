"""The free-text risk detector's speed: CPU per message, typical, risky and pathological.

    python bench/risk_detector.py

Every free-text message of every citizen goes through ``flows.risk_text.judge`` (lexicon
tagging, the acute rules, and the learned stage on every window of sentences), so it must
stay far below the per-update budget. The figures are printed, not asserted; what to expect:
a typical message a few hundred µs at most, a 5,000-character one well under 50 ms. The
first call of a sentence is the costly one (sentences are cached), so every batch here runs
with the caches cleared.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from flows import risk_features  # noqa: E402
from flows.risk_text import judge, warm_up  # noqa: E402

TYPICAL = [  # no risk: what almost every message looks like
    "Hei! Jeg har hatt det litt tungt på jobb i det siste og sover dårlig, kan dere hjelpe meg?",
    "I've been feeling anxious at work lately and can't really concentrate, is there a wait?",
    "Eg har vore sliten lenge og har lyst å snakke med nokon om korleis eg har det heime.",
    "Hvor lang er ventetiden nå? Jeg har fått time hos fastlegen, men vil gjerne snakke med dere.",
]
RISKY = [
    "jeg orker ikke mer, har tenkt på å ta livet mitt og vet ikke hva jeg skal gjøre nå",
    "I don't know what to do anymore, honestly I think everyone would be better off without me",
    "har tatt alle pillene mine for en halvtime siden, begynner å bli svimmel",
]
LONG = [
    "a" * 5000,
    "jeg " * 1250,
    ("ta livet " * 600)[:5000],
    "orker ikke " * 455,
    "kutt" * 1250,
    "i want to " * 500,
    ("hopeless " * 600)[:5000],
    "æøå" * 1667,
    "1 " * 2500,
    "abcdefghij klmnopqrs tuvwxyzæ " * 170,
    ("jeg " + "x" * 40 + " ") * 110,
    "ja. " * 1250,
]
LONG.append(" ".join(f"Setning nummer {i} handler om jobb og søvn." for i in range(120))[:5000])
TARGETS = {"typical": 1e-3, "risky": 2e-3, "5,000 characters, worst": 50e-3}  # what to expect, not asserted


def cpu_per_call(texts: list[str], rounds: int = 200) -> float:
    """Best of five batches, in CPU time."""
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(rounds):
            risk_features.read_sentence.cache_clear()
            for text in texts:
                judge(text)
        best = min(best, (time.process_time() - start) / (rounds * len(texts)))
    return best


def main() -> int:
    start = time.process_time()
    warm_up()
    judge("warm up")
    compile_s = time.process_time() - start
    figures = {
        "typical": cpu_per_call(TYPICAL),
        "risky": cpu_per_call(RISKY),
        "5,000 characters, worst": max(cpu_per_call([t], rounds=3) for t in LONG),
    }
    print(f"risk detector: compile and load {compile_s * 1000:.0f} ms (once, at start)")
    print(f"{'message':<26} {'CPU per message':>16} {'target':>10}  result")
    failed = False
    for name, value in figures.items():
        ok = value < TARGETS[name]
        failed |= not ok
        shown = f"{value * 1e6:.0f} µs" if value < 1e-3 else f"{value * 1e3:.1f} ms"
        target = f"{TARGETS[name] * 1e6:.0f} µs" if TARGETS[name] < 1e-3 else f"{TARGETS[name] * 1e3:.0f} ms"
        print(f"{name:<26} {shown:>16} {'< ' + target:>10}  {'as expected' if ok else 'SLOW'}")
    if failed:
        print("(slower than expected: figures are reported, not asserted)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

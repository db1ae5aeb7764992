"""Leave one round out: how the design generalises to a round no weight has seen.

    python eval/leave_one_out.py round_a round_b round_c   # one process per round, in parallel

For each named split, the learned stage is trained on every tuned split except that one
(``eval/train_risk_judge.py --exclude SPLIT``, thresholds chosen by cross-validation without
it), and the split is then judged whole (windows, rules, thresholds) with those weights. The
lexicon and rules are the current ones, and they were changed by looking at the rounds, so the
figure is optimistic; but no weight saw the round. Prints the figures per language.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval.evaluate_risk import LANGS, figures, load_rows, run  # noqa: E402
from flows import risk_model  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    names = argv if argv is not None else sys.argv[1:]
    if not names:
        print(__doc__)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="risk_loo_"))
    procs = {
        n: subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "eval" / "train_risk_judge.py"),
                "--exclude",
                n,
                "--out",
                str(tmp / f"{n}.json"),
            ],
            stdout=subprocess.DEVNULL,
        )
        for n in names
    }
    for n, p in procs.items():
        if p.wait() != 0:
            print(f"training without {n} failed")
            return 1
    for n in names:
        risk_model.MODEL_FILE = tmp / f"{n}.json"
        risk_model.model.cache_clear()
        rows = load_rows(split=n)
        print(f"\nleave {n} out ({len(rows)} messages): overall / " + " / ".join(LANGS))
        res = run(rows)
        per = {lang: figures([r for r in res if r.row.lang == lang]) for lang in LANGS}
        for key, (rate, _target, _ok) in figures(res).items():
            cells = " ".join(f"{per[lang][key][0].value:.3f}" for lang in LANGS)
            print(f"  {key:18} {rate}   {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

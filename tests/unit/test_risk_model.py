"""The learned stage of the free-text risk detector (flows/risk_model.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from flows import risk_model
from flows.risk_text import detect, model_text

ROOT = Path(__file__).resolve().parents[2]
HELD_OUT = ("blind5", "blind6")  # as in eval/evaluate_risk.py


def _tuned_rows() -> list[dict[str, str]]:
    with (ROOT / "eval" / "risk_messages.csv").open(encoding="utf-8", newline="") as f:
        return [r for r in csv.DictReader(f) if r["split"] not in HELD_OUT]  # never the held-out splits


def test_the_stored_model_loads_with_a_threshold_chosen_by_cross_validation() -> None:
    model = risk_model.model()
    assert model is not None and 0.5 <= model.threshold < 1.0
    assert len(model.weights) > 1000


def test_features_are_word_and_character_grams() -> None:
    feats = risk_model.features("vil do")
    assert {"w:vil", "w:do", "b:vil do", "c: vi", "c:vil ", "c: do "} <= feats


def test_on_its_training_rows_it_finds_most_risk_and_leaves_most_ordinary_text_alone() -> None:
    """A regression guard (in-sample, so optimistic): the held-out figures are in eval/README.md."""
    rows = _tuned_rows()
    flagged = [(r["risk"] == "1", risk_model.flags(model_text(r["text"]))) for r in rows]
    risk = [hit for is_risk, hit in flagged if is_risk]
    calm = [not hit for is_risk, hit in flagged if not is_risk]
    assert sum(risk) / len(risk) >= 0.80
    assert sum(calm) / len(calm) >= 0.95


ORDINARY = ["I want to feel better", "Å sove bedre", "kan dere ringe meg i morgen", "ja"]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_answers_are_not_flagged(text: str) -> None:
    assert detect(text) is None


def test_a_phrase_hit_is_reported_as_the_phrase_not_the_model() -> None:
    hit = detect("jeg vil ta livet mitt")
    assert hit is not None and hit.kind == "explicit"


def test_a_model_hit_is_a_possible_risk_and_survives_a_sentence_in_front() -> None:
    # a scene with no phrase in the list: the learned stage must carry it
    text = next(
        r["text"]
        for r in _tuned_rows()
        if r["risk"] == "1" and (hit := detect(r["text"])) is not None and hit.kind == "learned"
    )
    assert (detect(text).category, detect(text).kind) == ("possible", "learned")
    assert detect(f"Jeg vet ikke. {text}") is not None


def test_without_a_model_file_the_phrases_work_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(risk_model, "MODEL_FILE", tmp_path / "missing.json")
    risk_model.model.cache_clear()
    try:
        assert risk_model.model() is None
        assert detect("jeg vil ta livet mitt") is not None
        assert not risk_model.flags("anything at all")
    finally:
        risk_model.model.cache_clear()

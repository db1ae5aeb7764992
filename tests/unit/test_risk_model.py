"""The learned stage of the risk detector (flows/risk_model.py) and its features."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from flows import risk_model, risk_text
from flows.risk_features import features, read


def test_the_stored_model_has_every_head_and_thresholds() -> None:
    model = risk_model.model()
    assert model is not None
    assert set(model.heads) == {"alert", "risk", "acute", "about", "category"}
    assert 0.0 < model.thresholds["alert"] < 1.0 and 0.0 < model.thresholds["ask"] < 1.0
    assert model.heads["category"].classes == ("suicide", "self_harm", "harm_others", "crisis")
    assert sum(len(h.weights) for h in model.heads.values()) > 1000


def test_a_head_scores_probabilities() -> None:
    binary = risk_model.Head(("no", "yes"), (0.0,), {"a": (2.0,)})
    assert binary.probabilities([]) == {"no": 0.5, "yes": 0.5}
    p = binary.probabilities(["a", "unknown"])
    assert p["yes"] > 0.85 and abs(sum(p.values()) - 1) < 1e-9
    multi = risk_model.Head(("x", "y", "z"), (0.0, 0.0, 0.0), {"a": (0.0, 3.0, 0.0)})
    q = multi.probabilities(["a"])
    assert max(q, key=q.__getitem__) == "y" and abs(sum(q.values()) - 1) < 1e-9


def test_from_json_round_trips() -> None:
    doc = {"heads": {"h": {"classes": ["no", "yes"], "bias": [0.5], "weights": {"k:self": [1.0]}}},
           "thresholds": {"alert": 0.5}}  # fmt: skip
    m = risk_model.from_json(json.loads(json.dumps(doc)))
    assert m.heads["h"].weights == {"k:self": (1.0,)} and m.thresholds == {"alert": 0.5}


def test_features_say_what_the_message_is_about() -> None:
    feats = features(read("har tatt 30 paracet for en time siden"))
    assert {"k:took", "k:means_med", "k:number", "k:just_past", "f:drug_taken", "f:drug_taken_now"} <= feats
    assert "p:means_med+took" in feats and "w:parac" in feats  # lemma of paracet
    denied = features(read("jeg har ikke lyst til å dø"))
    assert "n:die" in denied


def test_the_model_knows_the_features_the_lexicon_produces() -> None:
    model = risk_model.model()
    assert model is not None
    known = set(model.heads["alert"].weights)
    assert {"k:suicide", "k:means_med", "k:past_long"} <= known


def test_without_the_model_the_rules_still_find_acts_under_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(risk_model, "model", lambda: None)
    assert risk_text.judge("har tatt mange piller nå").acute
    assert risk_text.judge("jeg vil ikke leve mer").action == "none"  # the model's call


def test_the_bot_needs_no_numpy_at_run_time() -> None:
    code = "import sys, flows.risk_text as r; r.warm_up(); r.judge('vil dø'); print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

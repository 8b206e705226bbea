"""course_lib.harness: one call scores every course task; the pieces behave on known cases."""

import pytest

from course_lib import harness
from course_lib.data import load_jsonl
from course_lib.models import load_base_model


@pytest.fixture(scope="module")
def lm_and_tok():
    return load_base_model()


def test_evaluate_all_keys_and_ranges(lm_and_tok):
    lm, tok = lm_and_tok
    scores = harness.evaluate_all(lm, tok, n=5)
    for key in [
        "general CE",
        "clinic CE",
        "EM all",
        "facts seen",
        "facts paraphrase",
        "gold reward",
    ]:
        assert key in scores, f"missing {key!r} in {sorted(scores)}"
    assert scores["general CE"] < 1.0 < scores["clinic CE"], (
        "the base model knows the corpus (CE ≈ 0.44) and not the clinic domain"
    )
    assert all(0 <= scores[k] <= 1 for k in scores if k.startswith(("EM", "facts")))


def test_fact_recall_seen_vs_context(lm_and_tok):
    lm, tok = lm_and_tok
    facts = load_jsonl("new_facts")[:20]
    zero = harness.fact_recall(lm, tok, facts)
    given = [dict(f, probe_seen=" ".join(f["statements"]) + " " + f["probe_seen"]) for f in facts]
    assert harness.fact_recall(lm, tok, given) > zero + 0.3, (
        "with the fact in the context the base model should copy it (chapter 01: ~89 % vs chance)"
    )


def test_bad_input(lm_and_tok):
    lm, tok = lm_and_tok
    with pytest.raises(ValueError, match="n must be"):
        harness.evaluate_all(lm, tok, n=2)
    with pytest.raises(ValueError, match="phrasing"):
        harness.fact_recall(lm, tok, load_jsonl("new_facts")[:2], "unseen")

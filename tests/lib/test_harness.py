"""course_lib.harness: one call scores every course task; the pieces behave on known cases."""

import pytest

from course_lib import harness
from course_lib.data import load_jsonl


@pytest.fixture(scope="module")
def lm_and_tok(base_model, tokenizer):
    return base_model, tokenizer


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
    skills = sorted({r["skill"] for r in load_jsonl("instructions_test")})
    missing = [s for s in skills if f"EM {s}" not in scores]
    assert not missing, f"n=5 must score one instruction of every skill; no EM for {missing}"


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


@pytest.mark.parametrize("n", [5, 7, 50, 100, 250])
def test_instruction_subset_covers_every_skill(n):
    """Issue 14: instructions_test is sorted by skill, so its first 50 records are all 'fact'."""
    records = load_jsonl("instructions_test")
    skills = {r["skill"] for r in records}
    subset = harness.stratified(records, n)
    counts = [sum(r["skill"] == s for r in subset) for s in sorted(skills)]
    assert len(subset) == n and all(c >= 1 for c in counts), (
        f"a {n}-record subset should hold every skill {sorted(skills)}, got counts {counts}"
    )
    assert max(counts) - min(counts) <= 1, f"the skills should stay balanced, got {counts}"
    assert len(harness.stratified(records, 10_000)) == len(records), (
        "n beyond the file: all records"
    )


@pytest.mark.parametrize("n", [5, 50])
def test_evaluate_all_scores_every_skill_and_attribute(monkeypatch, lm_and_tok, n):
    """The old bug: `instructions_test[:n]` (sorted by skill) made "EM all" the fact questions' EM.

    The records that evaluate_all hands to the scorers are captured: every skill and every new-fact
    attribute must be there, balanced, for a small and for the chapter's n.
    """
    lm, tok = lm_and_tok
    seen = {}

    def fake_em(model, tokenizer, records, **kw):
        seen["skills"] = [r["skill"] for r in records]
        return {s: 0.0 for s in set(seen["skills"])} | {"all": 0.0}

    def fake_recall(model, tokenizer, facts, phrasing="seen"):
        seen["attributes"] = [f["attribute"] for f in facts]
        return 0.0

    monkeypatch.setattr(harness, "exact_match_by_skill", fake_em)
    monkeypatch.setattr(harness, "fact_recall", fake_recall)
    monkeypatch.setattr(harness, "mean_gold_reward", lambda *a, **k: 0.0)
    monkeypatch.setattr(harness, "cross_entropy", lambda *a, **k: 0.0)
    scores = harness.evaluate_all(lm, tok, n=n)
    skills = sorted({r["skill"] for r in load_jsonl("instructions_test")})
    counts = [seen["skills"].count(s) for s in skills]
    assert len(seen["skills"]) == n and min(counts) >= 1 and max(counts) - min(counts) <= 1, (
        f"n={n}: the instructions scored should cover {skills} evenly, got counts {counts}"
    )
    assert all(f"EM {s}" in scores for s in skills)
    attributes = sorted({f["attribute"] for f in load_jsonl("new_facts")})
    a_counts = [seen["attributes"].count(a) for a in attributes]
    assert min(a_counts) >= 1 and max(a_counts) - min(a_counts) <= 1, (
        f"n={n}: the new facts probed should cover {attributes} evenly, got {a_counts}"
    )


def test_stratified_rejects_records_without_the_key():
    with pytest.raises(ValueError, match="key"):
        harness.stratified([{"skill": "fact"}, {"x": 1}], 2)


def test_gold_reward_questions_are_distinct_and_never_trained_on():
    qs = harness.held_out_questions(50)
    trained = {r["prompt"] for r in load_jsonl("preferences_train")}
    assert len(set(qs)) == 50, "each question once"
    assert not trained & set(qs), "no question the preference data trained on"
    with pytest.raises(ValueError, match="held-out questions"):
        harness.held_out_questions(10**6)

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

"""course_lib.synthetic: the arithmetic prompt space, n-gram decontamination, rejection sampling."""

import pytest

from course_lib import synthetic
from course_lib.data import load_jsonl
from course_lib.world.instructions import make_record
from course_lib.world.preferences import is_correct


def test_all_arithmetic_prompts_are_solved_by_the_verifier():
    qa = synthetic.all_arithmetic_prompts()
    assert len(qa) == len(set(q for q, _ in qa)) == 39 * 12 * 2 + 8 * 12
    assert all(is_correct(q, a) for q, a in qa[::50])


def test_decontamination_removes_exactly_the_overlap():
    train = [
        make_record("arithmetic", q, "", a) for q, a in synthetic.all_arithmetic_prompts()[:20]
    ]
    leaked = ["What is 2 plus 3?", "what is 2 plus 5"]  # case and punctuation do not hide a leak
    kept, removed = synthetic.decontaminate(train, leaked)
    assert removed == 2 and len(kept) == 18
    assert synthetic.contaminated(["a b c d e f g h i"], ["x a b c d e f g h y"], n=8) == [True]
    assert synthetic.contaminated(["a b c d e f g h i"], ["x a b c d e f g y"], n=8) == [False]
    with pytest.raises(TypeError):
        synthetic.contaminated("What is 2 plus 3?", leaked)


def test_rejection_sampling_keeps_only_verified_answers(base_model, tokenizer):
    prompts = [q for q, _ in synthetic.all_arithmetic_prompts()[:6]]
    sampled = synthetic.rejection_sample(base_model, tokenizer, prompts, n=3, max_new_tokens=4)
    assert len(sampled.samples) == 6 and all(len(r) == 3 for r in sampled.samples)
    assert all(is_correct(r["instruction"], r["output"]) for r in sampled.accepted())
    assert 0 <= sampled.sample_accuracy <= sampled.pass_at_n <= 1
    best = synthetic.best_of_n(["q"], [["a", "bbb", "cc"]], lambda p, s: len(s))
    assert best == ["bbb"]
    with pytest.raises(ValueError, match="n "):
        synthetic.rejection_sample(base_model, tokenizer, prompts, n=0)


def test_star_heldout_is_unseen_and_the_pool_is_the_policys_training_prompts():
    from course_lib.build.sweeps_ch17 import star_setting

    _, _, test, pool, heldout = star_setting()
    pool_q, held_q = {q for q, _ in pool}, {q for q, _ in heldout}
    assert len(pool_q) == len(pool) and len(held_q) == len(heldout)
    seen = {r["prompt"] for f in ("preferences_train", "preferences_test") for r in load_jsonl(f)}
    seen |= {
        r["instruction"] for s in ("train", "val", "test") for r in load_jsonl(f"instructions_{s}")
    }
    assert not held_q & seen, "the held-out questions must be unseen by the policy"
    assert pool_q <= {r["prompt"] for r in load_jsonl("preferences_train")}
    assert not pool_q & (held_q | {r["instruction"] for r in test})

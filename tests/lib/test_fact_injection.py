"""Tests of course_lib.fact_injection: probes, the dev/test split by person, the injection curve."""

from __future__ import annotations

import pytest

from course_lib.data import load_jsonl
from course_lib.fact_injection import injection_curve, probe_hits, split_by_person

FACTS = load_jsonl("new_facts")


def test_split_by_person_keeps_each_person_on_one_side():
    dev, test = split_by_person(FACTS, n_dev_people=10)
    assert len(dev) == len(test) == 40
    assert not {f["person"] for f in dev} & {f["person"] for f in test}
    with pytest.raises(ValueError, match="n_dev_people"):
        split_by_person(FACTS, n_dev_people=20)


def test_retrieval_beats_zero_shot_and_bad_phrasing_is_refused(base_model, tokenizer):
    few = FACTS[:12]
    zero = probe_hits(base_model, tokenizer, few, "seen")
    pasted = probe_hits(base_model, tokenizer, few, "seen", with_facts=True)
    assert set(zero) <= {0, 1} and sum(pasted) > sum(zero)
    with pytest.raises(ValueError, match="phrasing"):
        probe_hits(base_model, tokenizer, few, "question")


def test_injection_curve_records_each_checkpoint_and_leaves_the_model(base_model, tokenizer):
    texts = [s for f in FACTS[:8] for s in f["statements"]]
    curve = injection_curve(base_model, tokenizer, texts, FACTS[:8], 1e-3, (1, 2), batch_size=4)
    assert sorted(curve) == [1, 2] and len(curve[2]["paraphrase"]) == 8
    with pytest.raises(ValueError, match="checkpoints"):
        injection_curve(base_model, tokenizer, texts, FACTS[:8], 1e-3, ())

"""course_lib.sft: response-only labels, padded batches, batched greedy answers, exact match per skill."""
import pytest
import torch

from course_lib import sft
from course_lib.base_model import load_base_model
from course_lib.data import load_jsonl


@pytest.fixture(scope="module")
def lm_and_tok():
    return load_base_model()


def test_labels_only_on_the_response(lm_and_tok):
    _, tok = lm_and_tok
    record = load_jsonl("instructions_val")[0]
    ex = sft.sft_example(tok, record)
    learnt = tok.decode([t for t, l in zip(ex["input_ids"], ex["labels"]) if l != -100])
    assert learnt == record["output"] + "<|end|>", f"labels should be the reply and its end token, got {learnt!r}"
    full = sft.sft_example(tok, record, mask_prompt=False)
    assert full["labels"] == full["input_ids"], "mask_prompt=False trains on every token"


def test_batches_pad_labels_with_ignore(lm_and_tok):
    _, tok = lm_and_tok
    batch = next(iter(sft.sft_batches(tok, load_jsonl("instructions_val"), batch_size=8)))
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all(), "padding must carry label −100"
    assert (batch["input_ids"][batch["attention_mask"] == 0] == tok.pad_token_id).all()


def test_answers_do_not_depend_on_batching(lm_and_tok):
    lm, tok = lm_and_tok
    prompts = ["What is 2 plus 3?", "Rewrite the sentence in the past tense.\nOn Monday, Ada visits the library."]
    together = sft.answer(lm, tok, prompts, max_new_tokens=8)
    alone = [sft.answer(lm, tok, [p], max_new_tokens=8)[0] for p in prompts]
    assert together == alone, f"left padding changed greedy answers: {together} vs {alone}"
    assert tok.padding_side == "right", "answer() must restore the tokenizer's padding side"


def test_exact_match_by_skill_keys(lm_and_tok):
    lm, tok = lm_and_tok
    records = load_jsonl("instructions_val")[::20]
    scores = sft.exact_match_by_skill(lm, tok, records, max_new_tokens=4)
    assert set(scores) == {r["skill"] for r in records} | {"all"}
    assert all(0 <= v <= 1 for v in scores.values())


def test_bad_input(lm_and_tok):
    lm, tok = lm_and_tok
    with pytest.raises(ValueError, match="batch_size"):
        sft.sft_batches(tok, load_jsonl("instructions_val")[:2], batch_size=3)
    with pytest.raises(ValueError, match="non-empty list"):
        sft.answer(lm, tok, "What is 2 plus 3?")
    with pytest.raises(ValueError, match="one text per prompt"):
        sft.answer(lm, tok, ["a", "b"], context=["c"])
    with pytest.raises(ValueError, match="skill"):
        sft.exact_match_by_skill(lm, tok, [{"text": "x"}])

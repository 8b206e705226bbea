"""Tests of course_lib.classification: labelled review batches and the classifier's predictions."""

from __future__ import annotations

import pytest
import torch

from course_lib.classification import label_batches, predict_labels
from course_lib.data import load_jsonl
from course_lib.world.documents import LABELS

RECORDS = load_jsonl("reviews_val")[:10]


@pytest.fixture(scope="module")
def classifier(tokenizer, tiny_llama):
    """A tiny random 3-label classifier over the course tokenizer (fast; only shapes matter)."""
    return tiny_llama(
        vocab=len(tokenizer),
        hidden=32,
        num_labels=len(LABELS),
        pad_token_id=tokenizer.pad_token_id,
        eval_mode=True,
    )


def test_label_batches_pad_and_number_the_labels(tokenizer):
    batches = list(label_batches(tokenizer, RECORDS, batch_size=4))
    assert len(batches) == 2, "10 records in batches of 4: two full batches, the rest dropped"
    for b in batches:
        assert set(b) == {"input_ids", "attention_mask", "labels"}, set(b)
        assert b["input_ids"].shape == b["attention_mask"].shape and b["input_ids"].shape[0] == 4
        assert b["labels"].dtype == torch.long and b["labels"].shape == (4,)
        assert b["labels"].max() < len(LABELS), "labels are indices into LABELS"
    seen = {tuple(row) for b in batches for row in b["input_ids"].tolist()}
    assert len(seen) == 8, "no record twice in one pass"


def test_label_batches_pair_each_text_with_its_label(tokenizer):
    (batch,) = list(label_batches(tokenizer, RECORDS[:3], batch_size=3))
    by_text = {r["text"]: LABELS.index(r["label"]) for r in RECORDS[:3]}
    for ids, mask, label in zip(batch["input_ids"], batch["attention_mask"], batch["labels"]):
        text = tokenizer.decode(ids[mask.bool()], skip_special_tokens=True)
        assert by_text[text] == label.item(), f"{text!r} got label {label.item()}"


def test_label_batches_reshuffle_each_pass_with_a_seed(tokenizer):
    def texts(one_pass):
        return [
            tokenizer.decode(row, skip_special_tokens=True)
            for b in one_pass
            for row in b["input_ids"]
        ]

    batches = label_batches(tokenizer, RECORDS, batch_size=5, seed=3)
    first, second = texts(batches), texts(batches)
    assert first == texts(label_batches(tokenizer, RECORDS, 5, seed=3)), "same seed, same order"
    assert sorted(first) == sorted(second) == sorted(r["text"] for r in RECORDS), (
        "each pass uses every record once"
    )
    assert first != second, "the second pass should come in a new order"


def test_label_batches_accept_other_label_sets(tokenizer):
    records = [{"text": "yes", "label": "spam"}, {"text": "no", "label": "ham"}]
    (batch,) = list(label_batches(tokenizer, records, 2, labels=("ham", "spam")))
    assert sorted(batch["labels"].tolist()) == [0, 1]


def test_predict_labels_gives_one_label_per_text_independent_of_batching(classifier, tokenizer):
    texts = [r["text"] for r in RECORDS]
    together = predict_labels(classifier, tokenizer, texts)
    assert len(together) == len(texts) and set(together) <= set(LABELS), together
    in_pairs = predict_labels(classifier, tokenizer, texts, batch_size=2)
    assert together == in_pairs, "padding must not change a text's prediction"


def test_predict_labels_is_argmax_of_the_logits(classifier, tokenizer):
    text = RECORDS[0]["text"]
    with torch.no_grad():
        logits = classifier(**tokenizer([text], return_tensors="pt")).logits[0]
    assert predict_labels(classifier, tokenizer, [text]) == [LABELS[int(logits.argmax())]]


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda tok: label_batches(tok, RECORDS, 0), ValueError, "batch_size"),
        (lambda tok: label_batches(tok, RECORDS, 11), ValueError, "batch_size"),
        (lambda tok: label_batches(tok, [], 1), ValueError, "batch_size"),
        (lambda tok: label_batches(tok, [{"text": "x", "label": "ok"}], 1), ValueError, "labels"),
    ],
)
def test_label_batches_bad_inputs(tokenizer, call, error, words):
    with pytest.raises(error) as info:
        call(tokenizer)
    assert words in str(info.value), f"the message should mention {words!r}: {info.value}"


def test_predict_labels_refuses_one_string(classifier, tokenizer):
    with pytest.raises(TypeError, match="list of strings"):
        predict_labels(classifier, tokenizer, "one review")

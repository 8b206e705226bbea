"""The chapter 15 checkers (debug this tutorial) accept the fixes and name each tutorial's bug."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.course.checkers import ch15
from course_lib.formats import IGNORE_INDEX
from tests.course.wrong_answers import Wrong, assert_caught_and_named


def trainable_summary(model):
    trainable, total = model.get_nb_trainable_parameters()
    return trainable, total, 100 * trainable / total


def labels_from_generate(tok, sequences, prompt_length, labels):
    texts = tok.batch_decode(sequences[:, prompt_length:], skip_special_tokens=True)
    return [
        next((lab for lab in labels if t.strip().lower().startswith(lab)), "unknown") for t in texts
    ]


def truncate_batch(batch, max_chars):
    return {"text": [t[:max_chars] for t in batch["text"]]}


def collate(rows, pad_id, labels="masked", with_mask=True):
    width = max(len(r["input_ids"]) for r in rows)
    out = {"input_ids": [], "attention_mask": [], "labels": []}
    for r in rows:
        ids, pad = list(r["input_ids"]), width - len(r["input_ids"])
        out["input_ids"].append(ids + [pad_id] * pad)
        out["attention_mask"].append([1] * len(ids) + [0] * pad)
        if labels == "masked":
            out["labels"].append(ids + [IGNORE_INDEX] * pad)
        elif labels == "pad":
            out["labels"].append(ids + [pad_id] * pad)
        else:  # shifted
            out["labels"].append(ids[1:] + [IGNORE_INDEX] * (pad + 1))
    if labels == "none":
        del out["labels"]
    if not with_mask:
        del out["attention_mask"]
    return {k: torch.tensor(v) for k, v in out.items()}


def corpus_perplexity(model, tok, texts, batch_size, mistake=""):
    losses, counts = [], []
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i : i + batch_size], padding=True, return_tensors="pt")
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, IGNORE_INDEX)
        if mistake == "padding":
            labels = enc["input_ids"]
        with torch.no_grad():
            losses.append(float(model(**enc, labels=labels).loss))
        counts.append(int((labels[:, 1:] != IGNORE_INDEX).sum()))
    if mistake in ("padding", "batch_means"):
        return math.exp(sum(losses) / len(losses))
    return math.exp(sum(loss * n for loss, n in zip(losses, counts)) / sum(counts))


def test_the_fixes_pass():
    assert ch15.check_trainable_summary(trainable_summary)
    assert ch15.check_labels_from_generate(labels_from_generate)
    assert ch15.check_truncate_batch(truncate_batch)
    assert ch15.check_collate(collate)
    assert ch15.check_lm_labels(lambda ids, mask, pad: ids.masked_fill(mask == 0, IGNORE_INDEX))
    assert ch15.check_corpus_perplexity(corpus_perplexity)


def test_the_tutorial_snippets_show_their_symptom():
    sequences, n, _ = ch15.generated_case()
    assert len(set(sequences.argmax(-1).tolist())) == 1, "argmax picks one position for all rows"
    ids, mask = ch15.eos_case()
    real = int(((ids == ch15.EOS) & (mask == 1)).sum())
    assert real == 2 and int((ids.masked_fill(ids == ch15.EOS, -100) == ch15.EOS).sum()) == 0


# --- realistic wrong answers (issue 18, items 3 and 7): each caught, its message naming the bug --


def _argmax_labels(tok, sequences, prompt_length, labels):
    return sequences.argmax(-1).tolist()  # the tutorial's "predicted classes"


def _whole_sequence(tok, sequences, prompt_length, labels):
    texts = tok.batch_decode(sequences, skip_special_tokens=True)
    return [next((lab for lab in labels if lab in t.lower()), "unknown") for t in texts]


def _exact_label(tok, sequences, prompt_length, labels):
    texts = tok.batch_decode(sequences[:, prompt_length:], skip_special_tokens=True)
    return [t.strip().lower() if t.strip().lower() in labels else "unknown" for t in texts]


def _no_unknown(tok, sequences, prompt_length, labels):
    return [
        lab if lab != "unknown" else labels[0]
        for lab in labels_from_generate(tok, sequences, prompt_length, labels)
    ]


def _one_example(example, max_chars):
    return {"text": example["text"][:max_chars]}  # written for one example, run batched


def _lower_one(example, max_chars):
    return {"text": example["text"].lower()[:max_chars]}  # AttributeError on a list


def _print_summary(model):
    return model.print_trainable_parameters()


WRONG_ANSWERS = [
    Wrong(
        "returns print_trainable_parameters()",
        ch15.check_trainable_summary,
        [_print_summary],
        ("None",),
    ),
    Wrong(
        "fraction, not percent",
        ch15.check_trainable_summary,
        [
            lambda m: (
                *m.get_nb_trainable_parameters(),
                m.get_nb_trainable_parameters()[0] / m.get_nb_trainable_parameters()[1],
            )
        ],
        ("multiply by 100",),
    ),
    Wrong(
        "total counts the frozen base only",
        ch15.check_trainable_summary,
        [lambda m: (lambda t, a: (t, a - t, 100 * t / (a - t)))(*m.get_nb_trainable_parameters())],
        ("adapter",),
    ),
    Wrong(
        "argmax over generate() ids",
        ch15.check_labels_from_generate,
        [_argmax_labels],
        ("token ids",),
    ),
    Wrong(
        "decoded the prompt too",
        ch15.check_labels_from_generate,
        [_whole_sequence],
        ("only the new tokens",),
    ),
    Wrong(
        "whole answer must equal a label",
        ch15.check_labels_from_generate,
        [_exact_label],
        ("startswith",),
    ),
    Wrong("no 'unknown'", ch15.check_labels_from_generate, [_no_unknown], ("unknown",)),
    Wrong(
        "per-example function run batched",
        ch15.check_truncate_batch,
        [_one_example],
        ("dropped", "LIST"),
    ),
    Wrong("str method on a batch", ch15.check_truncate_batch, [_lower_one], ("LISTS",)),
    Wrong(
        "no labels",
        ch15.check_collate,
        [lambda rows, pad: collate(rows, pad, labels="none")],
        ("did not return a loss",),
    ),
    Wrong(
        "padding labelled",
        ch15.check_collate,
        [lambda rows, pad: collate(rows, pad, labels="pad")],
        ("padding is labelled",),
    ),
    Wrong(
        "labels shifted",
        ch15.check_collate,
        [lambda rows, pad: collate(rows, pad, labels="shift")],
        ("shifted",),
    ),
    Wrong(
        "no attention mask",
        ch15.check_collate,
        [lambda rows, pad: collate(rows, pad, with_mask=False)],
        ("attention_mask",),
    ),
    Wrong(
        "masks every pad id (= eos)",
        ch15.check_lm_labels,
        [lambda ids, mask, pad: ids.masked_fill(ids == pad, IGNORE_INDEX)],
        ("never learns to stop",),
    ),
    Wrong(
        "padding labelled",
        ch15.check_lm_labels,
        [lambda ids, mask, pad: ids.clone()],
        ("padding is labelled",),
    ),
    Wrong(
        "masked in place",
        ch15.check_lm_labels,
        [lambda ids, mask, pad: ids.masked_fill_(mask == 0, IGNORE_INDEX)],
        ("in place",),
    ),
    Wrong(
        "padding in the labels, batch means",
        ch15.check_corpus_perplexity,
        [lambda m, t, x, b: corpus_perplexity(m, t, x, b, "padding")],
        ("padding is in the labels",),
    ),
    Wrong(
        "per-batch means averaged",
        ch15.check_corpus_perplexity,
        [lambda m, t, x, b: corpus_perplexity(m, t, x, b, "batch_means")],
        ("per-batch mean losses",),
    ),
    Wrong(
        "per-text perplexities averaged",
        ch15.check_corpus_perplexity,
        [lambda m, t, x, b: sum(corpus_perplexity(m, t, [s], 1) for s in x) / len(x)],
        ("per-text perplexities",),
    ),
]


@pytest.mark.parametrize("wrong", WRONG_ANSWERS, ids=lambda w: f"{w.exercise} {w.mistake}")
def test_wrong_answer_is_caught_and_named(wrong):
    assert_caught_and_named(wrong)

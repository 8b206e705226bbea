"""Tests of the evaluation helpers (course_lib.evaluation), checked against hand computations
on a tiny randomly initialised model."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.build.tokenizer import train_tokenizer
from course_lib.evaluation import (
    accuracy,
    choose,
    choose_many,
    continuation_logprob,
    continuation_logprobs,
    cross_entropy,
    exact_match,
    normalize_answer,
    perplexity,
    rank_candidates,
    token_losses,
    unigram_cross_entropy,
)
from course_lib.world.datasets import corpus_documents

TOWNS = ["Brookmere", "Fernwick", "Saltmarsh", "Redcliff"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def docs() -> list[str]:
    return [d["text"] for d in corpus_documents("train", 1000)]


@pytest.fixture(scope="module")
def tok(docs):
    return train_tokenizer(docs, vocab_size=400)


@pytest.fixture(scope="module")
def model(tok, tiny_llama):
    return tiny_llama(
        vocab=len(tok),
        hidden=32,
        max_position_embeddings=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        eval_mode=True,
    )


# --- cross-entropy and perplexity -----------------------------------------------------------------


def test_cross_entropy_matches_a_hand_computation(model, tok, docs):
    text = docs[0]
    ids = tok(text + tok.eos_token, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0]
    hand = F.cross_entropy(logits[:-1], ids[0, 1:]).item()
    got = cross_entropy(model, tok, [text])
    assert got == pytest.approx(hand, rel=1e-5), (
        f"cross_entropy gave {got:.6f} but the mean next-token loss of <bos> text <|end|> is {hand:.6f}"
    )
    total, count = token_losses(model, tok, [text])
    assert count == ids.shape[1] - 1, (
        f"every token after <bos> is predicted: expected {ids.shape[1] - 1}, got {count}"
    )


def test_cross_entropy_ignores_padding(model, tok, docs):
    texts = [docs[1], docs[2][:20], docs[3]]  # different lengths: the batch needs padding
    alone = [token_losses(model, tok, [t]) for t in texts]
    expected = sum(t for t, _ in alone) / sum(n for _, n in alone)
    for batch_size in (1, 3):
        got = cross_entropy(model, tok, texts, batch_size=batch_size)
        assert got == pytest.approx(expected, rel=1e-5), (
            f"with batch_size={batch_size} cross_entropy is {got:.6f}, scoring the documents one by one "
            f"gives {expected:.6f}: padding must not count as tokens"
        )


def test_context_is_read_but_not_scored(model, tok, docs):
    texts, context = docs[4:7], docs[8] + "\n"
    plain_total, plain_count = token_losses(model, tok, texts)
    total, count = token_losses(model, tok, texts, context=context)
    assert count == plain_count, "with a context the same text tokens (and eos) are scored"
    assert abs(total - plain_total) > 1e-3, "the context must change the predictions"
    prefix = tok(context)["input_ids"]
    row = tok(texts[0] + tok.eos_token, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prefix + row])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0]
    hand = F.cross_entropy(logits[len(prefix) - 1 : -1], ids[0, len(prefix) :], reduction="sum")
    got = token_losses(model, tok, texts[:1], context=context)
    assert got[0] == pytest.approx(hand.item(), rel=1e-5) and got[1] == len(row), (
        f"the loss after <bos> context should be the sum over the text's {len(row)} tokens"
    )
    with pytest.raises(TypeError, match="context"):
        cross_entropy(model, tok, texts, context=["a shot"])


def test_perplexity_is_exp_cross_entropy(model, tok, docs):
    ce, ppl = cross_entropy(model, tok, docs[:4]), perplexity(model, tok, docs[:4])
    assert ppl == pytest.approx(math.exp(ce), rel=1e-9), (
        f"perplexity {ppl} should be exp(cross-entropy) = {math.exp(ce)}"
    )
    assert 1 < ppl < 2 * len(tok), (
        f"a random model's perplexity should be around the vocabulary size, got {ppl}"
    )


def test_cross_entropy_input_errors(model, tok):
    with pytest.raises(TypeError, match="single string"):
        cross_entropy(model, tok, "Mira lives in Brookmere.")
    with pytest.raises(TypeError, match="single string"):
        perplexity(model, tok, "Mira lives in Brookmere.")
    with pytest.raises(ValueError, match="non-empty"):
        cross_entropy(model, tok, [])


def test_unigram_cross_entropy_by_hand():
    # counts: 0 -> 1, 1 -> 2, 2 -> 1; with add-one smoothing over 4 types the total is 4 + 4 = 8,
    # so p(1) = 3/8 and p(3) = 1/8 (an unseen token); CE = (ln(8/3) + ln 8) / 2 = 1.530135...
    got = unigram_cross_entropy([[0, 1, 1], [2]], [[1, 3]], vocab_size=4)
    assert got == pytest.approx(1.5301354, abs=1e-6), (
        f"unigram_cross_entropy gave {got}; the add-one smoothed hand computation is 1.530135"
    )
    assert unigram_cross_entropy([[5]], [[5, 5]], vocab_size=1) == pytest.approx(0.0, abs=1e-12), (
        "a single-type vocabulary is certain: its cross-entropy is 0"
    )
    with pytest.raises(ValueError, match="no tokens"):
        unigram_cross_entropy([[1]], [[]], vocab_size=4)


# --- exact match and accuracy ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, normal",
    [
        ("Brookmere", "brookmere"),
        ("  Brookmere.  ", "brookmere"),
        ('"Fernwick!"', "fernwick"),
        ("The   Answer\nis 42?", "the answer is 42"),
        ("plum cake", "plum cake"),
        ("plum-cake", "plum-cake"),
        ("e.g. this", "e.g. this"),
        ("", ""),
    ],
)
def test_normalize_answer(raw, normal):
    assert normalize_answer(raw) == normal, (
        f"normalize_answer({raw!r}) = {normalize_answer(raw)!r}, expected {normal!r}"
    )


def test_exact_match_hand_cases():
    preds = ["Brookmere.", " the ANSWER  is 42 ", "plum cake", "12"]
    refs = ["brookmere", "The answer is 42", "apple pie", "12."]
    assert exact_match(preds, refs) == 0.75, (
        f"3 of 4 predictions match after normalisation, got {exact_match(preds, refs)}"
    )
    assert exact_match(["a"], ["b"]) == 0.0, "a single wrong prediction should score 0"
    assert exact_match(("x",), ("X!",)) == 1.0, "tuples should work like lists"


def test_accuracy_hand_cases():
    assert accuracy([1, 2, 3, 4], [1, 2, 0, 4]) == 0.75, "3 of 4 predictions are right"
    assert accuracy(["positive", "neutral"], ["positive", "negative"]) == 0.5, (
        "1 of 2 labels is right"
    )


@pytest.mark.parametrize("fn", [exact_match, accuracy])
def test_mismatched_or_empty_inputs_raise(fn):
    with pytest.raises(ValueError, match="equally many"):
        fn(["a", "b"], ["a"])
    with pytest.raises(ValueError):
        fn([], [])


@pytest.mark.parametrize("fn", [exact_match, accuracy])
def test_single_strings_raise_type_error(fn):
    with pytest.raises(TypeError):
        fn("Brookmere", "Brookmere.")


# --- scoring candidates ---------------------------------------------------------------------------


def test_continuation_logprob_matches_a_hand_computation(model, tok):
    prompt, cont = "Mira Holt lives in", " Brookmere"
    p = tok(prompt)["input_ids"]
    c = tok(cont, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([p + c])).logits[0], -1)
    hand = sum(logp[len(p) - 1 + k, t].item() for k, t in enumerate(c))
    got = continuation_logprob(model, tok, prompt, cont)
    assert got == pytest.approx(hand, abs=1e-4), (
        f"continuation_logprob gave {got:.5f}; summing log p of each continuation token gives {hand:.5f}"
    )


def test_batched_scores_equal_single_scores(model, tok):
    prompts = ["Mira Holt lives in", "The market in Brookmere opens on", "Tom"]
    conts = [" Brookmere", " Monday", " is a baker who lives in Saltmarsh"]
    batched = continuation_logprobs(model, tok, prompts, conts)
    single = [continuation_logprob(model, tok, p, c) for p, c in zip(prompts, conts)]
    assert batched == pytest.approx(single, abs=1e-4), (
        f"scores in one padded batch {batched} differ from scores one at a time {single}"
    )


def test_rank_candidates_and_choose_pick_the_highest_log_prob(model, tok):
    prompt = "Mira Holt lives in"
    scores = rank_candidates(model, tok, prompt, TOWNS)
    expected = [continuation_logprob(model, tok, prompt, " " + t) for t in TOWNS]
    assert scores == pytest.approx(expected, abs=1e-4), (
        "rank_candidates should score each candidate with a leading space, as continuation_logprob does"
    )
    best = TOWNS[max(range(len(TOWNS)), key=lambda i: expected[i])]
    assert choose(model, tok, prompt, TOWNS) == best, (
        f"choose should pick the most likely candidate {best!r}"
    )
    prompts = [prompt, "Tom Reed works as a", "Ada keeps a"]
    lists = [TOWNS, ["baker", "teacher", "cook"], ["cat", "dog", "goose", "tortoise"]]
    picks = choose_many(model, tok, prompts, lists)
    assert picks == [choose(model, tok, p, c) for p, c in zip(prompts, lists)], (
        "choose_many should agree with choose on every prompt"
    )


def test_scoring_input_errors(model, tok):
    with pytest.raises(TypeError, match="single string"):
        rank_candidates(model, tok, "Mira lives in", "Brookmere")
    with pytest.raises(TypeError, match="single string"):
        continuation_logprobs(model, tok, "Mira lives in", [" Brookmere"])
    with pytest.raises(ValueError, match="prompts"):
        continuation_logprobs(model, tok, ["a", "b"], [" x"])
    with pytest.raises(ValueError, match="empty"):
        continuation_logprob(model, tok, "Mira lives in", "")
    with pytest.raises(ValueError, match="candidate lists"):
        choose_many(model, tok, ["a", "b"], [["x"]])

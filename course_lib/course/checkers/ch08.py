"""Checks for the chapter 08 exercises (instruction tuning): labels, exact match, top-p, packing and
loss weighting.

Each check runs the student's code on cases where the common mistakes give a recognisably
wrong answer, and names the mistake.
"""

from __future__ import annotations

import torch

from course_lib.course.checks import (
    CheckFailed,
    call_unchanged,
    check,
    expect,
    expect_close,
    expect_equal,
)
from course_lib.formats import IGNORE_INDEX

_MESSAGES = [
    {"role": "user", "content": "What is 2 plus 3?"},
    {"role": "assistant", "content": "5"},
]


def _tokenizer():
    from transformers import AutoTokenizer

    from course_lib.models import BASE_MODEL_DIR

    return AutoTokenizer.from_pretrained(BASE_MODEL_DIR)


def _reference_example(tok, messages, width: int) -> dict[str, list[int]]:
    from course_lib.formats import response_labels

    ex = response_labels(tok, messages)
    pad = width - len(ex["input_ids"])
    return {
        "input_ids": ex["input_ids"] + [tok.pad_token_id] * pad,
        "labels": ex["labels"] + [IGNORE_INDEX] * pad,
    }


@check("08.1 response-only labels")
def check_labels(student_fn) -> None:
    """The student's sft_labels(tokenizer, messages, width) -> {input_ids, labels}, padded to width."""
    tok = _tokenizer()
    width = 24
    want = _reference_example(tok, _MESSAGES, width)
    got = student_fn(tok, _MESSAGES, width)
    expect(
        isinstance(got, dict) and {"input_ids", "labels"} <= set(got),
        "return a dict with the keys 'input_ids' and 'labels'",
    )
    ids, labels = list(got["input_ids"]), list(got["labels"])
    expect_equal(len(ids), width, "the length of input_ids (pad to `width`)")
    expect_equal(
        ids, want["input_ids"], "input_ids (the rendered chat, right-padded with the pad id)"
    )
    ref = want["labels"]
    from course_lib.formats import response_labels

    n = len(response_labels(tok, _MESSAGES)["input_ids"])
    start = next(i for i, lab in enumerate(ref) if lab != IGNORE_INDEX)
    end_pos = max(i for i, lab in enumerate(ref) if lab != IGNORE_INDEX)

    def shifted(k: int) -> list[int]:
        """The labels with the answer's start moved by k tokens."""
        return (
            [IGNORE_INDEX] * (start + k)
            + want["input_ids"][start + k : end_pos + 1]
            + [IGNORE_INDEX] * (width - end_pos - 1)
        )

    hints = [
        (
            want["input_ids"][:n] + [IGNORE_INDEX] * (width - n),
            "the prompt is not masked: every token before the "
            "answer (after <|assistant|>\\n) must be -100",
        ),
        (
            want["input_ids"],
            "the prompt is not masked and the padding is labelled: use -100 for both",
        ),
        (
            ref[:n] + [tok.pad_token_id] * (width - n),
            "the padding is labelled with the pad id; padding labels must be -100",
        ),
        (
            shifted(-1),
            "off by one at the assistant header: the newline after <|assistant|> is labelled; the "
            "labels start at the answer's first token",
        ),
        (
            shifted(1),
            "off by one at the assistant header: the answer's first token is not labelled",
        ),
        (
            ref[:end_pos] + [IGNORE_INDEX] * (width - end_pos),
            "<|end|> after the answer is not labelled: the model would never learn to stop",
        ),
        (
            ref[: end_pos + 1] + want["input_ids"][end_pos + 1 : n] + [IGNORE_INDEX] * (width - n),
            "the template's newline after <|end|> is labelled (TRL does this); stop the labels at <|end|>",
        ),
    ]
    expect_equal(labels, ref, "labels", hints=hints)


@check("08.2 exact match")
def check_exact_match(student_fn) -> None:
    """The student's exact_match(predictions, references) with a normaliser."""
    cases = [
        (["Rabbit"], ["rabbit"], 1.0, {0.0: "compare case-insensitively: lower-case both sides"}),
        (
            ["rabbit."],
            ["rabbit"],
            1.0,
            {0.0: "strip punctuation at the ends ('rabbit.' is 'rabbit')"},
        ),
        (
            ["  apple   pie "],
            ["apple pie"],
            1.0,
            {0.0: "strip spaces at the ends and collapse runs of spaces"},
        ),
        (
            ["apple pie"],
            ["applepie"],
            0.0,
            {1.0: "do not delete spaces inside the answer, only collapse them"},
        ),
        (
            ["a cat named Clover"],
            ["cat"],
            0.0,
            {1.0: "exact match is not containment: 'a cat named Clover' is not 'cat'"},
        ),
        (
            ["5", "6", "7", "x"],
            ["5", "6", "8", "y"],
            0.5,
            {2.0: "return the share of matches (a number in [0, 1]), not their count"},
        ),
    ]
    for preds, refs, want, hints in cases:
        got = student_fn(preds, refs)
        expect_close(float(got), want, 1e-9, f"exact_match({preds}, {refs})", hints=hints)
    for bad in [(["a"], ["a", "b"]), ([], [])]:
        try:
            student_fn(*bad)
        except (ValueError, TypeError):
            continue
        raise CheckFailed(
            f"exact_match{bad} should raise ValueError: the lists must be non-empty and equally long"
        )


def reference_nucleus(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """transformers' TemperatureLogitsWarper, then TopPLogitsWarper, then softmax."""
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    scaled = TemperatureLogitsWarper(temperature)(None, logits.clone())
    return TopPLogitsWarper(top_p)(None, scaled).softmax(-1)


def _nucleus_mistakes(logits, temperature, top_p):
    """The wrong distributions the common top-p mistakes produce."""

    def keep(z, inclusive):
        probs, order = z.softmax(-1).sort(-1, descending=True)
        before = probs.cumsum(-1) - (0 if inclusive else probs)
        drop = (before >= top_p).scatter(-1, order, before >= top_p)
        return drop

    z = logits / temperature
    drop = keep(z, inclusive=False)
    probs = z.softmax(-1)
    inclusive = z.masked_fill(keep(z, True), float("-inf")).softmax(-1).nan_to_num(0.0)
    return [
        (
            inclusive,
            "tokens are kept while the cumulative mass *including* them is below p: the token that "
            "crosses p is dropped (and the top token too when it alone has more than p)",
        ),
        (probs.masked_fill(drop, 0.0), "the kept probabilities are not renormalised to sum to 1"),
        (
            logits.masked_fill(keep(logits, False), float("-inf")).div(temperature).softmax(-1),
            "the temperature is applied after top-p: divide the logits by T first, then choose the nucleus",
        ),
        (
            (logits * temperature)
            .masked_fill(keep(logits * temperature, False), float("-inf"))
            .softmax(-1),
            "the logits are multiplied by the temperature; divide them by T",
        ),
        (probs, "nothing was filtered: tokens outside the nucleus must get probability 0"),
    ]


@check("08.3 top-p sampling distribution")
def check_nucleus(student_fn) -> None:
    """The student's nucleus_probs(logits, temperature, top_p) against transformers' warpers."""
    g = torch.Generator().manual_seed(8)
    cases = [
        (torch.randn(3, 50, generator=g) * 2, 0.7, 0.9),
        (torch.randn(2, 50, generator=g) * 3, 1.5, 0.5),
        (torch.tensor([[6.0, 2.0, 1.0, 0.5, 0.0]]), 1.0, 0.8),
    ]  # the top token alone has > p
    for logits, t, p in cases:
        got = call_unchanged(student_fn, logits.clone(), t, p, names=("logits",))
        want = reference_nucleus(logits, t, p)
        expect(isinstance(got, torch.Tensor), "return a tensor of probabilities")
        expect(
            not torch.isnan(got).any(),
            f"NaN in the result for T={t}, p={p}: was every token filtered out? "
            "The top token must always be kept",
        )
        expect_close(
            got,
            want,
            1e-5,
            f"the sampling distribution for T={t}, top_p={p}",
            hints=_nucleus_mistakes(logits, t, p),
        )


@check("08.4 packing")
def check_packing(student_fn) -> None:
    """The student's pack(examples, max_length) -> rows of {input_ids, labels, position_ids}."""
    lengths = [7, 3, 5, 2, 6, 4, 1]
    examples = [
        {
            "input_ids": [100 * (i + 1) + j for j in range(n)],
            "labels": [IGNORE_INDEX] * (n // 2) + [100 * (i + 1) + j for j in range(n // 2, n)],
        }
        for i, n in enumerate(lengths)
    ]
    rows = call_unchanged(student_fn, [dict(e) for e in examples], 8, names=("examples",))
    expect(
        isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows),
        "return a list of rows, each a dict with input_ids, labels and position_ids",
    )
    expect(
        all({"input_ids", "labels", "position_ids"} <= set(r) for r in rows),
        "each row needs the keys input_ids, labels and position_ids",
    )
    expect(
        all(len(r["input_ids"]) == len(r["labels"]) == len(r["position_ids"]) for r in rows),
        "input_ids, labels and position_ids of a row must have the same length",
    )
    expect(all(len(r["input_ids"]) <= 8 for r in rows), "a row is longer than max_length")
    found = []
    for r in rows:
        ids, labs, pos = list(r["input_ids"]), list(r["labels"]), list(r["position_ids"])
        cuts = (
            [0] + [i for i in range(1, len(ids)) if ids[i] // 100 != ids[i - 1] // 100] + [len(ids)]
        )
        for a, b in zip(cuts, cuts[1:]):
            expect(
                pos[a] == 0,
                "the position ids run on across the examples of a row; restart them at 0 for every example "
                "(or the model sees positions it never sees at inference)",
            )
            expect(
                pos[a:b] == list(range(b - a)),
                "position ids must count 0, 1, 2, … within each example",
            )
            found.append((ids[a:b], labs[a:b]))
    want = sorted((e["input_ids"], e["labels"]) for e in examples)
    expect(
        sorted(i for i, _ in found) == [i for i, _ in want],
        "the rows do not hold every example exactly once and whole (none split, dropped or repeated)",
    )
    expect(
        sorted(found) == want,
        "an example's labels changed: copy each example's own labels (with its -100s) "
        "next to its tokens, unshifted",
    )
    expect(
        len(rows) <= 5,
        f"{len(rows)} rows for 28 tokens in rows of 8: put several examples in a row "
        "(first fit, longest first, needs 4)",
    )


def reference_per_example_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over examples of each example's mean next-token loss on its labelled tokens."""
    logp = logits[:, :-1].log_softmax(-1)
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    nll = -logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
    return (nll.sum(1) / mask.sum(1)).mean()


@check("08.5 per-example loss")
def check_per_example_loss(student_fn) -> None:
    """The student's per_example_loss(logits, labels): the mean of per-example response losses."""
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(3, 9, 11, generator=g)
    labels = torch.randint(0, 11, (3, 9), generator=g)
    labels[0, :6] = IGNORE_INDEX
    labels[1, :2] = IGNORE_INDEX
    labels[2, :7] = IGNORE_INDEX
    got = call_unchanged(student_fn, logits.clone(), labels.clone(), names=("logits", "labels"))
    want = reference_per_example_loss(logits, labels)
    token_mean = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1)
    )
    mask = labels != IGNORE_INDEX
    nll_noshift = (
        -logits.log_softmax(-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
    )
    no_shift = (nll_noshift.sum(1) / mask.sum(1)).mean()
    t_all = labels[:, 1:].clamp(min=0)
    nll_all = -logits[:, :-1].log_softmax(-1).gather(-1, t_all.unsqueeze(-1)).squeeze(-1)
    expect_close(
        got,
        want.item(),
        1e-4,
        "the per-example loss",
        hints=[
            (
                token_mean.item(),
                "that is the token mean (what model(...).loss returns): average each example's "
                "tokens first, then average the examples",
            ),
            (
                no_shift.item(),
                "logits and labels are not shifted: position t predicts token t + 1, so compare "
                "logits[:, :-1] with labels[:, 1:]",
            ),
            (
                nll_all.mean(1).mean().item(),
                "the -100 positions are counted: leave them out of the sum and the count",
            ),
            (
                (nll_all * (labels[:, 1:] != IGNORE_INDEX))
                .sum(1)
                .div(labels.shape[1] - 1)
                .mean()
                .item(),
                "each example's sum is divided by the sequence length; divide by its number of "
                "labelled tokens",
            ),
        ],
    )

"""The chapter 13 checkers pass the reference solutions and name the typical mistakes."""

from __future__ import annotations

import pytest
import torch

from course_lib.course.checkers import ch13
from course_lib.course.checks import CheckFailed
from course_lib.formats import IGNORE_INDEX, response_labels


def fails_with(check, fn, words: str) -> None:
    with pytest.raises(CheckFailed) as info:
        check(fn)
    assert words in str(info.value), f"expected the message to mention {words!r}, got: {info.value}"


def q4_1(
    w, divisor=15, pack="gguf", rounding=torch.round, minimum=None, header_dtype=torch.float16
):
    """A Q4_1 encoder with switchable mistakes (the right one with the defaults)."""
    low, high = w.min(), w.max()
    m = low if minimum is None else minimum(w)
    d = (high - low) / divisor
    q = rounding((w - m) / d).clamp(0, 15).to(torch.uint8)
    if pack == "gguf":
        packed = q[:16] | (q[16:] << 4)
    elif pack == "neighbours":
        packed = q[0::2] | (q[1::2] << 4)
    else:  # chapter 05's pack_4bit: the first of a pair in the high nibble
        packed = (q[0::2] << 4) | q[1::2]
    header = torch.stack([d, m]).to(header_dtype).view(torch.uint8)
    return torch.cat([header, packed])


def test_quantize_q4_1():
    assert ch13.check_quantize_q4_1(q4_1)
    fails_with(ch13.check_quantize_q4_1, lambda w: q4_1(w, divisor=16), "divide by 15")
    fails_with(
        ch13.check_quantize_q4_1, lambda w: q4_1(w, pack="neighbours"), "packed as neighbours"
    )
    fails_with(ch13.check_quantize_q4_1, lambda w: q4_1(w, pack="pack_4bit"), "high nibble")
    fails_with(ch13.check_quantize_q4_1, lambda w: q4_1(w, rounding=torch.floor), "truncated")
    fails_with(ch13.check_quantize_q4_1, lambda w: q4_1(w, header_dtype=torch.float32), "20 bytes")
    fails_with(
        ch13.check_quantize_q4_1, lambda w: q4_1(w, minimum=lambda w: w.max()), "not its maximum"
    )


def test_single_token_share():
    def ref(tok, words):
        return sum(
            len(tok(" " + w, add_special_tokens=False)["input_ids"]) == 1 for w in words
        ) / len(words)

    assert ch13.check_single_token_share(ref)
    fails_with(
        ch13.check_single_token_share,
        lambda tok, words: (
            sum(len(tok(w, add_special_tokens=False)["input_ids"]) == 1 for w in words) / len(words)
        ),
        "leading space",
    )
    fails_with(
        ch13.check_single_token_share,
        lambda tok, words: sum(len(tok(" " + w)["input_ids"]) == 1 for w in words) / len(words),
        "add_special_tokens=False",
    )
    fails_with(
        ch13.check_single_token_share,
        lambda tok, words: sum(
            len(tok(" " + w, add_special_tokens=False)["input_ids"]) == 1 for w in words
        ),
        "not a count",
    )


def chatml_labels(tok, messages, first_offset=0, end_offset=0, last_only=False):
    """Labels on every assistant reply (the right one with the defaults), with switchable mistakes."""

    def n(msgs, header=False):
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=header)
        return len(tok(text, add_special_tokens=False)["input_ids"])

    ids = tok(tok.apply_chat_template(messages, tokenize=False), add_special_tokens=False)[
        "input_ids"
    ]
    labels = [IGNORE_INDEX] * len(ids)
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    for i in turns[-1:] if last_only else turns:
        start, end = (
            n(messages[:i], header=True) + first_offset,
            n(messages[: i + 1]) - 1 + end_offset,
        )
        labels[start:end] = ids[start:end]
    return {"input_ids": ids, "labels": labels}


def test_chatml_labels():
    assert ch13.check_chatml_labels(chatml_labels)
    fails_with(ch13.check_chatml_labels, response_labels, "only the last reply")
    header = len(ch13._real_tokenizer()("<|im_start|>assistant\n")["input_ids"])  # 4 tokens
    fails_with(
        ch13.check_chatml_labels, lambda t, m: chatml_labels(t, m, first_offset=-header), "header"
    )
    fails_with(ch13.check_chatml_labels, lambda t, m: chatml_labels(t, m, end_offset=1), "newline")
    fails_with(ch13.check_chatml_labels, lambda t, m: chatml_labels(t, m, end_offset=-1), "stop")
    fails_with(
        ch13.check_chatml_labels,
        lambda t, m: {"input_ids": (ids := chatml_labels(t, m)["input_ids"]), "labels": list(ids)},
        "mask the system",
    )


def test_chatml_reference_agrees_with_response_labels_on_the_last_turn():
    tok = ch13._real_tokenizer()
    variants = ch13.chatml_labels_variants(tok, ch13.CONVERSATION)
    assert variants["last turn only"] == response_labels(tok, ch13.CONVERSATION)["labels"], (
        "the checker's reference and chapter 02's response_labels must agree on the last turn"
    )


# --- realistic wrong answers (issue 18, item 7): each caught, its message naming the mistake ----
# (counted over all chapters by `python -m tests.course.wrong_answers`)

from tests.course.wrong_answers import Wrong, assert_caught_and_named  # noqa: E402


def _h8_q4_1(mode: str):
    import numpy as np
    import torch

    def fn(w):
        lo, hi = float(w.min()), float(w.max())
        d = (hi - lo) / (16 if mode == "16" else 15)
        q = ((w - lo) / d).floor() if mode == "floor" else ((w - lo) / d).round()
        q = q.clamp(0, 15).to(torch.uint8).numpy()
        packed = (q[0::2] | (q[1::2] << 4)) if mode == "neighbours" else (q[:16] | (q[16:] << 4))
        head = np.array([d, hi if mode == "max" else lo], dtype=np.float16).view(np.uint8)
        return np.concatenate([head, packed.astype(np.uint8)])

    return fn


def _share(mode: str):
    """single_token_share with one typical mistake (13.2)."""

    def fn(tok, words):
        if mode == "no space":  # the word tokenized on its own, not as it appears in a sentence
            ones = [len(tok(w, add_special_tokens=False)["input_ids"]) == 1 for w in words]
        elif mode == "special":  # tokenizer(...) adds <|bos|> for the course tokenizer
            ones = [len(tok(" " + w)["input_ids"]) == 1 for w in words]
        else:
            ones = [len(tok(" " + w, add_special_tokens=False)["input_ids"]) == 1 for w in words]
        if mode == "count":
            return sum(ones)
        if mode == "split":
            return 1 - sum(ones) / len(words)
        return sum(ones) / len(words)

    return fn


def _labels(mistake: str):
    """chatml_labels with one typical mistake (13.3), built from the checker's own span finder."""

    def fn(tok, messages):
        ids, _ = ch13._spans(tok, messages)
        return {"input_ids": ids, "labels": ch13.chatml_labels_variants(tok, messages)[mistake]}

    return fn


WRONG_ANSWERS = [
    Wrong("no leading space", ch13.check_single_token_share, [_share("no space")], ("space",)),
    Wrong("special tokens", ch13.check_single_token_share, [_share("special")], ("special",)),
    Wrong("a count", ch13.check_single_token_share, [_share("count")], ("share",)),
    Wrong("split share", ch13.check_single_token_share, [_share("split")], ("several tokens",)),
    Wrong("last turn", ch13.check_chatml_labels, [_labels("last turn only")], ("every assistant",)),
    Wrong("header", ch13.check_chatml_labels, [_labels("header")], ("header",)),
    Wrong("newline", ch13.check_chatml_labels, [_labels("newline")], ("newline",)),
    Wrong("no <|im_end|>", ch13.check_chatml_labels, [_labels("no end")], ("stop",)),
    Wrong("every token", ch13.check_chatml_labels, [_labels("everything")], ("-100",)),
    Wrong("16 steps", ch13.check_quantize_q4_1, [_h8_q4_1("16")], ("divide by 15",)),
    Wrong("m = max", ch13.check_quantize_q4_1, [_h8_q4_1("max")], ("minimum",)),
    Wrong("floor", ch13.check_quantize_q4_1, [_h8_q4_1("floor")], ("floor",)),
    Wrong(
        "neighbouring codes packed",
        ch13.check_quantize_q4_1,
        [_h8_q4_1("neighbours")],
        ("packed as",),
    ),
]


@pytest.mark.parametrize("wrong", WRONG_ANSWERS, ids=lambda w: f"{w.exercise} {w.mistake}")
def test_wrong_answer_is_caught_and_named(wrong):
    assert_caught_and_named(wrong)

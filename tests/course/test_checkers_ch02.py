"""The chapter 02 checkers pass the reference solutions and name the typical mistakes."""

from __future__ import annotations

import html
import random
import re

import pytest
import torch

from course_lib.course.checkers import ch02
from course_lib.course.checks import CheckFailed
from course_lib.dataprep import clean_text, lsh_probability, stratified_split
from course_lib.formats import packed_attention


def fails_with(check, fn, words: str) -> None:
    with pytest.raises(CheckFailed) as info:
        check(fn)
    assert words in str(info.value), f"expected the message to mention {words!r}, got: {info.value}"


def test_clean_check():
    assert ch02.check_clean(clean_text)
    fails_with(
        ch02.check_clean,
        lambda t: re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", t)).strip(),
        "entities",
    )
    fails_with(
        ch02.check_clean,
        lambda t: re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", t))).strip(),
        "BEFORE unescaping",
    )
    fails_with(ch02.check_clean, lambda t: re.sub(r"<[^>]+>", " ", html.unescape(t)), "whitespace")


def test_lsh_check():
    assert ch02.check_lsh_probability(lsh_probability)
    fails_with(ch02.check_lsh_probability, lambda s, b, r: (1 - s**r) ** b, "NOT becoming")
    fails_with(ch02.check_lsh_probability, lambda s, b, r: 1 - (1 - s**b) ** r, "swapped")


def test_split_check():
    assert ch02.check_split(lambda recs, ratios, seed: stratified_split(recs, ratios, seed=seed))

    def unstratified(recs, ratios, seed):
        items = random.Random(seed).sample(recs, len(recs))
        return [items[:70], items[70:80], items[80:]]

    fails_with(ch02.check_split, unstratified, "stratify")

    def global_random(recs, ratios, seed):
        items = random.sample(recs, len(recs))
        return stratified_split(items, ratios, seed=random.randrange(10**6))

    fails_with(ch02.check_split, global_random, "same seed")


def test_mask_check():
    assert ch02.check_mask(lambda p, r: (p + r, [-100] * len(p) + r))
    fails_with(ch02.check_mask, lambda p, r: (p + r, p + r), "prompt tokens as well")
    fails_with(
        ch02.check_mask, lambda p, r: (p + r, [-100] * (len(p) + 1) + r[1:]), "first response token"
    )
    fails_with(
        ch02.check_mask,
        lambda p, r: (p + r, [-100] * len(p) + r[:-1] + [-100]),
        "never learn to stop",
    )


def test_packed_check():
    assert ch02.check_packed(packed_attention)

    def no_reset(lengths):
        pos, mask = packed_attention(lengths)
        return torch.arange(sum(lengths))[None], mask

    fails_with(ch02.check_packed, no_reset, "restart")

    def plain_causal(lengths):
        pos, _ = packed_attention(lengths)
        n = sum(lengths)
        return pos, torch.ones(n, n, dtype=torch.bool).tril()[None, None]

    fails_with(ch02.check_packed, plain_causal, "block the other documents")

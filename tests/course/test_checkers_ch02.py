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


# --- realistic wrong answers (issue 18, item 7): each caught, its message naming the mistake ----
# (counted over all chapters by `python -m tests.course.wrong_answers`)

from tests.course.wrong_answers import Wrong, assert_caught_and_named  # noqa: E402


def _h8_clean(mode: str):
    import html
    import re

    def fn(text):
        if mode == "tags_first":
            text = html.unescape(re.sub(r"<[^>]+>", " ", text))
        elif mode == "amp_only":
            text = re.sub(r"<[^>]+>", " ", text.replace("&amp;", "&"))
        else:
            text = re.sub(r"<[^>]+>", " ", html.unescape(text))
        if mode == "no_collapse":
            return text.strip()
        text = re.sub(r"\s+", " ", text)
        return text if mode == "no_strip" else text.strip()

    return fn


def _h8_split(mode: str):
    import random

    def fn(records, ratios, seed):
        rng = random.Random(seed)
        if mode == "shuffle_caller":
            rng.shuffle(records)  # shuffles the caller's list
            pool = records
        else:
            pool = list(records)
        parts = [[] for _ in ratios]
        groups = {"all": pool} if mode == "not_stratified" else {}
        if mode != "not_stratified":
            for r in pool:
                groups.setdefault(r["label"], []).append(r)
        for rows in groups.values():
            rows = list(rows)
            if mode == "global_random":
                random.shuffle(rows)
            elif mode != "shuffle_caller":
                rng.shuffle(rows)
            start = 0
            for i, ratio in enumerate(ratios):
                n = round(ratio * len(rows)) if i < len(ratios) - 1 else len(rows) - start
                parts[i] += rows[start : start + n]
                start += n
        return parts

    return fn


def _h8_mask(mode: str):
    def fn(prompt, response):
        ids = list(prompt) + list(response)
        if mode == "pre_shifted":
            labels = [-100] * len(prompt) + list(response)
            return ids, labels[1:] + [-100]
        if mode == "prompt_appended":
            prompt.extend(response)  # builds the sequence on the caller's prompt list
            return list(prompt), [-100] * (len(prompt) - len(response)) + list(response)
        return ids, [-100] * (len(prompt) - 1) + list(response) + [-100]

    return fn


def _h8_packed(mode: str):
    import torch

    def fn(lengths):
        total = sum(lengths)
        pos = torch.cat([torch.arange(n) for n in lengths])[None]
        doc = torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])
        same = doc[:, None] == doc[None, :]
        causal = torch.ones(total, total).tril().bool()
        if mode == "float":
            return pos, (same & causal).float()[None, None]
        if mode == "not_causal":
            return pos, same[None, None]
        return pos, causal[None, None]  # documents not separated

    return fn


WRONG_ANSWERS = [
    Wrong(
        "tags removed before unescaping", ch02.check_clean, [_h8_clean("tags_first")], ("BEFORE",)
    ),
    Wrong("only &amp; unescaped", ch02.check_clean, [_h8_clean("amp_only")], ("unescape",)),
    Wrong("whitespace not collapsed", ch02.check_clean, [_h8_clean("no_collapse")], ("collapse",)),
    Wrong("not stripped", ch02.check_clean, [_h8_clean("no_strip")], ("strip",)),
    Wrong(
        "bands and rows swapped",
        ch02.check_lsh_probability,
        [lambda s, b, r: 1 - (1 - s**b) ** r],
        ("swapped",),
    ),
    Wrong(
        "probability of NOT being a candidate",
        ch02.check_lsh_probability,
        [lambda s, b, r: (1 - s**r) ** b],
        ("1 minus",),
    ),
    Wrong(
        "multiplied by b instead of raised to b",
        ch02.check_lsh_probability,
        [lambda s, b, r: 1 - (1 - s**r) * b],
        ("power",),
    ),
    Wrong("not stratified", ch02.check_split, [_h8_split("not_stratified")], ("stratify",)),
    Wrong(
        "global random state", ch02.check_split, [_h8_split("global_random")], ("random.Random",)
    ),
    Wrong(
        "shuffled the caller's list", ch02.check_split, [_h8_split("shuffle_caller")], ("in place",)
    ),
    Wrong("labels pre-shifted", ch02.check_mask, [_h8_mask("pre_shifted")], ("shifted",)),
    Wrong(
        "prompt list extended in place",
        ch02.check_mask,
        [_h8_mask("prompt_appended")],
        ("in place",),
    ),
    Wrong("float mask", ch02.check_packed, [_h8_packed("float")], ("boolean",)),
    Wrong("mask not causal", ch02.check_packed, [_h8_packed("not_causal")], ("causal",)),
    Wrong(
        "documents not separated", ch02.check_packed, [_h8_packed("one_doc")], ("other documents",)
    ),
]


@pytest.mark.parametrize("wrong", WRONG_ANSWERS, ids=lambda w: f"{w.exercise} {w.mistake}")
def test_wrong_answer_is_caught_and_named(wrong):
    assert_caught_and_named(wrong)

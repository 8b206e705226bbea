"""Checks for the chapter 02 exercises (data preparation).

Each check runs the student's function on cases where the common mistakes give a
recognisably wrong answer, and names the mistake.
"""

from __future__ import annotations

import html
import re
from collections import Counter

import torch

from course_lib.course.checks import call_unchanged, check, expect, expect_close, expect_equal
from course_lib.dataprep import clean_text, lsh_probability
from course_lib.formats import IGNORE_INDEX, packed_attention


@check("02.1 clean text")
def check_clean(student_fn) -> None:
    """The student's clean(text): unescape entities, drop tags, collapse whitespace."""
    cases = [
        "  <p>The lid &amp; the\n\n handle</p>  ",
        "<b>great</b>&nbsp;value",
        "&lt;b&gt;bold&lt;/b&gt; claim",
        "plain text",
    ]
    for text in cases:
        out = student_fn(text)
        expect(isinstance(out, str), f"return a string, got {type(out).__name__}")
        want = clean_text(text)
        if out == want:
            continue
        expect(
            "&amp;" not in out and "&nbsp;" not in out,
            f"HTML entities are left in {out!r}: unescape them with html.unescape",
        )
        expect(
            not re.search(r"<[^>]+>", out) or "&lt;" in text,
            f"tags are left in {out!r}: remove <...> with a regular expression",
        )
        tags_first = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text))).strip()
        expect(
            out != tags_first,
            f"for {text!r} you removed tags BEFORE unescaping, so the escaped tags "
            f"&lt;b&gt; became real tags <b> and stayed: unescape first, then remove tags",
        )
        expect(
            "  " not in out and "\n" not in out,
            f"whitespace not collapsed in {out!r}: replace \\s+ by one space",
        )
        expect(out == out.strip(), f"leading/trailing spaces left in {out!r}: strip the result")
        expect_equal(out, want, f"clean({text!r})")


@check("02.2 LSH candidate probability")
def check_lsh_probability(student_fn) -> None:
    """The student's p(s, bands, rows) = 1 - (1 - s^rows)^bands."""
    s, b, r = 0.6, 8, 4
    out = student_fn(s, b, r)
    expect_close(
        out,
        lsh_probability(s, b, r),
        1e-9,
        "P(candidate) for s=0.6, 8 bands of 4 rows",
        hints={
            s ** (r * b): "s^(r*b) is the chance that ALL bands agree; one band is enough",
            (1 - s**r)
            ** b: "that is the chance of NOT becoming a candidate (no band agrees): take 1 minus it",
            1
            - (1 - s**b) ** r: "bands and rows are swapped: a band agrees with probability s^rows",
            1 - (1 - s) ** (r * b): "a band of r rows agrees with probability s^r, not s",
            1 - (1 - s**r) * b: "the bands are independent: raise (1 - s^r) to the power b, "
            "do not multiply by b",
        },
    )
    expect_close(student_fn(0.0, 4, 2), 0.0, 1e-12, "P(candidate) at similarity 0")
    expect_close(student_fn(1.0, 4, 2), 1.0, 1e-12, "P(candidate) at similarity 1")


def _records():
    labels = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    return [{"id": i, "label": lab} for i, lab in enumerate(labels)]


@check("02.3 stratified split")
def check_split(student_fn) -> None:
    """The student's split(records, ratios, seed) -> list of parts, stratified by 'label'."""
    recs = _records()
    parts = call_unchanged(student_fn, recs, (0.7, 0.1, 0.2), 0, names=("records",))
    expect(
        isinstance(parts, (list, tuple)) and len(parts) == 3,
        "return one list per ratio (3 parts for 3 ratios)",
    )
    ids = [r["id"] for p in parts for r in p]
    expect(len(ids) == len(set(ids)), "a record appears in two splits: that is train/test leakage")
    expect(
        len(ids) == len(recs),
        f"{len(recs) - len(ids)} records were lost: every record must land in one split",
    )
    expect_equal(
        [len(p) for p in parts],
        [70, 10, 20],
        "split sizes for ratios (0.7, 0.1, 0.2) of 100 records",
    )
    test_counts = Counter(r["label"] for r in parts[2])
    expect(
        test_counts == {"a": 12, "b": 6, "c": 2},
        f"test split has classes {dict(test_counts)}, expected a:12, b:6, c:2: split each class "
        "separately (stratify), not the shuffled whole",
    )
    again = student_fn(recs, (0.7, 0.1, 0.2), 0)
    expect(
        [[r["id"] for r in p] for p in again] == [[r["id"] for r in p] for p in parts],
        "the same seed must give the same split: use random.Random(seed), not the global random state",
    )
    other = student_fn(recs, (0.7, 0.1, 0.2), 1)
    expect(
        [r["id"] for r in other[2]] != [r["id"] for r in parts[2]],
        "a different seed should give a different split",
    )


@check("02.4 mask the prompt")
def check_mask(student_fn) -> None:
    """The student's mask_labels(prompt_ids, response_ids) -> (input_ids, labels)."""
    prompt, response = [1, 3, 40, 41, 42, 5], [70, 71, 2]
    out = call_unchanged(student_fn, prompt, response, names=("prompt_ids", "response_ids"))
    expect(isinstance(out, tuple) and len(out) == 2, "return a pair (input_ids, labels)")
    ids, labels = (list(x.tolist()) if hasattr(x, "tolist") else list(x) for x in out)
    expect_equal(ids, prompt + response, "input_ids (prompt then response)")
    expect(
        len(labels) == len(ids),
        f"labels must be as long as input_ids ({len(ids)}), got {len(labels)}",
    )
    want = [IGNORE_INDEX] * len(prompt) + response
    n = len(prompt)
    expect_equal(
        labels,
        want,
        "labels",
        hints=[
            (
                prompt + response,
                "nothing is masked: the loss is computed over the prompt tokens as well",
            ),
            (
                prompt + [IGNORE_INDEX] * len(response),
                "the mask is inverted: learn the response, ignore the prompt",
            ),
            (
                [IGNORE_INDEX] * (n + 1) + response[1:],
                "off by one: the first response token is masked too",
            ),
            (
                [IGNORE_INDEX] * (n - 1) + prompt[-1:] + response,
                "off by one: the last prompt token still has a label",
            ),
            (
                [IGNORE_INDEX] * n + response[:-1] + [IGNORE_INDEX],
                "the end-of-turn token is masked: the model would never learn to stop",
            ),
            (
                [0] * n + response,
                "masked positions must be -100 (cross_entropy's ignore_index), not 0",
            ),
            (
                [IGNORE_INDEX] * (n - 1) + response + [IGNORE_INDEX],
                "the labels are shifted by one: do not shift them, the model shifts labels "
                "itself (labels line up with input_ids, position for position)",
            ),
        ],
    )


@check("02.5 packed attention")
def check_packed(student_fn) -> None:
    """The student's packed_mask(doc_lengths) -> (position_ids [1, L], mask [1, 1, L, L] bool)."""
    lengths = [3, 2, 4]
    out = student_fn(lengths)
    expect(isinstance(out, tuple) and len(out) == 2, "return a pair (position_ids, mask)")
    pos, mask = out
    want_pos, want_mask = packed_attention(lengths)
    expect(torch.is_tensor(pos) and torch.is_tensor(mask), "return tensors")
    expect(
        tuple(pos.shape) == (1, 9), f"position_ids must have shape [1, 9], got {tuple(pos.shape)}"
    )
    expect(
        pos.tolist() != [list(range(9))],
        "positions do not restart: each document's positions start at 0",
    )
    expect_equal(pos.tolist(), want_pos.tolist(), "position_ids")
    expect(
        tuple(mask.shape) == (1, 1, 9, 9),
        f"mask must have shape [1, 1, 9, 9] (batch, heads, query, key), got {tuple(mask.shape)}",
    )
    expect(mask.dtype == torch.bool, f"mask must be boolean (True = may attend), got {mask.dtype}")
    m = mask[0, 0]
    expect(
        not m[0, 1], "a token attends to a LATER token: the mask must be causal (lower-triangular)"
    )
    expect(not m[3, 2], "a token of document 2 attends to document 1: block the other documents")
    expect(bool(m[4, 3]), "a token cannot see an earlier token of its own document")
    expect_equal(m.tolist(), want_mask[0, 0].tolist(), "the mask")
